package reconcile

import (
	"cmp"
	"fmt"
	"net/netip"
	"strings"

	"github.com/gitedge/gitedge/dataplane"
)

func (c *converter) backend(d *document, r *rawBackend) dataplane.Backend {
	b := dataplane.Backend{
		Name:           d.name,
		Balance:        dataplane.Balance(c.oneOf(d, "spec.balance", r.Balance, defBalance, "roundrobin", "leastconn", "source")),
		ProxyProtocol:  dataplane.ProxyProtocol(c.oneOf(d, "spec.proxyProtocol", r.ProxyProtocol, defProxyProtocol, "none", "v1", "v2")),
		ConnectTimeout: c.duration(d, "spec.connectTimeout", r.ConnectTimeout, defConnectTimeout),
		QueueTimeout:   c.duration(d, "spec.queueTimeout", r.QueueTimeout, defQueueTimeout),
		IdleTimeout:    c.timeout(d, "spec.idleTimeout", r.IdleTimeout, defIdleTimeout),
		MaxQueue:       intOr(r.MaxQueue, 0),
		Retries:        intOr(r.Retries, defRetries),
	}
	if b.MaxQueue < 0 {
		c.l.failAt(d, "spec.maxQueue", "must be 0 (no cap but queueTimeout) or more, got %d", b.MaxQueue)
	}
	if b.ConnectTimeout == 0 {
		c.l.failAt(d, "spec.connectTimeout", "must be more than 0s")
	}
	if b.Retries < 0 || b.Retries > 100 {
		c.l.failAt(d, "spec.retries", "must be 0..100, got %d", b.Retries)
	}
	if hc := r.HealthCheck; hc != nil {
		b.HealthCheck = dataplane.HealthCheck{
			Type:     dataplane.HealthCheckType(c.oneOf(d, "spec.healthCheck.type", hc.Type, "tcp", "tcp", "http")),
			Interval: c.duration(d, "spec.healthCheck.interval", hc.Interval, defCheckInterval),
			Timeout:  c.duration(d, "spec.healthCheck.timeout", hc.Timeout, defCheckTimeout),
			Rise:     intOr(hc.Rise, defCheckRise),
			Fall:     intOr(hc.Fall, defCheckFall),
			Host:     hc.Host,
		}
		if b.HealthCheck.Type == dataplane.CheckHTTP {
			b.HealthCheck.Path = cmp.Or(hc.Path, defCheckPath)
			if !strings.HasPrefix(b.HealthCheck.Path, "/") {
				c.l.failAt(d, "spec.healthCheck.path", "%q must start with /", hc.Path)
			}
		} else if hc.Path != "" || hc.Host != "" {
			c.l.failAt(d, "spec.healthCheck.path", "path and host are for type: http checks")
		}
		if b.HealthCheck.Interval <= 0 || b.HealthCheck.Timeout <= 0 {
			c.l.failAt(d, "spec.healthCheck", "interval and timeout must be more than 0s")
		}
		if b.HealthCheck.Rise < 1 || b.HealthCheck.Fall < 1 {
			c.l.failAt(d, "spec.healthCheck", "rise and fall must be at least 1")
		}
	}
	if len(r.Servers) == 0 {
		c.l.failAt(d, "spec.servers", "at least one server is required")
	}
	for i, rs := range r.Servers {
		f := fmt.Sprintf("spec.servers[%d]", i)
		s := dataplane.Server{Name: rs.Name, Weight: intOr(rs.Weight, defWeight), MaxConn: intOr(rs.MaxConn, 0)}
		if s.Name == "" {
			c.l.failAt(d, f+".name", "missing: every server needs a name")
		}
		ap, err := netip.ParseAddrPort(rs.Address)
		if err != nil || ap.Port() == 0 {
			c.l.failAt(d, f+".address", "bad address %q: expected IP:port, as 192.0.2.10:443 or [2001:db8::10]:443", rs.Address)
		}
		s.Address = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if s.Weight < 0 || s.Weight > 256 {
			c.l.failAt(d, f+".weight", "must be 0..256 (0 drains the server), got %d", s.Weight)
		}
		if s.MaxConn < 0 {
			c.l.failAt(d, f+".maxConn", "must be 0 (unlimited) or more, got %d", s.MaxConn)
		}
		b.Servers = append(b.Servers, s)
	}
	return b
}

