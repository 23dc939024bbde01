package haproxy

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gitedge/gitedge/importer/report"
)

// Setting is one value and the directive that set it, which is in a
// defaults section when the value was inherited.
type Setting[T any] struct {
	Val  T
	Set  bool
	From *Directive
}

// Inherited reports whether the value came from a defaults section.
func (s Setting[T]) Inherited() bool {
	return s.Set && s.From != nil && s.From.Section != nil && s.From.Section.Kind == "defaults"
}

func (s Setting[T]) into(dst *Setting[T]) {
	if s.Set {
		*dst = s
	}
}

// Option is one "option NAME [ARGS]" or "no option NAME".
type Option struct {
	On   bool
	Args []string
	From *Directive
}

// Inherited reports whether the option came from a defaults section.
func (o Option) Inherited() bool { return o.From != nil && o.From.Section.Kind == "defaults" }

// UseBackend is one use_backend rule.
type UseBackend struct {
	*Directive
	Backend string // as written; may be a log-format expression %[...]
	Cond    *Cond
}

// Dynamic reports whether the backend name is computed per request.
func (u *UseBackend) Dynamic() bool { return strings.Contains(u.Backend, "%[") }

// TCPRule is one "tcp-request content|connection|session ACTION [cond]".
type TCPRule struct {
	*Directive
	Stage  string   // content, connection, session
	Action []string // "accept", "reject", "track-sc0 src", ...
	Cond   *Cond
}

// HTTPCheck is what "option httpchk" or "http-check send" asks for.
type HTTPCheck struct {
	Method, URI, Version, Host string
}

// Proxy is a frontend, backend or listen section (or a defaults section
// while it is being built) with what it inherits from its defaults.
type Proxy struct {
	*Section
	// Defaults is the defaults section the proxy inherits from; nil when none.
	Defaults *Section

	Mode           Setting[string] // http or tcp; HAProxy's default is tcp
	DefaultBackend Setting[string]
	Balance        Setting[[]string]
	Timeouts       map[string]Setting[time.Duration]
	Options        map[string]Option
	Retries        Setting[int]
	MaxConn        Setting[int] // a frontend's cap on its client connections
	InspectDelay   Setting[time.Duration]
	HTTPCheck      Setting[HTTPCheck] // http-check send; option httpchk is in Options
	DefaultServer  ServerOptions

	Binds       []*Bind
	ACLs        map[string][]*ACL
	UseBackends []*UseBackend
	TCPRules    []*TCPRule
	Servers     []*Server
	// Other holds the proxy's own lines this package does not type, in order.
	Other []*Directive
	// Ignored holds lines HAProxy reads but ignores in this kind of
	// section (a bind in a backend, balance in a frontend), with a warning.
	Ignored []*Directive

	conds []condUse // conditions to check once every acl line is read
}

type condUse struct {
	d *Directive
	c *Cond
}

// IsFrontend reports whether the proxy accepts connections (frontend, listen).
func (p *Proxy) IsFrontend() bool { return p.Kind == "frontend" || p.Kind == "listen" }

// IsBackend reports whether the proxy has servers (backend, listen).
func (p *Proxy) IsBackend() bool { return p.Kind == "backend" || p.Kind == "listen" }

// EffectiveMode returns the mode, tcp when none was set (as HAProxy).
func (p *Proxy) EffectiveMode() string {
	if p.Mode.Set {
		return p.Mode.Val
	}
	return "tcp"
}

// Option returns the option when it is set and on.
func (p *Proxy) Option(name string) (Option, bool) {
	o, ok := p.Options[name]
	return o, ok && o.On
}

// inherit returns a new proxy for s with the inheritable values of the
// defaults d (nil for none).
func inherit(s *Section, d *Proxy) *Proxy {
	p := &Proxy{Section: s, Timeouts: map[string]Setting[time.Duration]{}, Options: map[string]Option{}, ACLs: map[string][]*ACL{}}
	if d == nil {
		return p
	}
	p.Defaults = d.Section
	p.Mode = d.Mode
	p.DefaultBackend = d.DefaultBackend
	p.Balance = d.Balance
	p.Timeouts = maps.Clone(d.Timeouts)
	p.Options = maps.Clone(d.Options)
	p.Retries = d.Retries
	p.MaxConn = d.MaxConn
	p.InspectDelay = d.InspectDelay
	p.HTTPCheck = d.HTTPCheck
	p.DefaultServer = d.DefaultServer
	p.DefaultServer.Other = slices.Clone(d.DefaultServer.Other)
	return p
}

