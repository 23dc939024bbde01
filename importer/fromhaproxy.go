package importer

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/importer/haproxy"
	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/reconcile"
)

// HAProxy's own defaults, where gitedge's differ or must be written out.
const (
	haproxyRetries    = 3
	haproxyInter      = 2 * time.Second
	haproxyRise       = 2
	haproxyFall       = 3
	gitedgeConnect    = "5s"
	gitedgeIdle       = "60s"
	gitedgeClient     = "60s"
	gitedgeRequest    = "10s"
	gitedgeInspect    = "5s"
	allAddresses4     = "0.0.0.0/0"
	allAddresses6     = "::/0"
	noEffectTCP       = "has no effect in mode tcp"
	noEffectFrontend  = "has no effect in a frontend (HAProxy ignores it too)"
	noEffectBackend   = "has no effect in a backend (HAProxy ignores it too)"
	whyPlainTCP       = "plain TCP forwarding: gitedge's mode tls listener reads a TLS ClientHello before it connects to a server, and closes anything else"
	whyNoWaitEndCheck = "after tcp-request inspect-delay HAProxy passed a connection without a complete ClientHello to the default backend; gitedge closes it"
)

// claim is one host pattern a frontend routes to a backend.
type claim struct {
	pat     string
	backend string // HAProxy name
	acl     string // ACL name, for naming the route
	pos     report.Pos
	rule    string
	fe      *haproxy.Proxy
}

// feTable is one frontend's routing: its claims in rule order (shadowed
// patterns already removed) and its default backend.
type feTable struct {
	fe       *haproxy.Proxy
	mode     string // gitedge mode: http or tls
	claims   []claim
	def      string // HAProxy name; "" for none
	listener []*listener
}

// fromHAProxy maps one parsed haproxy.cfg onto the repository model.
type fromHAProxy struct {
	cfg      *haproxy.Config
	rep      *report.List
	errs     *report.Errors
	bnames   map[string]string // HAProxy backend name -> gitedge name
	backends map[string]*backend
	xff      map[string]*haproxy.Option // HAProxy backend name -> its forwardfor, when on
	used     map[string]bool
	tables   []*feTable
	lnames   map[string]bool
	binds    []imported // the listeners imported so far, by address
	out      *repo
	// globalMaxConn is global's maxconn (0 when unset): HAProxy's cap for
	// a frontend without one of its own.
	globalMaxConn int
}

// imported is a listener made from a bind, for the clash check.
type imported struct {
	bind dataplane.Bind
	l    *listener
	p    *haproxy.Proxy
	line int
}

func importHAProxy(cfg *haproxy.Config, out *repo, rep *report.List, errs *report.Errors) {
	h := &fromHAProxy{cfg: cfg, rep: rep, errs: errs, bnames: map[string]string{}, backends: map[string]*backend{},
		xff: map[string]*haproxy.Option{}, used: map[string]bool{}, lnames: map[string]bool{}, out: out}
	h.sections()
	for _, d := range cfg.Defaults {
		h.others(d)
	}
	used := map[string]bool{}
	for _, p := range cfg.Proxies {
		if !p.IsBackend() {
			continue
		}
		n := uniqueName(safeName(p.Name), used)
		if n != p.Name {
			h.add(p.Pos, report.Note, p.Label(), "", "renamed to %q: gitedge names allow letters, digits, '-', '_' and '.'", n)
		}
		h.bnames[p.Name] = n
	}
	for _, p := range cfg.Proxies {
		h.others(p)
		if p.IsBackend() {
			if b := h.backend(p); b != nil {
				h.backends[p.Name] = b
				out.backends = append(out.backends, b)
			}
		}
	}
	for _, p := range cfg.Proxies {
		if p.IsFrontend() {
			h.frontend(p)
		}
	}
	h.routes()
	for _, p := range cfg.Proxies {
		if p.IsBackend() && !h.used[p.Name] {
			h.add(p.Pos, report.Note, p.Label(), "", "no frontend routes to it; imported as an unused Backend")
		}
	}
	for _, e := range cfg.EnvVars {
		h.add(e.Pos, report.Changed, "", e.Name, "HAProxy expands environment variables at start; the import kept %s as written", e.Name)
	}
}

func (h *fromHAProxy) add(p report.Pos, s report.Severity, where, what, why string, args ...any) {
	h.rep.Add(p, s, where, what, why, args...)
}

func (h *fromHAProxy) addAt(d *haproxy.Directive, s report.Severity, why string, args ...any) {
	h.rep.Add(d.Pos, s, d.Section.Label(), d.String(), why, args...)
}

// globalMaxConnFrom reads global's maxconn: each frontend without a
// maxconn of its own had it as its cap (and all of them it as a total).
func (h *fromHAProxy) globalMaxConnFrom(d *haproxy.Directive) {
	n, err := haproxy.WholeNumber(d.Args[1:])
	if err != nil {
		h.addAt(d, report.Dropped, "%v: not interpreted", err)
		return
	}
	h.globalMaxConn = n
	if n > 0 {
		h.addAt(d, report.Changed, "imported as the maxConn of each listener whose frontend sets none (as HAProxy caps such a frontend); gitedge has no total over all listeners")
	}
}

