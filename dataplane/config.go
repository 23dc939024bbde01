package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Mode says how a listener routes: by the HTTP Host header or by the TLS SNI.
type Mode string

const (
	ModeHTTP Mode = "http" // plain HTTP/1.x, routed per request by Host
	ModeTLS  Mode = "tls"  // TLS passthrough, routed by the ClientHello's SNI
)

// Balance is a backend's server selection algorithm.
type Balance string

const (
	BalanceRoundRobin Balance = "roundrobin" // smooth weighted round robin
	BalanceLeastConn  Balance = "leastconn"  // fewest active connections (weight-scaled)
	BalanceSource     Balance = "source"     // hash of the client address
)

// ProxyProtocol is the PROXY protocol header sent to a backend's servers.
type ProxyProtocol string

const (
	ProxyNone ProxyProtocol = "none"
	ProxyV1   ProxyProtocol = "v1" // HAProxy's send-proxy
	ProxyV2   ProxyProtocol = "v2" // HAProxy's send-proxy-v2
)

// HealthCheckType is the kind of active health check.
type HealthCheckType string

const (
	CheckNone HealthCheckType = ""     // no active check: servers are up unless connects fail
	CheckTCP  HealthCheckType = "tcp"  // a TCP connect
	CheckHTTP HealthCheckType = "http" // GET Path, any 2xx/3xx is healthy
)

// Config is everything the dataplane serves: listeners, the routes that map
// hosts to backends, and the backends. It is plain data; Equal compares it.
// The loader in reconcile fills every default, so the zero value of a field
// below is never "use the default" once a Config reaches Apply.
type Config struct {
	Listeners []Listener
	Routes    []Route
	Backends  []Backend
}

// Bind is a listening address. An invalid Addr means every address (":80").
type Bind struct {
	Addr netip.Addr
	Port uint16
}

// ParseBind parses "host:port", ":port" or "[v6]:port". The host must be an
// IP literal (or empty / "*" for all addresses).
func ParseBind(s string) (Bind, error) {
	host, port, err := splitHostPort(s)
	if err != nil {
		return Bind{}, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return Bind{}, fmt.Errorf("bad port %q in %q: expected 1..65535", port, s)
	}
	b := Bind{Port: uint16(p)}
	if host != "" && host != "*" {
		a, err := netip.ParseAddr(host)
		if err != nil {
			return Bind{}, fmt.Errorf("bad address %q in %q: expected an IP literal or empty for all addresses", host, s)
		}
		if a.Zone() != "" {
			return Bind{}, fmt.Errorf("bad address %q in %q: zones are not supported", host, s)
		}
		b.Addr = a.Unmap()
	}
	return b, nil
}

func splitHostPort(s string) (host, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 || end+1 >= len(s) || s[end+1] != ':' {
			return "", "", fmt.Errorf("bad address %q: expected [IPv6]:port", s)
		}
		return s[1:end], s[end+2:], nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("bad address %q: expected host:port or :port", s)
	}
	if strings.Contains(s[:i], ":") {
		return "", "", fmt.Errorf("bad address %q: put an IPv6 address in brackets, as [2001:db8::1]:443", s)
	}
	return s[:i], s[i+1:], nil
}

// String renders the bind as Go's net package expects it.
func (b Bind) String() string {
	if !b.Addr.IsValid() {
		return ":" + strconv.Itoa(int(b.Port))
	}
	return netip.AddrPortFrom(b.Addr, b.Port).String()
}

// Overlaps reports whether two binds cannot both be listened on: same port
// and same address, or a wildcard on either side. Port 0 (any free port,
// for tests) never overlaps.
func (b Bind) Overlaps(o Bind) bool {
	if b.Port != o.Port || b.Port == 0 {
		return false
	}
	return !b.Addr.IsValid() || !o.Addr.IsValid() || b.Addr == o.Addr
}