// Config is a parsed configuration.
type Config struct {
	// Sections are all sections as written, in file order.
	Sections []*Section
	// Defaults are the defaults sections, with what each resolved to.
	Defaults []*Proxy
	// Proxies are the frontend, backend and listen sections in file order.
	Proxies []*Proxy
	// EnvVars are the ${NAME} references HAProxy would expand.
	EnvVars []EnvVar
}

// Backend returns the backend or listen section with that name.
func (c *Config) Backend(name string) (*Proxy, bool) {
	for _, p := range c.Proxies {
		if p.IsBackend() && p.Name == name {
			return p, true
		}
	}
	return nil, false
}

// TimeoutNames are the timeouts HAProxy knows.
var timeoutNames = map[string]bool{
	"client": true, "server": true, "connect": true, "queue": true, "tunnel": true, "check": true,
	"http-request": true, "http-keep-alive": true, "tarpit": true, "client-fin": true, "server-fin": true,
	"client-hs": true,
}

// conditional lists keywords whose lines may end with a condition, so the
// ACLs they use are checked even when the importer cannot carry them over.
var conditional = map[string]bool{
	"use-server": true, "tcp-response": true, "http-request": true, "http-response": true,
	"http-after-response": true, "stick": true, "redirect": true, "monitor": true, "block": true,
	"errorloc": false,
}

// Parse reads an HAProxy configuration. file names it in errors. It
// returns every error HAProxy would stop at, each with file and line.
func Parse(file string, data []byte) (*Config, error) {
	var errs report.Errors
	secs, env := sections(file, data, &errs)
	c := &Config{Sections: secs, EnvVars: env}
	named := map[string][]*Proxy{}
	lookupDefaults := func(s *Section, name string) *Proxy {
		ds := named[name]
		switch len(ds) {
		case 0:
			errs.Add(s.Pos, "%s: 'from %s' names no defaults section defined before it", s.Label(), name)
			return nil
		case 1:
			return ds[0]
		}
		errs.Add(s.Pos, "%s: 'from %s' is ambiguous: defaults %q is defined at lines %d and %d", s.Label(), name, name, ds[0].Line, ds[1].Line)
		return nil
	}
	var last *Proxy
	seen := map[string]*Section{}
	for _, s := range secs {
		switch s.Kind {
		case "defaults":
			var base *Proxy
			if s.From != "" {
				base = lookupDefaults(s, s.From)
			}
			d := inherit(s, base)
			d.Defaults = nil
			if base != nil {
				d.Defaults = base.Section
			}
			for _, dir := range s.Directives {
				directive(d, dir, &errs)
			}
			if s.Name != "" {
				named[s.Name] = append(named[s.Name], d)
			}
			c.Defaults = append(c.Defaults, d)
			last = d
		case "frontend", "backend", "listen":
			def := last
			if s.From != "" {
				def = lookupDefaults(s, s.From)
			}
			p := inherit(s, def)
			for _, dir := range s.Directives {
				directive(p, dir, &errs)
			}
			for _, u := range p.conds {
				checkCond(p, u.d, u.c, &errs)
			}
			// Frontends and backends have separate name spaces; a listen
			// section is in both.
			spaces := map[string][]string{"frontend": {"frontend"}, "backend": {"backend"}, "listen": {"frontend", "backend"}}[s.Kind]
			for _, sp := range spaces {
				if prev, dup := seen[sp+"/"+s.Name]; dup {
					errs.Add(s.Pos, "%s: the name is already used by the %s at line %d", s.Label(), prev.Kind, prev.Line)
					break
				}
			}
			for _, sp := range spaces {
				seen[sp+"/"+s.Name] = s
			}
			c.Proxies = append(c.Proxies, p)
		}
	}
	// References to backends.
	for _, p := range c.Proxies {
		if !p.IsFrontend() {
			continue
		}
		// An HTTP frontend cannot hand a stream to a TCP backend.
		wrongMode := func(at report.Pos, kw string, b *Proxy) {
			if p.EffectiveMode() == "http" && b.EffectiveMode() != "http" {
				errs.Add(at, "%s: %s is mode %s but %s is mode http: HAProxy refuses this (wrong mode)", kw, b.Label(), b.EffectiveMode(), p.Label())
			}
		}
		for _, u := range p.UseBackends {
			if u.Dynamic() {
				continue
			}
			if b, ok := c.Backend(u.Backend); !ok {
				errs.Add(u.Pos, "use_backend: no backend named %q", u.Backend)
			} else {
				wrongMode(u.Pos, "use_backend", b)
			}
		}
		if db := p.DefaultBackend; db.Set && !strings.Contains(db.Val, "%[") {
			if b, ok := c.Backend(db.Val); !ok {
				errs.Add(db.From.Pos, "default_backend: no backend named %q (used by %s)", db.Val, p.Label())
			} else {
				wrongMode(db.From.Pos, "default_backend", b)
			}
		}
	}
	if err := errs.Err(); err != nil {
		return c, err
	}
	return c, nil
}