// sections reports global and the sections gitedge has no counterpart for.
func (h *fromHAProxy) sections() {
	for _, s := range h.cfg.Sections {
		switch s.Kind {
		case "global":
			var ignored []string
			for _, d := range s.Directives {
				kw := d.Keyword()
				if kw == "maxconn" {
					h.globalMaxConnFrom(d)
					continue
				}
				if why, ok := globalDropped[kw]; ok {
					h.addAt(d, report.Dropped, "%s", why)
					continue
				}
				if strings.HasPrefix(kw, "tune.") {
					h.addAt(d, report.Dropped, "HAProxy tuning: gitedge sizes its buffers and limits itself")
					continue
				}
				if !slices.Contains(ignored, kw) {
					ignored = append(ignored, kw)
				}
			}
			if len(ignored) > 0 {
				h.add(s.Pos, report.Note, "global", strings.Join(ignored, ", "), "ignored: %s", whyProcess)
			}
		case "defaults", "frontend", "backend", "listen":
		case "resolvers":
			h.add(s.Pos, report.Note, s.Label(), "", "DNS resolution of servers: gitedge needs server addresses written as IPs")
		case "ring", "log-forward":
			h.add(s.Pos, report.Note, s.Label(), "", "%s", whyLog)
		case "http-errors":
			h.add(s.Pos, report.Dropped, s.Label(), "", "%s", whyErrPage)
		case "userlist":
			h.add(s.Pos, report.Dropped, s.Label(), "", "gitedge has no HTTP authentication")
		case "peers":
			h.add(s.Pos, report.Dropped, s.Label(), "", "%s", whyStick)
		default:
			h.add(s.Pos, report.Dropped, s.Label(), "", "a %s section has no gitedge counterpart", s.Kind)
		}
	}
}

// mapped says whether an option is carried over for a proxy of this kind.
func mappedOption(name string) bool {
	switch name {
	case "forwardfor", "redispatch", "httpchk", "ssl-hello-chk":
		return true
	}
	return false
}

// others reports a proxy's (or defaults section's) own lines that are not
// mapped: options, directives, timeouts and tcp-request rules of defaults.
func (h *fromHAProxy) others(p *haproxy.Proxy) {
	for _, name := range slices.Sorted(maps.Keys(p.Options)) {
		o := p.Options[name]
		if o.From.Section != p.Section {
			continue // reported where it is written
		}
		if !o.On {
			continue
		}
		if mappedOption(name) {
			if p.Kind == "frontend" && name != "forwardfor" {
				h.addAt(o.From, report.Note, "%s", noEffectFrontend)
			}
			continue
		}
		if d, ok := optionDispositions[name]; ok {
			h.addAt(o.From, d.sev, "%s", d.why)
		} else {
			h.addAt(o.From, report.Dropped, "unknown option: not interpreted")
		}
	}
	for _, name := range slices.Sorted(maps.Keys(p.Timeouts)) {
		t := p.Timeouts[name]
		if t.From.Section != p.Section {
			continue
		}
		switch name {
		case "tarpit":
			h.addAt(t.From, report.Dropped, "gitedge has no tarpit")
		case "client-fin", "server-fin":
			h.addAt(t.From, report.Note, "gitedge closes half-closed connections by the idle timeouts")
		case "client-hs":
			h.addAt(t.From, report.Note, "gitedge does not terminate TLS")
		case "http-keep-alive":
			h.addAt(t.From, report.Changed, "gitedge closes an idle keep-alive connection after the listener's clientTimeout")
		case "client", "http-request":
			if p.Kind == "backend" {
				h.addAt(t.From, report.Note, "%s", noEffectBackend)
			}
		case "connect", "server", "queue", "tunnel", "check":
			if p.Kind == "frontend" {
				h.addAt(t.From, report.Note, "%s", noEffectFrontend)
			}
		}
	}
	if p.Kind == "defaults" {
		for _, r := range p.TCPRules {
			h.addAt(r.Directive, report.Dropped, "tcp-request rules in a defaults section are not carried over")
		}
		if o := p.DefaultServer; o.Unknown != nil {
			h.add(p.Pos, report.Dropped, p.Label(), strings.Join(o.Unknown, " "), "unknown default-server option: not interpreted")
		}
	}
	if p.Kind != "frontend" && p.InspectDelay.Set && p.InspectDelay.From.Section == p.Section && p.Kind != "defaults" {
		h.addAt(p.InspectDelay.From, report.Note, "an inspect delay in a backend serves only the backend's own tcp-request rules; gitedge routes on the listener's ClientHello")
	}
	for _, d := range p.Ignored {
		h.addAt(d, report.Note, "HAProxy ignores it in a %s section too (and warns)", p.Kind)
	}
	for _, d := range p.Other {
		kw := d.Keyword()
		switch {
		case kw == "http-check" && len(d.Args) > 1 && d.Args[1] == "expect":
			h.addAt(d, report.Changed, "gitedge counts any 2xx or 3xx answer as healthy")
		case kw == "no":
			h.addAt(d, report.Dropped, "not interpreted")
		default:
			if disp, ok := directiveDispositions[kw]; ok {
				h.addAt(d, disp.sev, "%s", disp.why)
			} else {
				h.addAt(d, report.Dropped, "unknown keyword: not interpreted")
			}
		}
	}
}