// Listener is one listening socket.
type Listener struct {
	Name           string
	Bind           Bind
	Mode           Mode
	DefaultBackend string // backend for unmatched hosts; "" = close (tls) or 503 (http)
	// ForwardFor appends X-Forwarded-For and sets X-Forwarded-Proto (http mode).
	ForwardFor bool
	// InspectTimeout bounds the wait for a complete ClientHello (tls mode).
	// Default 5s (HAProxy's tcp-request inspect-delay).
	InspectTimeout time.Duration
	// AcceptProxy lists upstreams allowed to (and required to) send a PROXY
	// v1/v2 header; connections from elsewhere are refused. Empty: no PROXY
	// header is read.
	AcceptProxy []netip.Prefix
	// RequestTimeout bounds the time to receive a complete request head
	// (HAProxy's timeout http-request): 408 after it. Default 10s.
	RequestTimeout time.Duration
	// ClientTimeout is the client inactivity timeout: an idle keep-alive
	// connection is closed after it (HAProxy's timeout client). Default 60s.
	ClientTimeout time.Duration
	// MaxHeaderBytes bounds the request head; 431 above it. Default 32768.
	MaxHeaderBytes int
	// DrainTimeout bounds how long a removed listener's connections may
	// finish before they are closed. Default 30s.
	DrainTimeout time.Duration
	// MaxConn caps the listener's open client connections: at the cap it
	// stops accepting, and new connections wait in the kernel's accept
	// queue until one ends (HAProxy's frontend maxconn). 0 = no cap.
	MaxConn int
	// DeferAccept lets the kernel hand a connection over only once its
	// client sent a first byte, or after about a second of silence
	// (TCP_DEFER_ACCEPT; HAProxy's defer-accept, nginx's deferred): the
	// proxy's first read then finds the request or the ClientHello, and no
	// wait is set up for it. Both modes have the client speak first.
	DeferAccept bool
}

// Route maps host names to a backend per mode.
type Route struct {
	Name string
	// Hosts are lower-case exact names or "*.suffix" wildcards.
	Hosts       []string
	HTTPBackend string // used by mode http listeners; "" = not routed over http
	TLSBackend  string // used by mode tls listeners; "" = not routed over tls
}

// Backend is a group of servers with a balancing policy.
type Backend struct {
	Name          string
	Balance       Balance
	ProxyProtocol ProxyProtocol
	// ConnectTimeout bounds one connect attempt. Default 5s.
	ConnectTimeout time.Duration
	// QueueTimeout bounds the wait for a free slot when every server is at
	// MaxConn (503 after it). Default 5s.
	QueueTimeout time.Duration
	// MaxQueue caps the requests and tunnels waiting in that queue; one
	// more gets 503 at once instead of waiting (HAProxy's maxqueue, for
	// the backend as a whole). 0 = no cap but QueueTimeout.
	MaxQueue int
	// IdleTimeout is the server inactivity timeout: a response or tunnel with
	// no bytes for this long is cut (504 if no response started). Default 60s.
	IdleTimeout time.Duration
	// Retries is the number of further connect attempts, each to another
	// server when there is one. Default 2.
	Retries     int
	HealthCheck HealthCheck
	Servers     []Server
}

// HealthCheck configures active checks; Type CheckNone disables them.
type HealthCheck struct {
	Type     HealthCheckType
	Path     string        // http: request path, default "/"
	Host     string        // http: Host header, default the server address
	Interval time.Duration // default 2s
	Timeout  time.Duration // default 1s
	Rise     int           // consecutive successes to mark up, default 2
	Fall     int           // consecutive failures to mark down, default 3
}

// Server is one backend server.
type Server struct {
	Name    string
	Address netip.AddrPort
	// Weight is the relative share of new connections, 0..256 (0 = drained:
	// no new connections). Default 1.
	Weight int
	// MaxConn caps concurrent connections; 0 = unlimited.
	MaxConn int
}

// Equal reports whether two configs are identical.
func (c Config) Equal(o Config) bool {
	return slices.EqualFunc(c.Listeners, o.Listeners, Listener.equal) &&
		slices.EqualFunc(c.Routes, o.Routes, Route.equal) &&
		slices.EqualFunc(c.Backends, o.Backends, Backend.equal)
}

func (l Listener) equal(o Listener) bool {
	return l.Name == o.Name && l.Bind == o.Bind && l.Mode == o.Mode &&
		l.DefaultBackend == o.DefaultBackend && l.ForwardFor == o.ForwardFor &&
		l.InspectTimeout == o.InspectTimeout && slices.Equal(l.AcceptProxy, o.AcceptProxy) &&
		l.RequestTimeout == o.RequestTimeout && l.ClientTimeout == o.ClientTimeout &&
		l.MaxHeaderBytes == o.MaxHeaderBytes && l.DrainTimeout == o.DrainTimeout &&
		l.MaxConn == o.MaxConn && l.DeferAccept == o.DeferAccept
}

func (r Route) equal(o Route) bool {
	return r.Name == o.Name && slices.Equal(r.Hosts, o.Hosts) &&
		r.HTTPBackend == o.HTTPBackend && r.TLSBackend == o.TLSBackend
}