// refused says in which sections HAProxy refuses a keyword (f frontend,
// b backend, d defaults, a anonymous defaults only); ignored says where
// it only warns that the line is ignored.
var (
	refused = map[string]string{
		"server": "fd", "default-server": "f", "bind": "d", "use_backend": "d", "acl": "a",
	}
	ignored = map[string]string{
		"bind": "b", "use_backend": "b", "default_backend": "b", "balance": "f", "retries": "f", "http-check": "f",
		"server-template": "f", "hash-type": "f", "cookie": "f", "maxconn": "b",
	}
)

func sectionLetters(p *Proxy) string {
	switch {
	case p.Kind == "defaults" && p.Name == "":
		return "da"
	case p.Kind == "listen":
		return "l"
	}
	return p.Kind[:1]
}

// WholeNumber reads the argument of a keyword that takes one whole number
// (0 or more), as retries and maxconn do.
func WholeNumber(args []string) (int, error) {
	if len(args) != 1 {
		return 0, errors.New("expected a number")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q: expected a whole number", args[0])
	}
	return n, nil
}

// directive applies one line to p, recording errors.
func directive(p *Proxy, d *Directive, errs *report.Errors) {
	kw := d.Keyword()
	letters := sectionLetters(p)
	if where, ok := refused[kw]; ok && strings.ContainsAny(where, letters) {
		kind := p.Kind
		if letters == "da" {
			kind = "anonymous defaults"
		}
		errs.Add(d.Pos, "%q is not allowed in a %s section", kw, kind)
		return
	}
	if where, ok := ignored[kw]; ok && strings.ContainsAny(where, letters) {
		p.Ignored = append(p.Ignored, d)
		return
	}
	args := d.Args[1:]
	fail := func(format string, a ...any) { errs.Add(d.Pos, "%s: %s", kw, fmt.Sprintf(format, a...)) }
	switch kw {
	case "global", "defaults":
		// unreachable: section headers
	case "mode":
		if len(args) != 1 || (args[0] != "http" && args[0] != "tcp") {
			fail("expected http or tcp, got %q", strings.Join(args, " "))
			return
		}
		p.Mode = Setting[string]{args[0], true, d}
	case "bind":
		b, err := parseBind(d, args)
		if err != nil {
			fail("%v", err)
			return
		}
		p.Binds = append(p.Binds, b)
	case "acl":
		if len(args) < 2 {
			fail("expected a name and a criterion, as acl blog hdr(host) -i blog.example.org")
			return
		}
		if !validACLName(args[0]) {
			fail("ACL name %q: only letters, digits, '-', '_', '.' and ':' are allowed", args[0])
			return
		}
		a, err := parseACL(d, args[0], args[1:])
		if err != nil {
			fail("%v", err)
			return
		}
		p.ACLs[a.Name] = append(p.ACLs[a.Name], a)
	case "use_backend":
		if len(args) == 0 || args[0] == "if" || args[0] == "unless" {
			fail("needs a backend name")
			return
		}
		rest, cond, err := splitCond(d, args[1:])
		if err != nil {
			fail("%v", err)
			return
		}
		if len(rest) > 0 {
			fail("unexpected %q after the backend name (expected if or unless)", strings.Join(rest, " "))
			return
		}
		p.conds = append(p.conds, condUse{d, cond})
		p.UseBackends = append(p.UseBackends, &UseBackend{Directive: d, Backend: args[0], Cond: cond})
	case "default_backend":
		if len(args) != 1 {
			fail("expected one backend name")
			return
		}
		p.DefaultBackend = Setting[string]{args[0], true, d}
	case "server":
		if len(args) < 2 {
			fail("expected a name and an address, as server web1 192.0.2.10:80")
			return
		}
		a, err := parseAddr(args[1], false)
		if err != nil {
			fail("%s: %v", args[0], err)
			return
		}
		var own ServerOptions
		if err := parseServerOptions(d, &own, args[2:]); err != nil {
			fail("%s: %v", args[0], err)
			return
		}
		for _, s := range p.Servers {
			if s.Name == args[0] {
				fail("server name %q is already used at line %d", args[0], s.Line)
				return
			}
		}
		p.Servers = append(p.Servers, &Server{Directive: d, Name: args[0], Addr: a, ServerOptions: p.DefaultServer.merge(own)})
	case "default-server":
		var own ServerOptions
		if err := parseServerOptions(d, &own, args); err != nil {
			fail("%v", err)
			return
		}
		p.DefaultServer = p.DefaultServer.merge(own)
	case "balance":
		if len(args) == 0 {
			fail("needs an algorithm, as roundrobin")
			return
		}
		p.Balance = Setting[[]string]{slices.Clone(args), true, d}
	case "timeout":
		if len(args) != 2 {
			fail("expected a name and a time, as timeout connect 5s")
			return
		}
		if !timeoutNames[args[0]] {
			fail("unknown timeout %q", args[0])
			return
		}
		t, err := ParseTime(args[1])
		if err != nil {
			fail("%s: %v", args[0], err)
			return
		}
		p.Timeouts[args[0]] = Setting[time.Duration]{t, true, d}
	case "contimeout", "clitimeout", "srvtimeout":
		fail("removed from HAProxy: use timeout %s", map[string]string{"contimeout": "connect", "clitimeout": "client", "srvtimeout": "server"}[kw])
	case "option":
		if len(args) == 0 {
			fail("needs an option name")
			return
		}
		p.Options[args[0]] = Option{On: true, Args: slices.Clone(args[1:]), From: d}
		if args[0] == "httpchk" && len(args) > 1 {
			if _, err := httpchkArgs(args[1:]); err != nil {
				fail("httpchk: %v", err)
			}
		}
	case "no":
		if len(args) == 2 && args[0] == "option" {
			p.Options[args[1]] = Option{On: false, From: d}
			return
		}
		p.Other = append(p.Other, d)
	case "retries", "maxconn":
		n, err := WholeNumber(args)
		if err != nil {
			fail("%v", err)
			return
		}
		if kw == "retries" {
			p.Retries = Setting[int]{n, true, d}
		} else {
			p.MaxConn = Setting[int]{n, true, d}
		}
	case "tcp-request":
		tcpRequest(p, d, args, errs)
	case "http-check":
		if len(args) > 0 && args[0] == "send" {
			hc, err := httpCheckSend(args[1:])
			if err != nil {
				fail("%v", err)
				return
			}
			p.HTTPCheck = Setting[HTTPCheck]{hc, true, d}
			return
		}
		p.Other = append(p.Other, d)
	default:
		if conditional[kw] {
			if _, cond, err := splitCond(d, args); err != nil {
				fail("%v", err)
				return
			} else {
				p.conds = append(p.conds, condUse{d, cond})
			}
		}
		p.Other = append(p.Other, d)
	}
}