// serverOptionDisp covers server options other than those mapped.
func serverOptionDisp(o string) (report.Severity, string) {
	switch {
	case o == "id":
		return report.Note, "HAProxy's numeric server id"
	case o == "cookie" || o == "non-stick" || o == "stick":
		return report.Dropped, whyStick
	case o == "slowstart":
		return report.Dropped, "gitedge gives a recovered server its full weight at once"
	case o == "minconn":
		return report.Dropped, "gitedge has a fixed maxConn"
	case o == "maxqueue":
		return report.Dropped, "gitedge queues per backend, not per server: set the backend's maxQueue to cap the queue as a whole"
	case o == "fastinter" || o == "downinter":
		return report.Changed, "gitedge checks at one interval"
	case o == "port" || o == "addr":
		return report.Changed, "gitedge checks the server's own address and port"
	case strings.HasPrefix(o, "check-"):
		return report.Changed, "gitedge checks with a plain TCP connect or HTTP request, without TLS, SNI or PROXY header"
	case o == "on-error" || o == "on-marked-down" || o == "on-marked-up" || o == "error-limit" || o == "observe":
		return report.Dropped, "gitedge marks servers down by its checks only"
	case strings.HasPrefix(o, "resolve") || o == "init-addr" || o == "resolvers":
		return report.Note, "DNS resolution: the address is imported as written"
	case o == "track":
		return report.Dropped, "gitedge checks each server itself"
	case strings.HasPrefix(o, "agent"):
		return report.Dropped, "gitedge runs no agent checks"
	case strings.HasPrefix(o, "no-"):
		return report.Note, "resets an option"
	case o == "verify" || o == "sni" || o == "crt" || o == "ca-file" || o == "crl-file" || o == "ciphers" || o == "ciphersuites" ||
		o == "verifyhost" || strings.HasPrefix(o, "ssl-") || strings.HasPrefix(o, "force-") || o == "tls-tickets" || o == "curves" || o == "sigalgs" || o == "client-sigalgs":
		return report.Note, "a TLS setting, used only with ssl"
	}
	return report.Dropped, "no gitedge counterpart"
}

