package importer

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/importer/haproxy"
)

// hostSet is what an ACL condition matches, as gitedge can say it: every
// host, or a list of host patterns (exact names and "*.suffix").
type hostSet struct {
	all  bool
	pats []string
}

func (s hostSet) union(o hostSet) hostSet {
	if s.all || o.all {
		return hostSet{all: true}
	}
	out := slices.Clone(s.pats)
	for _, p := range o.pats {
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return hostSet{pats: out}
}

func (s hostSet) intersect(o hostSet) hostSet {
	switch {
	case s.all:
		return o
	case o.all:
		return s
	}
	var out []string
	for _, a := range s.pats {
		for _, b := range o.pats {
			if m := meet(a, b); m != "" && !slices.Contains(out, m) {
				out = append(out, m)
			}
		}
	}
	return hostSet{pats: out}
}

// meet returns the pattern matching exactly the hosts both match, or ""
// when they share none (or the overlap is not a pattern).
func meet(a, b string) string {
	switch {
	case covers(a, b):
		return b
	case covers(b, a):
		return a
	}
	return ""
}

// covers reports whether every host matched by b is matched by a.
func covers(a, b string) bool {
	if a == b {
		return true
	}
	if suf, ok := strings.CutPrefix(a, "*."); ok {
		bname := strings.TrimPrefix(b, "*.")
		return strings.HasSuffix(bname, "."+suf) || (strings.HasPrefix(b, "*.") && bname == suf)
	}
	return false
}

// representative returns a host name a pattern matches, for comparing
// how two route tables treat it.
func representative(p string) string {
	if suf, ok := strings.CutPrefix(p, "*."); ok {
		return "gitedge-import-probe." + suf
	}
	return p
}

// lookup routes host through patterns as gitedge does: exact first, then
// the longest wildcard suffix. It returns the index of the pattern, -1
// when none matches.
func lookup(pats []string, host string) int {
	if i := slices.Index(pats, host); i >= 0 {
		return i
	}
	best, bestLen := -1, -1
	for i, p := range pats {
		if suf, ok := strings.CutPrefix(p, "*."); ok && strings.HasSuffix(host, "."+suf) && len(suf) > bestLen {
			best, bestLen = i, len(suf)
		}
	}
	return best
}

// condResult is a condition turned into hosts, with what could not be
// carried over (unsupported: the rule is dropped) and what changes
// (changed) or is worth a note.
type condResult struct {
	set         hostSet
	unsupported []string
	changed     []string
	notes       []string
}

// evalCond turns an if-condition of a frontend in mode ("http" or "tcp")
// into the hosts it matches.
func evalCond(p *haproxy.Proxy, c *haproxy.Cond, mode string) condResult {
	var r condResult
	if len(c.Groups) == 0 {
		// HAProxy: an empty "if" never matches, an empty "unless" always does.
		if c.Unless {
			r.set = hostSet{all: true}
		} else {
			r.notes = append(r.notes, "an empty condition: HAProxy never matches it")
		}
		return r
	}
	if c.Unless {
		r.unsupported = append(r.unsupported, "an 'unless' condition matches every host but some: gitedge routes listed hosts only; list the hosts that should reach this backend")
		return r
	}
	var total hostSet
	for _, g := range c.Groups {
		and := hostSet{all: true}
		for _, t := range g {
			and = and.intersect(evalTerm(p, t, mode, &r))
		}
		total = total.union(and)
	}
	r.set = total
	return r
}

func evalTerm(p *haproxy.Proxy, t haproxy.Term, mode string, r *condResult) hostSet {
	if t.Neg {
		return r.unsupportedf("%s: a negated ACL matches every host but some, which gitedge cannot express", t)
	}
	var acls []*haproxy.ACL
	switch {
	case t.Anon != nil:
		acls = []*haproxy.ACL{t.Anon}
	case t.Name == "TRUE":
		return hostSet{all: true}
	case t.Name == "FALSE":
		return hostSet{}
	case haproxy.IsPredefined(t.Name):
		return r.unsupportedf("predefined ACL %s: gitedge routes by host name only", t.Name)
	default:
		acls = p.ACLs[t.Name]
	}
	var out hostSet
	for _, a := range acls {
		out = out.union(evalACL(a, mode, r))
	}
	return out
}

// fetchKind classifies an ACL's sample fetch.
func fetchKind(fetch string) (kind, method string) {
	f := strings.ToLower(strings.ReplaceAll(fetch, " ", ""))
	switch f {
	case "hdr(host)", "req.hdr(host)", "hdr(host,-1)", "req.hdr(host,-1)", "req.fhdr(host)", "hdr_str(host)":
		return "host", "str"
	case "hdr_beg(host)":
		return "host", "beg"
	case "hdr_end(host)":
		return "host", "end"
	case "hdr_dom(host)":
		return "host", "dom"
	case "req.ssl_sni", "req_ssl_sni", "req.ssl_sni,lower", "req_ssl_sni,lower":
		return "sni", "str"
	case "req.ssl_hello_type", "req_ssl_hello_type":
		return "hello", "int"
	case "ssl_fc_sni", "ssl_fc_sni_end", "ssl_fc_sni_reg", "ssl_fc":
		return "tlsterm", ""
	}
	for _, pre := range []string{"path", "url", "base", "method", "query", "urlp", "capture.req.uri", "req.uri"} {
		if strings.HasPrefix(f, pre) {
			return "path", ""
		}
	}
	for _, pre := range []string{"src", "dst", "so_", "fc_", "bc_"} {
		if strings.HasPrefix(f, pre) {
			return "addr", ""
		}
	}
	if strings.HasPrefix(f, "hdr") || strings.HasPrefix(f, "req.hdr") || strings.HasPrefix(f, "req.fhdr") {
		return "header", ""
	}
	return "other", ""
}

// evalACL turns one acl line into host patterns.
func evalACL(a *haproxy.ACL, mode string, r *condResult) hostSet {
	where := fmt.Sprintf("acl %s (%s)", cmp.Or(a.Name, "{ … }"), a.Pos)
	kind, method := fetchKind(a.Fetch)
	switch kind {
	case "hello":
		if mode == "tcp" && len(a.Values) == 1 && a.Values[0] == "1" && len(a.Files) == 0 {
			return hostSet{all: true} // every connection gitedge's tls listener routes has sent a ClientHello
		}
		return r.unsupportedf("%s: %s matches something other than a TLS ClientHello", where, a.Fetch)
	case "host":
		if mode != "http" {
			return r.unsupportedf("%s: %s needs mode http (this frontend is mode %s)", where, a.Fetch, mode)
		}
	case "sni":
		if mode != "tcp" {
			return r.unsupportedf("%s: %s is for mode tcp frontends (this one is mode %s)", where, a.Fetch, mode)
		}
	case "path":
		return r.unsupportedf("%s: %s matches paths, URLs or methods; gitedge routes by host name only", where, a.Fetch)
	case "addr":
		return r.unsupportedf("%s: %s matches addresses or ports; gitedge routes by host name only", where, a.Fetch)
	case "tlsterm":
		return r.unsupportedf("%s: %s needs TLS termination, which gitedge does not do", where, a.Fetch)
	case "header":
		return r.unsupportedf("%s: %s matches a header other than Host; gitedge routes by host name only", where, a.Fetch)
	default:
		return r.unsupportedf("%s: %s is not a host or SNI match", where, a.Fetch)
	}
	if len(a.Files) > 0 {
		return r.unsupportedf("%s: patterns read from %s: write them into the ACL, or into a Route by hand", where, strings.Join(a.Files, ", "))
	}
	if a.Method != "" {
		method = a.Method
	}
	switch method {
	case "str", "beg", "end", "dom":
	default:
		return r.unsupportedf("%s: -m %s: only exact (str), beg, end and dom matches map to host names", where, method)
	}
	if !a.Icase && slices.ContainsFunc(a.Values, func(v string) bool { return v != strings.ToLower(v) }) {
		r.changed = append(r.changed, fmt.Sprintf("%s: without -i HAProxy matched these upper-case letters exactly; gitedge ignores case in host names", where))
	}
	var out hostSet
	for _, v := range a.Values {
		out = out.union(hostValue(where, kind, method, v, r))
	}
	if len(a.Values) == 0 {
		r.unsupported = append(r.unsupported, fmt.Sprintf("%s: no value to match", where))
	}
	return out
}

// unsupportedf notes a condition gitedge cannot map to host names; it
// returns the empty set the condition then stands for.
func (r *condResult) unsupportedf(format string, a ...any) hostSet {
	r.unsupported = append(r.unsupported, fmt.Sprintf(format, a...))
	return hostSet{}
}

// hostValue maps one ACL value to host patterns.
func hostValue(where, kind, method, v string, r *condResult) hostSet {
	orig := v
	if kind == "host" && method == "str" {
		if h, port, ok := strings.Cut(v, ":"); ok && !strings.Contains(port, ":") {
			r.changed = append(r.changed, fmt.Sprintf("%s: %q includes a port; HAProxy matched it only with that port in Host, gitedge ignores the port", where, orig))
			v = h
		}
	}
	if strings.Contains(v, "*") {
		return r.unsupportedf("%s: %q: HAProxy compares '*' literally, so no client ever matched it; use hdr_end(host) or -m end .suffix for a wildcard", where, orig)
	}
	norm := func(h string) (string, bool) {
		n, err := dataplane.NormalizeHost(h)
		if err != nil {
			r.unsupported = append(r.unsupported, fmt.Sprintf("%s: %q is not a host name gitedge can route: %v", where, orig, err))
			return "", false
		}
		return n, true
	}
	switch method {
	case "str":
		if n, ok := norm(v); ok {
			return hostSet{pats: []string{n}}
		}
	case "end":
		if suf, ok := strings.CutPrefix(v, "."); ok {
			if n, ok := norm(suf); ok {
				return hostSet{pats: []string{"*." + n}}
			}
			return hostSet{}
		}
		if n, ok := norm(v); ok {
			r.changed = append(r.changed, fmt.Sprintf("%s: %q: HAProxy also matched any name merely ending in it (as x%s); gitedge matches %s and *.%s", where, orig, n, n, n))
			return hostSet{pats: []string{n, "*." + n}}
		}
	case "beg":
		if !strings.Contains(strings.Trim(v, "."), ".") || strings.HasSuffix(v, ".") {
			return r.unsupportedf("%s: %q is a prefix, not a host name: gitedge cannot match names by their beginning", where, orig)
		}
		if n, ok := norm(v); ok {
			r.changed = append(r.changed, fmt.Sprintf("%s: %q: HAProxy also matched longer names beginning with it (as %s.x, or with a port); gitedge matches the name itself (with any port)", where, orig, n))
			return hostSet{pats: []string{n}}
		}
	case "dom":
		if n, ok := norm(strings.Trim(v, ".")); ok {
			r.changed = append(r.changed, fmt.Sprintf("%s: %q: HAProxy matched it as any dot-delimited part of the name (as %s.x); gitedge matches %s and *.%s", where, orig, n, n, n))
			return hostSet{pats: []string{n, "*." + n}}
		}
	}
	return hostSet{}
}