func validACLName(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return n != ""
}

func tcpRequest(p *Proxy, d *Directive, args []string, errs *report.Errors) {
	if len(args) == 0 {
		errs.Add(d.Pos, "tcp-request: expected inspect-delay, content, connection or session")
		return
	}
	switch args[0] {
	case "inspect-delay":
		if len(args) != 2 {
			errs.Add(d.Pos, "tcp-request inspect-delay: expected a time, as 5s")
			return
		}
		t, err := ParseTime(args[1])
		if err != nil {
			errs.Add(d.Pos, "tcp-request inspect-delay: %v", err)
			return
		}
		p.InspectDelay = Setting[time.Duration]{t, true, d}
	case "content", "connection", "session":
		if p.Kind == "defaults" && p.Name == "" {
			errs.Add(d.Pos, "tcp-request %s is not allowed in an anonymous defaults section (name it and use from)", args[0])
			return
		}
		if len(args) < 2 {
			errs.Add(d.Pos, "tcp-request %s: needs an action", args[0])
			return
		}
		action, cond, err := splitCond(d, args[1:])
		if err != nil {
			errs.Add(d.Pos, "tcp-request %s: %v", args[0], err)
			return
		}
		if len(action) == 0 {
			errs.Add(d.Pos, "tcp-request %s: needs an action before the condition", args[0])
			return
		}
		p.conds = append(p.conds, condUse{d, cond})
		p.TCPRules = append(p.TCPRules, &TCPRule{Directive: d, Stage: args[0], Action: action, Cond: cond})
	default:
		errs.Add(d.Pos, "tcp-request: unknown %q (expected inspect-delay, content, connection or session)", args[0])
	}
}