// backend maps a backend (or the backend part of a listen section).
func (h *fromHAProxy) backend(p *haproxy.Proxy) *backend {
	where := p.Label()
	b := &backend{name: h.bnames[p.Name], from: p.Pos, label: p.Label()}

	// Balance.
	b.balance = "roundrobin"
	if bal := p.Balance; bal.Set {
		switch algo := bal.Val[0]; algo {
		case "roundrobin", "leastconn", "source":
			b.balance = algo
			if len(bal.Val) > 1 {
				h.addAt(bal.From, report.Dropped, "arguments of balance are not carried over")
			}
		case "static-rr":
			h.addAt(bal.From, report.Note, "gitedge's roundrobin is weighted the same way")
		default:
			h.addAt(bal.From, report.Changed, "gitedge balances by roundrobin, leastconn or source only: %s uses roundrobin", b.name)
		}
	}

	// Servers.
	type srv struct {
		s     *haproxy.Server
		out   *server
		proxy int
	}
	var active, backups []srv
	for _, s := range p.Servers {
		what := s.String()
		add := func(sev report.Severity, why string, args ...any) { h.rep.Add(s.Pos, sev, where, what, why, args...) }
		switch {
		case !s.Addr.IsInet():
			add(report.Dropped, "a %s socket: gitedge connects to IP addresses only", strings.TrimSuffix(s.Addr.Family, "@"))
			continue
		case !s.Addr.IP.IsValid():
			add(report.Dropped, "gitedge needs an IP address: HAProxy resolved %q when it started; write the address instead", s.Addr.Host)
			continue
		case s.Addr.PortOffset || s.Addr.Port == 0:
			add(report.Dropped, "no fixed port: HAProxy connected to the port the client connected to; gitedge needs the port written")
			continue
		}
		if fe, ok := h.selfBind(s.Addr.IP, s.Addr.Port); ok {
			add(report.Dropped, "this is %s: requests would loop back into the proxy (gitedge refuses such a server); point the server at the backend itself", fe)
			continue
		}
		if s.Unknown != nil {
			h.rep.Add(s.Pos, report.Dropped, where, strings.Join(s.Unknown, " "), "unknown server option: not interpreted")
		}
		tls := false
		for _, o := range s.Other {
			if o[0] == "ssl" {
				tls = true
				continue
			}
			sev, why := serverOptionDisp(o[0])
			at := s.Pos
			if od := optionLine(p, o); od != nil {
				at = od.Pos
			}
			h.rep.Add(at, sev, where, strings.Join(o, " "), "server option: %s", why)
		}
		if tls {
			add(report.Dropped, "ssl: gitedge does not open TLS to servers; the server is not imported")
			continue
		}
		out := &server{name: s.Name, address: netip.AddrPortFrom(s.Addr.IP, uint16(s.Addr.Port)).String(), from: s.Pos}
		if s.Weight.Set {
			w := s.Weight.Val
			out.weight = &w
		}
		if s.MaxConn.Set && s.MaxConn.Val > 0 {
			m := s.MaxConn.Val
			out.maxConn = &m
		}
		if s.Disabled.Set && s.Disabled.Val {
			zero := 0
			out.weight = &zero
			add(report.Note, "disabled (maintenance): imported with weight 0, so it gets no new connections")
		}
		if s.Weight.Set && s.Weight.Val == 0 && !s.Disabled.Val {
			add(report.Note, "weight 0: it gets no new connections in gitedge either")
		}
		v := srv{s, out, s.SendProxy.Val}
		if s.Backup.Set && s.Backup.Val {
			backups = append(backups, v)
		} else {
			active = append(active, v)
		}
	}
	if len(active) == 0 && len(backups) > 0 {
		for _, s := range backups {
			h.rep.Add(s.s.Pos, report.Changed, where, s.s.String(), "only backup servers: HAProxy used them because no other server exists; gitedge imports them as normal servers")
		}
		active, backups = backups, nil
	}
	for _, s := range backups {
		h.rep.Add(s.s.Pos, report.Dropped, where, s.s.String(), "backup server: gitedge has no backup servers (HAProxy sent traffic here only while every other server was down)")
	}
	if len(active) == 0 {
		h.errs.Add(p.Pos, "%s: no server gitedge can use (each server line is in the report); a gitedge Backend needs at least one", where)
		return nil
	}
	for _, s := range active {
		b.servers = append(b.servers, s.out)
	}

	// PROXY protocol: one per backend in gitedge.
	pp := active[0].proxy
	for _, s := range active[1:] {
		if s.proxy != pp {
			h.rep.Add(s.s.Pos, report.Changed, where, s.s.String(), "gitedge sends one PROXY protocol version per backend: %s, as the first server", ppName(pp))
		}
	}
	b.proxyProtocol = ppName(pp)

	// Health checks.
	var checked, unchecked []srv
	for _, s := range active {
		if s.s.Check.Set && s.s.Check.Val {
			checked = append(checked, s)
		} else {
			unchecked = append(unchecked, s)
		}
	}
	httpchk, hasHTTPChk := p.Option("httpchk")
	sslHello, hasSSLHello := p.Option("ssl-hello-chk")
	if len(checked) == 0 {
		if hasHTTPChk {
			h.addAt(httpchk.From, report.Note, "no server of %s has check: HAProxy ran no check, neither does gitedge", where)
		}
		if hasSSLHello {
			h.addAt(sslHello.From, report.Note, "no server of %s has check, so it had no effect: not carried over", where)
		}
	} else {
		first := checked[0].s
		hc := &healthCheck{typ: "tcp", rise: haproxyRise, fall: haproxyFall}
		inter := haproxyInter
		if first.Inter.Set {
			inter = first.Inter.Val
		}
		if first.Rise.Set {
			hc.rise = first.Rise.Val
		}
		if first.Fall.Set {
			hc.fall = first.Fall.Val
		}
		for _, s := range checked[1:] {
			if s.s.Inter.Val != first.Inter.Val || s.s.Rise.Val != first.Rise.Val || s.s.Fall.Val != first.Fall.Val {
				h.rep.Add(s.s.Pos, report.Changed, where, s.s.String(), "gitedge checks every server of a backend alike: inter %s, rise %d, fall %d as %s", fmtDuration(inter), hc.rise, hc.fall, first.Name)
			}
		}
		for _, s := range unchecked {
			h.rep.Add(s.s.Pos, report.Changed, where, s.s.String(), "no check on this server: gitedge checks every server of a backend")
		}
		hc.interval = fmtDuration(inter)
		hc.timeout = fmtDuration(inter)
		if t, ok := timeoutOf(p, "check"); ok {
			hc.timeout = fmtDuration(t.Val)
		}
		if hasHTTPChk {
			c := p.HTTPCheckOf()
			hc.typ = "http"
			hc.path = c.URI
			hc.host = c.Host
			if c.Method != "GET" {
				h.addAt(httpchk.From, report.Changed, "gitedge's http check sends GET %s where HAProxy sent %s", c.URI, c.Method)
			}
			if !strings.HasPrefix(c.URI, "/") {
				h.addAt(httpchk.From, report.Dropped, "gitedge's http check needs a path starting with /: it checks /")
				hc.path = "/"
			}
		} else if hasSSLHello {
			h.addAt(sslHello.From, report.Changed, "gitedge checks %s with a TCP connect, not an SSLv3 hello", where)
		}
		b.check = hc
	}

	// Timeouts.
	mode := p.EffectiveMode()
	if t, ok := timeoutOf(p, "connect"); ok {
		b.connect = fmtDuration(t.Val)
	} else {
		at, how := unset(p, "connect")
		h.add(at, report.Changed, where, "timeout connect", how+": HAProxy waited indefinitely (and warned); gitedge uses %s", gitedgeConnect)
	}
	if t, ok := timeoutOf(p, "queue"); ok {
		b.queue = fmtDuration(t.Val)
	} else if t, ok := timeoutOf(p, "connect"); ok {
		b.queue = fmtDuration(t.Val) // HAProxy's rule: timeout queue defaults to timeout connect
	}
	srvT, hasSrv := timeoutOf(p, "server")
	tunT, hasTun := timeoutOf(p, "tunnel")
	switch {
	case hasTun && mode == "tcp":
		b.idle = fmtDuration(tunT.Val)
		if hasSrv && srvT.Val != tunT.Val {
			h.addAt(srvT.From, report.Note, "in mode tcp timeout tunnel (%s) applies once connected: gitedge's idleTimeout is %s", fmtDuration(tunT.Val), b.idle)
		}
	case hasSrv:
		b.idle = fmtDuration(srvT.Val)
		if hasTun && tunT.Val != srvT.Val {
			h.addAt(tunT.From, report.Changed, "gitedge's idleTimeout (%s, from timeout server) also bounds upgraded connections such as WebSocket", b.idle)
		}
	case hasTun:
		b.idle = fmtDuration(tunT.Val)
		at, how := unset(p, "server")
		h.add(at, report.Changed, where, "timeout server", how+": HAProxy waited indefinitely for a response; gitedge's idleTimeout is the tunnel timeout %s", b.idle)
	default:
		at, how := unset(p, "server")
		h.add(at, report.Changed, where, "timeout server", how+": HAProxy waited indefinitely (and warned); gitedge cuts an idle server after %s", gitedgeIdle)
	}

	// Retries and redispatch.
	retries := haproxyRetries
	if r := p.Retries; r.Set {
		retries = r.Val
		if retries > 100 {
			h.addAt(r.From, report.Changed, "gitedge allows at most 100 retries")
			retries = 100
		}
	}
	b.retries = &retries
	if _, ok := p.Option("redispatch"); !ok && len(active) > 1 && retries > 0 {
		h.add(p.Pos, report.Changed, where, "option redispatch", "not set: HAProxy retried the same server; gitedge retries on another server")
	}

	// X-Forwarded-For set on the backend side.
	if o, ok := p.Option("forwardfor"); ok && mode == "http" {
		h.xff[p.Name] = &o
	}

	// tcp-request rules of a backend.
	for _, r := range p.TCPRules {
		if r.Stage == "content" && len(r.Action) == 1 && r.Action[0] == "accept" && h.helloOnly(p, r.Cond) {
			h.addAt(r.Directive, report.Note, "gitedge's tls listener accepts only connections that start with a ClientHello")
			continue
		}
		h.addAt(r.Directive, report.Dropped, "tcp-request rules other than accepting a ClientHello are not carried over")
	}
	return b
}

