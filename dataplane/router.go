package dataplane

// router maps host names to backends for one mode: exact names first,
// then the longest "*.suffix" wildcard. Lookups cost one map probe per
// label at most, whatever the number of routes, and allocate nothing.
type router struct {
	exact map[string]*backend
	wild  map[string]*backend // keyed by the suffix after "*."
}

func newRouter() *router {
	return &router{exact: map[string]*backend{}, wild: map[string]*backend{}}
}

// add registers a normalized host pattern (lower case, as NormalizeHost).
func (r *router) add(host string, b *backend) {
	if len(host) > 2 && host[0] == '*' && host[1] == '.' {
		r.wild[host[2:]] = b
		return
	}
	r.exact[host] = b
}

// match returns the backend for a Host header value or SNI name: case
// does not matter, nor does a port or a trailing dot. nil when no route
// matches.
func (r *router) match(host []byte) *backend {
	var buf [254]byte // a name of 253 and its trailing dot
	n := 0
	if len(host) > 0 && host[0] == '[' {
		return nil // an IP literal: routes name hosts
	}
	for _, c := range host {
		if c == ':' {
			break
		}
		if n == len(buf) {
			return nil
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
	}
	if n > 0 && buf[n-1] == '.' {
		n--
	}
	if n == 0 || n > 253 {
		return nil
	}
	name := buf[:n]
	if b, ok := r.exact[string(name)]; ok {
		return b
	}
	if len(r.wild) == 0 {
		return nil
	}
	// Longest suffix first: drop one label at a time.
	for i := 0; i < n; i++ {
		if name[i] != '.' {
			continue
		}
		if b, ok := r.wild[string(name[i+1:])]; ok {
			return b
		}
	}
	return nil
}