// httpchkArgs reads "option httpchk [METHOD] [URI] [VERSION]": with one
// argument it is the URI, with two the method and URI.
func httpchkArgs(args []string) (HTTPCheck, error) {
	var hc HTTPCheck
	switch len(args) {
	case 0:
	case 1:
		hc.URI = args[0]
	case 2:
		hc.Method, hc.URI = args[0], args[1]
	case 3:
		hc.Method, hc.URI, hc.Version = args[0], args[1], args[2]
	default:
		return hc, fmt.Errorf("expected at most a method, a URI and a version, got %d words", len(args))
	}
	// The old way to send a Host header: "HTTP/1.1\r\nHost:\ example.org".
	if v, rest, ok := strings.Cut(hc.Version, "\r\n"); ok {
		hc.Version = v
		for line := range strings.SplitSeq(rest, "\r\n") {
			if k, val, ok := strings.Cut(line, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "host") {
				hc.Host = strings.TrimSpace(val)
			}
		}
	}
	if hc.URI != "" && !strings.HasPrefix(hc.URI, "/") && !strings.HasPrefix(hc.URI, "*") && !strings.Contains(hc.URI, "://") {
		return hc, fmt.Errorf("URI %q must start with /", hc.URI)
	}
	return hc, nil
}

// HTTPCheckOf returns the check "option httpchk" and "http-check send"
// describe together, with HAProxy's defaults (OPTIONS / HTTP/1.0).
func (p *Proxy) HTTPCheckOf() HTTPCheck {
	o := p.Options["httpchk"]
	hc, _ := httpchkArgs(o.Args)
	if s := p.HTTPCheck; s.Set {
		hc.Method = cmp.Or(s.Val.Method, hc.Method)
		hc.URI = cmp.Or(s.Val.URI, hc.URI)
		hc.Version = cmp.Or(s.Val.Version, hc.Version)
		hc.Host = cmp.Or(s.Val.Host, hc.Host)
	}
	hc.Method = cmp.Or(hc.Method, "OPTIONS")
	hc.URI = cmp.Or(hc.URI, "/")
	hc.Version = cmp.Or(hc.Version, "HTTP/1.0")
	return hc
}

func httpCheckSend(args []string) (HTTPCheck, error) {
	var hc HTTPCheck
	for i := 0; i < len(args); i++ {
		need := func(n int) error {
			if i+n >= len(args) {
				return fmt.Errorf("send %s needs %d value(s)", args[i], n)
			}
			return nil
		}
		switch args[i] {
		case "meth", "uri", "ver", "uri-lf", "body", "body-lf", "comment":
			if err := need(1); err != nil {
				return hc, err
			}
			switch args[i] {
			case "meth":
				hc.Method = args[i+1]
			case "uri":
				hc.URI = args[i+1]
			case "ver":
				hc.Version = args[i+1]
			}
			i++
		case "hdr":
			if err := need(2); err != nil {
				return hc, err
			}
			if strings.EqualFold(args[i+1], "host") {
				hc.Host = args[i+2]
			}
			i += 2
		default:
			return hc, fmt.Errorf("send: unknown %q (expected meth, uri, ver, hdr or body)", args[i])
		}
	}
	return hc, nil
}