// optionLine finds the default-server line an inherited server option
// came from, so it is reported once, where it is written.
func optionLine(p *haproxy.Proxy, o []string) *haproxy.Directive {
	for _, d := range []*haproxy.Section{p.Section, p.Defaults} {
		if d == nil {
			continue
		}
		for _, dir := range d.Directives {
			if dir.Keyword() == "default-server" && slices.Contains(dir.Args, o[0]) {
				return dir
			}
		}
	}
	return nil
}

func ppName(v int) string {
	switch v {
	case 1:
		return "v1"
	case 2:
		return "v2"
	}
	return "none"
}

// helloOnly reports whether a condition only tests for a TLS ClientHello
// (req_ssl_hello_type 1), which every connection a tls listener routes has.
func (h *fromHAProxy) helloOnly(p *haproxy.Proxy, c *haproxy.Cond) bool {
	if c == nil || c.Unless {
		return false
	}
	for _, g := range c.Groups {
		for _, t := range g {
			if t.Neg {
				return false
			}
			acls := p.ACLs[t.Name]
			if t.Anon != nil {
				acls = []*haproxy.ACL{t.Anon}
			}
			if len(acls) == 0 {
				return false
			}
			for _, a := range acls {
				if k, _ := fetchKind(a.Fetch); k != "hello" || len(a.Values) != 1 || a.Values[0] != "1" {
					return false
				}
			}
		}
	}
	return true
}