func (c *converter) route(d *document, r *rawRoute) dataplane.Route {
	rt := dataplane.Route{Name: d.name}
	if r.HTTP != nil {
		rt.HTTPBackend = r.HTTP.Backend
		if rt.HTTPBackend == "" {
			c.l.failAt(d, "spec.http.backend", "missing: name the Backend for HTTP requests")
		}
	}
	if r.TLS != nil {
		rt.TLSBackend = r.TLS.Backend
		if rt.TLSBackend == "" {
			c.l.failAt(d, "spec.tls.backend", "missing: name the Backend for TLS connections")
		}
	}
	if r.HTTP == nil && r.TLS == nil {
		c.l.failAt(d, "spec", "a Route needs http, tls or both")
	}
	if len(r.Hosts) == 0 {
		c.l.failAt(d, "spec.hosts", "at least one host is required")
	}
	if len(r.Hosts) > c.l.lim.hostsPerRoute {
		c.l.failAt(d, "spec.hosts", "%d hosts: a route may hold at most %d (use a wildcard, or split the route)", len(r.Hosts), c.l.lim.hostsPerRoute)
		return rt
	}
	for i, h := range r.Hosts {
		n, err := dataplane.NormalizeHost(h)
		if err != nil {
			c.l.failAt(d, fmt.Sprintf("spec.hosts[%d]", i), "%v", err)
			continue
		}
		rt.Hosts = append(rt.Hosts, n)
	}
	return rt
}

func (c *converter) listener(d *document, i int, r rawListener) dataplane.Listener {
	f := fmt.Sprintf("spec.listeners[%d]", i)
	ln := dataplane.Listener{
		Name:           r.Name,
		DefaultBackend: r.DefaultBackend,
		ForwardFor:     r.ForwardFor,
		InspectTimeout: c.timeout(d, f+".inspectTimeout", r.InspectTimeout, defInspectTimeout),
		RequestTimeout: c.timeout(d, f+".requestTimeout", r.RequestTimeout, defRequestTimeout),
		ClientTimeout:  c.timeout(d, f+".clientTimeout", r.ClientTimeout, defClientTimeout),
		DrainTimeout:   c.duration(d, f+".drainTimeout", r.DrainTimeout, defDrainTimeout),
		MaxHeaderBytes: intOr(r.MaxHeaderBytes, defMaxHeaderBytes),
		MaxConn:        intOr(r.MaxConn, 0),
		DeferAccept:    r.DeferAccept == nil || *r.DeferAccept,
	}
	if r.Name == "" {
		c.l.failAt(d, f+".name", "missing: every listener needs a name")
	}
	switch r.Mode {
	case "http", "tls":
		ln.Mode = dataplane.Mode(r.Mode)
	case "":
		c.l.failAt(d, f+".mode", "missing: expected http or tls")
	default:
		c.l.failAt(d, f+".mode", "%q is not allowed: expected http or tls", r.Mode)
	}
	b, err := dataplane.ParseBind(r.Bind)
	if err != nil {
		c.l.failAt(d, f+".bind", "%v", err)
	}
	ln.Bind = b
	if ln.MaxHeaderBytes < 1024 || ln.MaxHeaderBytes > 1<<20 {
		c.l.failAt(d, f+".maxHeaderBytes", "must be 1024..1048576, got %d", ln.MaxHeaderBytes)
	}
	if ln.MaxConn < 0 {
		c.l.failAt(d, f+".maxConn", "must be 0 (no cap) or more, got %d", ln.MaxConn)
	}
	if ln.Mode == dataplane.ModeTLS && ln.ForwardFor {
		c.l.failAt(d, f+".forwardFor", "is for mode http: a tls listener does not see HTTP headers (use a Backend's proxyProtocol)")
	}
	for j, s := range r.AcceptProxy {
		p, err := parsePrefix(s)
		if err != nil {
			c.l.failAt(d, fmt.Sprintf("%s.acceptProxy[%d]", f, j), "%v", err)
			continue
		}
		ln.AcceptProxy = append(ln.AcceptProxy, p)
	}
	return ln
}

// parsePrefix accepts a CIDR or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address %q: expected a CIDR, as 192.0.2.0/24", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q: expected an address with a prefix length, as 192.0.2.0/24", s)
	}
	return p, nil
}

func (c *converter) validateDataplane() {
	for _, fe := range c.desired.Dataplane.Validate() {
		var d *document
		switch fe.Kind {
		case "Edge":
			d = c.edgeDoc
		default:
			d = c.byName[fe.Kind][fe.Name]
		}
		if d == nil {
			c.l.failFile("", 0, "%v", fe)
			continue
		}
		c.l.failAt(d, fe.Field, "%s", fe.Msg)
	}
}