func (b Backend) equal(o Backend) bool {
	return b.Name == o.Name && b.Balance == o.Balance && b.ProxyProtocol == o.ProxyProtocol &&
		b.ConnectTimeout == o.ConnectTimeout && b.QueueTimeout == o.QueueTimeout && b.MaxQueue == o.MaxQueue &&
		b.IdleTimeout == o.IdleTimeout && b.Retries == o.Retries &&
		b.HealthCheck == o.HealthCheck && slices.Equal(b.Servers, o.Servers)
}

// Backend returns the backend with that name.
func (c *Config) Backend(name string) (*Backend, bool) {
	for i := range c.Backends {
		if c.Backends[i].Name == name {
			return &c.Backends[i], true
		}
	}
	return nil, false
}

// FieldError is a validation problem in one item of a Config. Kind and Name
// identify the item ("Backend", "k3s"), Field is a path below it
// ("servers[0].address").
type FieldError struct {
	Kind, Name, Field, Msg string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("%s %q: %s: %s", e.Kind, e.Name, e.Field, e.Msg)
}

// NormalizeHost lower-cases a host pattern and checks its syntax: a DNS name
// ("blog.example.org") or a wildcard whose "*" is the whole first label
// ("*.apps.example.org").
func NormalizeHost(h string) (string, error) {
	h = strings.ToLower(strings.TrimSuffix(h, "."))
	name := h
	if strings.HasPrefix(h, "*.") {
		name = h[2:]
	}
	if name == "" {
		return "", errors.New("empty host name")
	}
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("bad wildcard %q: only a leading \"*.\" is allowed, as in \"*.apps.example.org\"", h)
	}
	if len(name) > 253 {
		return "", fmt.Errorf("host %q is longer than 253 characters", h)
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return "", fmt.Errorf("bad host %q: labels must be 1..63 characters", h)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_'
			if !ok {
				return "", fmt.Errorf("bad host %q: character %q is not allowed in a host name", h, c)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("bad host %q: a label may not start or end with '-'", h)
		}
	}
	return h, nil
}

// Validate checks the rules only the dataplane knows: listener bind clashes,
// references from listeners and routes to backends, a host claimed twice for
// the same mode, and server sanity. It returns every problem found.
func (c *Config) Validate() []*FieldError {
	var errs []*FieldError
	add := func(kind, name, field, format string, args ...any) {
		errs = append(errs, &FieldError{kind, name, field, fmt.Sprintf(format, args...)})
	}
	backends := make(map[string]bool, len(c.Backends))
	for _, b := range c.Backends {
		backends[b.Name] = true
	}
	for i, l := range c.Listeners {
		for _, o := range c.Listeners[:i] {
			if l.Bind.Overlaps(o.Bind) {
				add("Edge", "listeners", fmt.Sprintf("spec.listeners[%d].bind", i),
					"listener %q binds %s, which clashes with listener %q on %s", l.Name, l.Bind, o.Name, o.Bind)
			}
		}
		if l.DefaultBackend != "" && !backends[l.DefaultBackend] {
			add("Edge", "listeners", fmt.Sprintf("spec.listeners[%d].defaultBackend", i),
				"no Backend named %q", l.DefaultBackend)
		}
	}
	claims := map[Mode]map[string]string{ModeHTTP: {}, ModeTLS: {}}
	for _, r := range c.Routes {
		uses := []struct {
			mode    Mode
			backend string
		}{{ModeHTTP, r.HTTPBackend}, {ModeTLS, r.TLSBackend}}
		for _, u := range uses {
			if u.backend != "" && !backends[u.backend] {
				add("Route", r.Name, "spec."+string(u.mode)+".backend", "no Backend named %q", u.backend)
			}
		}
		for j, h := range r.Hosts {
			for _, u := range uses {
				if u.backend == "" {
					continue
				}
				if prev, ok := claims[u.mode][h]; ok {
					if prev == r.Name {
						add("Route", r.Name, fmt.Sprintf("spec.hosts[%d]", j), "host %q is listed twice", h)
						break
					}
					add("Route", r.Name, fmt.Sprintf("spec.hosts[%d]", j),
						"host %q is already routed for %s by Route %q", h, u.mode, prev)
					continue
				}
				claims[u.mode][h] = r.Name
			}
		}
	}
	for _, b := range c.Backends {
		seen := map[string]bool{}
		for j, s := range b.Servers {
			if seen[s.Name] {
				add("Backend", b.Name, fmt.Sprintf("spec.servers[%d].name", j), "server name %q is used twice", s.Name)
			}
			seen[s.Name] = true
		}
	}
	return errs
}