// frontend maps a frontend (or the frontend part of a listen section) to
// listeners and its routing table.
func (h *fromHAProxy) frontend(p *haproxy.Proxy) {
	where := p.Label()
	mode := p.EffectiveMode()
	lmode := "http"
	if mode == "tcp" {
		lmode = "tls"
	}
	t := &feTable{fe: p, mode: lmode}

	// Routing rules, in order: HAProxy uses the first that matches.
	everything := -1 // line of a rule that matched every connection
	for _, u := range p.UseBackends {
		what := u.String()
		add := func(sev report.Severity, why string, args ...any) { h.rep.Add(u.Pos, sev, where, what, why, args...) }
		if everything > 0 {
			add(report.Note, "never reached: the rule at line %d matches every connection", everything)
			continue
		}
		if u.Dynamic() {
			add(report.Dropped, "the backend name is computed per request; gitedge routes each host to a named Backend")
			continue
		}
		if u.Cond == nil {
			add(report.Note, "no condition: every connection not matched before goes to %s, imported as the listener's defaultBackend", u.Backend)
			t.def, everything = u.Backend, u.Line
			h.used[u.Backend] = true
			continue
		}
		res := evalCond(p, u.Cond, mode)
		if len(res.unsupported) > 0 {
			add(report.Dropped, "%s", strings.Join(res.unsupported, "; "))
			continue
		}
		for _, c := range res.changed {
			add(report.Changed, "%s", c)
		}
		for _, n := range res.notes {
			add(report.Note, "%s", n)
		}
		if res.set.all {
			add(report.Note, "matches every connection gitedge routes: %s is imported as the listener's defaultBackend", u.Backend)
			t.def, everything = u.Backend, u.Line
			h.used[u.Backend] = true
			continue
		}
		if len(res.set.pats) == 0 {
			add(report.Note, "matches no host name gitedge can route: nothing imported")
			continue
		}
		acl := firstACLName(u.Cond)
		for _, pat := range res.set.pats {
			if i := slices.IndexFunc(t.claims, func(c claim) bool { return covers(c.pat, pat) }); i >= 0 {
				prev := t.claims[i]
				add(report.Note, "%s: never reached, the rule at line %d matches it first (to %s)", pat, prev.pos.Line, prev.backend)
				continue
			}
			t.claims = append(t.claims, claim{pat: pat, backend: u.Backend, acl: acl, pos: u.Pos, rule: what, fe: p})
		}
		h.used[u.Backend] = true
	}
	if db := p.DefaultBackend; db.Set {
		if everything > 0 {
			if !db.Inherited() {
				h.addAt(db.From, report.Note, "never reached: the rule at line %d matches every connection", everything)
			}
		} else {
			t.def = db.Val
			h.used[db.Val] = true
		}
	}
	if t.def == "" && p.Kind == "listen" && len(p.Servers) > 0 {
		t.def = p.Name
		h.used[p.Name] = true
	}
	if t.def != "" && h.backends[t.def] == nil {
		// The backend had no usable server (an error already); keep going for the report.
		t.def = ""
	}

	// Listener settings shared by every bind of this frontend.
	proto := listener{mode: lmode, label: where}
	// HAProxy's frontend maxconn: its own (or its defaults'), else
	// global's; 0 in either is no cap of its own.
	if mc := p.MaxConn; mc.Set && mc.Val > 0 {
		proto.maxConn = &mc.Val
	} else if h.globalMaxConn > 0 {
		proto.maxConn = &h.globalMaxConn
	}
	if t.def != "" {
		proto.defaultBackend = h.bnames[t.def]
	}
	if c, ok := timeoutOf(p, "client"); ok {
		proto.clientTimeout = fmtDuration(c.Val)
	} else {
		at, how := unset(p, "client")
		h.add(at, report.Changed, where, "timeout client", how+": HAProxy kept idle clients indefinitely (and warned); gitedge closes them after %s", gitedgeClient)
	}
	switch lmode {
	case "http":
		if o, ok := p.Option("forwardfor"); ok {
			proto.forwardFor = true
			if len(o.Args) > 0 {
				h.addAt(o.From, report.Changed, "gitedge adds X-Forwarded-For for every client, under that name")
			}
		}
		if r, ok := timeoutOf(p, "http-request"); ok {
			proto.requestTimeout = fmtDuration(r.Val)
		} else {
			at, how := unset(p, "http-request")
			h.add(at, report.Changed, where, "timeout http-request", how+": HAProxy bounded the request head only by timeout client; gitedge's requestTimeout is %s", gitedgeRequest)
		}
		if d := p.InspectDelay; d.Set && !d.Inherited() {
			h.addAt(d.From, report.Note, "gitedge routes HTTP by each request's Host header; the delay only served tcp-request rules")
		}
		for _, r := range p.TCPRules {
			h.addAt(r.Directive, report.Dropped, "tcp-request rules are not carried over to mode http listeners")
		}
	case "tls":
		if o, ok := p.Option("forwardfor"); ok && !o.Inherited() {
			h.addAt(o.From, report.Note, "%s", noEffectTCP)
		}
		const noWait = ": HAProxy routed on whatever bytes had arrived; gitedge waits up to %s for the ClientHello"
		switch d := p.InspectDelay; {
		case d.Set && d.Val > 0:
			proto.inspectTimeout = fmtDuration(d.Val)
		case d.Set:
			h.addAt(d.From, report.Changed, "no wait"+noWait, gitedgeInspect)
		case len(t.claims) > 0:
			h.add(p.Pos, report.Changed, where, "tcp-request inspect-delay", "not set"+noWait, gitedgeInspect)
		}
		if len(t.claims) == 0 && !p.InspectDelay.Set {
			h.add(p.Pos, report.Changed, where, "mode tcp", "%s", whyPlainTCP)
		}
		waitEnd := false
		for _, r := range p.TCPRules {
			switch {
			case r.Stage == "content" && len(r.Action) == 1 && r.Action[0] == "accept" && h.helloOnly(p, r.Cond):
				h.addAt(r.Directive, report.Note, "gitedge's tls listener accepts only connections that start with a ClientHello: the same")
			case r.Stage == "content" && len(r.Action) == 1 && r.Action[0] == "reject" && isWaitEnd(r.Cond):
				waitEnd = true
				h.addAt(r.Directive, report.Note, "gitedge closes a connection whose ClientHello has not arrived within inspectTimeout: the same")
			default:
				h.addAt(r.Directive, report.Dropped, "tcp-request rules other than accepting a ClientHello are not carried over")
			}
		}
		if !waitEnd && (p.InspectDelay.Set || len(t.claims) > 0) {
			h.add(p.Pos, report.Changed, where, "tcp-request content reject if WAIT_END", "absent: %s", whyNoWaitEndCheck)
		}
	}

	// One listener per bind address.
	n, shared := 0, 0
	for _, b := range p.Binds {
		what := b.String()
		if b.SSL {
			h.addAt(b.Directive, report.Dropped, "TLS termination (ssl crt …): gitedge routes TLS by SNI without decrypting it; terminate TLS on the servers, or keep HAProxy for this frontend")
			continue
		}
		if b.Unknown != nil {
			h.rep.Add(b.Pos, report.Dropped, where, strings.Join(b.Unknown, " "), "unknown bind option: not interpreted")
		}
		var bindMax *int // a bind's own maxconn caps its listeners below the frontend's
		for _, o := range b.Other {
			switch o[0] {
			case "maxconn":
				n, err := haproxy.WholeNumber(o[1:])
				if err != nil {
					h.rep.Add(b.Pos, report.Dropped, where, strings.Join(o, " "), "bind option: %v", err)
				} else if n > 0 {
					bindMax = &n
				}
			case "defer-accept":
				h.rep.Add(b.Pos, report.Note, where, "defer-accept", "gitedge's listeners defer accepting by default (deferAccept)")
			case "name", "id", "v4v6", "v6only", "process", "thread", "nice", "shards", "label", "guid-prefix", "backlog", "tfo":
				h.rep.Add(b.Pos, report.Note, where, strings.Join(o, " "), "bind option: no effect on what clients see")
			default:
				h.rep.Add(b.Pos, report.Dropped, where, strings.Join(o, " "), "bind option: no gitedge counterpart")
			}
		}
		for _, a := range b.Addrs {
			if why := unlistenable(a); why != "" {
				h.rep.Add(b.Pos, report.Dropped, where, what, "%s", why)
				continue
			}
			bind := dataplane.Bind{Addr: a.IP, Port: uint16(a.Port)}
			if clash, same := h.clashes(p, b, bind, a.Raw, proto.mode); clash {
				if same {
					shared++
				}
				continue
			}
			n++
			l := proto
			l.name = p.Name
			if n > 1 {
				l.name = fmt.Sprintf("%s-%d", p.Name, n)
			}
			l.name = uniqueName(l.name, h.lnames)
			l.bind = bindString(a.IP, a.Port)
			l.from = b.Pos
			if bindMax != nil && (l.maxConn == nil || *bindMax < *l.maxConn) {
				l.maxConn = bindMax
			}
			if b.AcceptProxy {
				l.acceptProxy = []string{allAddresses4, allAddresses6}
				h.rep.Add(b.Pos, report.Note, where, "accept-proxy", "HAProxy took a PROXY header from any client on this bind; the listener's acceptProxy is %s and %s: narrow it to the addresses of your upstream load balancers", allAddresses4, allAddresses6)
			}
			lc := l
			h.binds = append(h.binds, imported{bind, &lc, p, b.Line})
			t.listener = append(t.listener, &lc)
			h.out.edge.listeners = append(h.out.edge.listeners, &lc)
		}
	}
	if n == 0 && shared > 0 {
		// Its addresses are another frontend's of its mode: its routes
		// join the ones every listener of the mode shares.
		h.tables = append(h.tables, t)
		return
	}
	if n == 0 {
		h.add(p.Pos, report.Dropped, where, "", "no bind gitedge can listen on: the frontend is not imported")
		return
	}
	h.tables = append(h.tables, t)
}

// clashes reports a bind whose address a listener already imported takes
// (reconcile.ListenersClash), and says whether it does, and whether that
// listener is another frontend's of the same mode. HAProxy binds
// both (SO_REUSEPORT) and the kernel hands each connection to one: the
// more specific address, or either of two equal ones. gitedge listens
// once per address: the same address again is left to the first
// listener; a wildcard beside a specific address is an error, as neither
// one alone receives what HAProxy's pair did.
func (h *fromHAProxy) clashes(p *haproxy.Proxy, b *haproxy.Bind, bind dataplane.Bind, addr, mode string) (clash, sameMode bool) {
	where, what := p.Label(), "bind "+addr
	for _, prev := range h.binds {
		if !reconcile.ListenersClash(prev.bind, bind) {
			continue
		}
		at := fmt.Sprintf("line %d", prev.line)
		switch {
		case !sameAddr(prev.bind.Addr, bind.Addr):
			h.errs.Add(b.Pos, "%s: %s shares port %d with listener %q (%s, %s): HAProxy gave each connection to the more specific address, but a gitedge listener on a wildcard address takes the port on every address: keep one of the two binds, or bind the wildcard's other addresses one by one",
				where, what, bind.Port, prev.l.name, prev.p.Label(), at)
		case prev.p == p:
			h.rep.Add(b.Pos, report.Note, where, what, "the same address as this frontend's bind at %s: one listener", at)
		case prev.l.mode != mode:
			h.rep.Add(b.Pos, report.Dropped, where, what, "listener %q (%s, %s) already listens there in mode %s: HAProxy handed each connection to either frontend at random; gitedge listens once, in that mode",
				prev.l.name, prev.p.Label(), at, prev.l.mode)
		default:
			h.rep.Add(b.Pos, report.Changed, where, what, "listener %q (%s, %s) already listens there: HAProxy handed each connection to either frontend; gitedge listens once, with that listener's default backend, and this frontend's routes join the ones every %s listener shares",
				prev.l.name, prev.p.Label(), at, mode)
			return true, true
		}
		return true, false
	}
	return false, false
}

// sameAddr compares bind addresses as HAProxy does: a bind without an
// address (":443") is on 0.0.0.0.
func sameAddr(a, b netip.Addr) bool {
	norm := func(a netip.Addr) netip.Addr {
		if !a.IsValid() {
			return netip.IPv4Unspecified()
		}
		return a.Unmap()
	}
	return norm(a) == norm(b)
}

func isWaitEnd(c *haproxy.Cond) bool {
	return c != nil && !c.Unless && len(c.Groups) == 1 && len(c.Groups[0]) == 1 && c.Groups[0][0].Name == "WAIT_END" && !c.Groups[0][0].Neg
}

// firstACLName returns the first named ACL of a condition, to name routes.
func firstACLName(c *haproxy.Cond) string {
	for _, g := range c.Groups {
		for _, t := range g {
			if t.Name != "" && !haproxy.IsPredefined(t.Name) {
				return t.Name
			}
		}
	}
	return ""
}

// routes merges the frontends' tables into gitedge's routes, which every
// listener of a mode shares, and reports where that changes a frontend's
// routing.
func (h *fromHAProxy) routes() {
	merged := map[string][]claim{}
	for _, t := range h.tables {
		for _, c := range t.claims {
			m := merged[t.mode]
			if i := slices.IndexFunc(m, func(o claim) bool { return o.pat == c.pat }); i >= 0 {
				if m[i].backend != c.backend {
					h.rep.Add(c.pos, report.Changed, c.fe.Label(), c.rule,
						"%s: gitedge's routes are shared by every mode %s listener, and %s (line %d) sends it to %s: that wins on every listener",
						c.pat, t.mode, m[i].fe.Label(), m[i].pos.Line, m[i].backend)
				}
				continue
			}
			merged[t.mode] = append(m, c)
		}
	}
	// What each frontend did with every routed host, against gitedge.
	for _, t := range h.tables {
		m := merged[t.mode]
		pats := make([]string, len(m))
		for i, c := range m {
			pats[i] = c.pat
		}
		own := make([]string, len(t.claims))
		for i, c := range t.claims {
			own[i] = c.pat
		}
		for _, c := range m {
			if slices.Contains(own, c.pat) {
				continue
			}
			host := representative(c.pat)
			was := t.def
			if i := lookup(own, host); i >= 0 {
				was = t.claims[i].backend
			}
			now := t.def
			if i := lookup(pats, host); i >= 0 {
				now = m[i].backend
			}
			if was != now {
				h.add(t.fe.Pos, report.Changed, t.fe.Label(), c.pat,
					"routed to %s by %s (line %d), and gitedge's routes are shared by every mode %s listener; this frontend sent it to %s",
					now, c.fe.Label(), c.pos.Line, t.mode, cmp.Or(was, "(none)"))
			}
		}
	}
	// Routes: one per ACL name and backend pair, hosts in order of appearance.
	type hostRoute struct {
		pat, name string
		http, tls string
		from      []string
	}
	var order []*hostRoute
	byPat := map[string]*hostRoute{}
	for _, t := range h.tables {
		for _, c := range merged[t.mode] {
			if c.fe != t.fe {
				continue
			}
			hr := byPat[c.pat]
			if hr == nil {
				name := c.acl
				if name == "" {
					name = strings.Replace(c.pat, "*", "wildcard", 1)
				}
				hr = &hostRoute{pat: c.pat, name: safeName(name)}
				byPat[c.pat] = hr
				order = append(order, hr)
			}
			if t.mode == "http" {
				hr.http = h.bnames[c.backend]
			} else {
				hr.tls = h.bnames[c.backend]
			}
			hr.from = append(hr.from, fmt.Sprintf("%s: %s: %s", c.pos, c.fe.Label(), c.rule))
		}
	}
	type key struct{ name, http, tls string }
	routes := map[key]*route{}
	used := map[string]bool{}
	for _, hr := range order {
		k := key{hr.name, hr.http, hr.tls}
		r := routes[k]
		if r == nil {
			r = &route{name: uniqueName(hr.name, used), http: hr.http, tls: hr.tls}
			routes[k] = r
			h.out.routes = append(h.out.routes, r)
		}
		r.hosts = append(r.hosts, hr.pat)
		for _, f := range hr.from {
			if !slices.Contains(r.from, f) {
				r.from = append(r.from, f)
			}
		}
	}
	slices.SortFunc(h.out.routes, func(a, b *route) int { return strings.Compare(a.name, b.name) })
	// X-Forwarded-For asked by a backend but not by a listener routing to it.
	for _, t := range h.tables {
		if t.mode != "http" {
			continue
		}
		targets := []string{t.def}
		for _, c := range t.claims {
			targets = append(targets, c.backend)
		}
		for _, name := range targets {
			o := h.xff[name]
			if o == nil || t.listener == nil || t.listener[0].forwardFor {
				continue
			}
			h.addAt(o.From, report.Changed, "gitedge adds X-Forwarded-For per listener: %s routes to %s without it", t.fe.Label(), name)
		}
	}
}

// timeoutOf is one of a proxy's timeouts as HAProxy applies it: a zero
// time is no timeout at all, the same as none set (haproxy -c warns of
// both alike), so neither becomes a gitedge field, which must be more
// than 0s.
func timeoutOf(p *haproxy.Proxy, name string) (haproxy.Setting[time.Duration], bool) {
	t, ok := p.Timeouts[name]
	return t, ok && t.Val > 0
}

// unset says how a timeout timeoutOf does not find came to be missing,
// and where: the "timeout NAME 0" line (in the proxy or the defaults it
// inherits), or the proxy's header when no line sets it.
func unset(p *haproxy.Proxy, name string) (report.Pos, string) {
	if t, ok := p.Timeouts[name]; ok {
		at := p.Pos
		if t.From != nil {
			at = t.From.Pos
		}
		return at, "0, which HAProxy reads as none"
	}
	return p.Pos, "not set"
}

// unlistenable says why gitedge cannot listen on a bind address as
// HAProxy did; "" when it can.
func unlistenable(a haproxy.Addr) string {
	switch {
	case !a.IsInet():
		return fmt.Sprintf("a %s socket: gitedge listens on IP addresses only", strings.TrimSuffix(a.Family, "@"))
	case a.Host != "" && a.Host != "*" && !a.IP.IsValid():
		return fmt.Sprintf("gitedge binds IP addresses: HAProxy resolved %q when it started; write the address", a.Host)
	case a.PortHigh > a.Port:
		return "a port range: write one bind per port"
	}
	return ""
}

// selfBind names the frontend bind a server address reaches, by the
// loader's rule (reconcile.ServerIsListener). HAProxy looped such
// requests back into itself; gitedge refuses the server.
func (h *fromHAProxy) selfBind(ip netip.Addr, port int) (string, bool) {
	addr := netip.AddrPortFrom(ip, uint16(port))
	for _, p := range h.cfg.Proxies {
		for _, b := range p.Binds {
			if b.SSL {
				continue // not imported
			}
			for _, ba := range b.Addrs {
				if unlistenable(ba) != "" {
					continue // not imported either
				}
				if reconcile.ServerIsListener(dataplane.Bind{Addr: ba.IP, Port: uint16(ba.Port)}, addr) {
					return fmt.Sprintf("frontend %q's bind %s", p.Name, ba.Raw), true
				}
			}
		}
	}
	return "", false
}
