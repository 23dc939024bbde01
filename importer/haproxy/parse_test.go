package haproxy

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/importer/report/reporttest"
)

func TestSplitLine(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		env  []string
		err  string
	}{
		{in: "  bind :80   # comment", want: []string{"bind", ":80"}},
		{in: "\tserver a 192.0.2.1:80\tcheck", want: []string{"server", "a", "192.0.2.1:80", "check"}},
		{in: `errorfile 503 "/etc/haproxy/my errors/503.http"`, want: []string{"errorfile", "503", "/etc/haproxy/my errors/503.http"}},
		{in: `option httpchk GET /health HTTP/1.1\r\nHost:\ example.org`, want: []string{"option", "httpchk", "GET", "/health", "HTTP/1.1\r\nHost: example.org"}},
		{in: `acl a hdr(host) -i 'it''s'`, want: []string{"acl", "a", "hdr(host)", "-i", "its"}},
		{in: `acl a path_beg /a\#b`, want: []string{"acl", "a", "path_beg", "/a#b"}},
		{in: `x \x41\x62c`, want: []string{"x", "Abc"}},
		{in: `x "a#b" '${NOT}' "${YES}"`, want: []string{"x", "a#b", "${NOT}", "${YES}"}, env: []string{"${YES}"}},
		{in: `bind ${ADDR}:80`, want: []string{"bind", "${ADDR}:80"}, env: []string{"${ADDR}"}},
		{in: `x "open`, err: "unterminated double quote"},
		{in: `x 'open`, err: "unterminated single quote"},
		{in: `x end\`, err: "no line continuation"},
		{in: `x \xZZ`, err: `\x needs two hexadecimal digits`},
		{in: "# only a comment", want: nil},
	} {
		got, env, err := splitLine(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("%q: words (-want +got):\n%s", tc.in, d)
		}
		if d := cmp.Diff(tc.env, env); d != "" {
			t.Errorf("%q: env (-want +got):\n%s", tc.in, d)
		}
		// What quote renders, splitLine reads back the same.
		var q []string
		for _, w := range got {
			q = append(q, quote(w))
		}
		back, _, err := splitLine(strings.Join(q, " "))
		if err != nil || !slices.Equal(back, got) {
			t.Errorf("%q: quoted back as %q, read %q (%v)", tc.in, strings.Join(q, " "), back, err)
		}
	}
}

func TestParseTime(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"5000", 5 * time.Second, false},
		{"0", 0, false},
		{"100us", 100 * time.Microsecond, false},
		{"250ms", 250 * time.Millisecond, false},
		{"10s", 10 * time.Second, false},
		{"3600s", time.Hour, false},
		{"1m", time.Minute, false},
		{"2h", 2 * time.Hour, false},
		{"1d", 24 * time.Hour, false},
		{"24d", 24 * 24 * time.Hour, false},
		{"25d", 0, true}, // HAProxy's limit is 2^31-1 ms
		{"1.5s", 0, true},
		{"s", 0, true},
		{"-1s", 0, true},
		{"5S", 0, true},
		{"10sec", 0, true},
		{"", 0, true},
	} {
		got, err := ParseTime(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseTime(%q) = %v, %v; want %v, error %t", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func parse(t *testing.T, cfg string) *Config {
	t.Helper()
	c, err := Parse("t.cfg", []byte(cfg))
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, cfg)
	}
	return c
}

func proxyNamed(t *testing.T, c *Config, kind, name string) *Proxy {
	t.Helper()
	for _, p := range c.Proxies {
		if p.Kind == kind && p.Name == name {
			return p
		}
	}
	t.Fatalf("no %s %q", kind, name)
	return nil
}

// TestDefaultsInheritance covers HAProxy's rules: a defaults section
// applies to the proxies after it until the next one, which starts again
// from nothing; a proxy's own line wins; "from NAME" picks a named
// defaults section; "defaults B from A" starts from A; "no option" turns
// an inherited option off; default-server options reach server lines,
// whose own options win; mode is tcp when nothing sets it.
func TestDefaultsInheritance(t *testing.T) {
	const cfg = `
defaults
    mode http
    timeout connect 5s
    timeout client 1m
    option forwardfor
    option redispatch
    retries 5
    balance leastconn
    default-server inter 3s fall 5 send-proxy
    default_backend web

frontend fe1
    bind :80
    timeout client 30s

backend web
    server w1 192.0.2.1:80
    server w2 192.0.2.2:80 inter 1s no-send-proxy send-proxy-v2 check
    no option redispatch

defaults named
    mode http
    timeout connect 9s
    option httpchk GET /ping

defaults child from named
    timeout server 7s

defaults
    timeout queue 2s

frontend fe2
    bind :81

backend plain
    server p 192.0.2.3:80

backend fromnamed from named
    server n 192.0.2.4:80 check

backend fromchild from child
    server c 192.0.2.5:80
`
	c := parse(t, cfg)
	sec := func(d *Directive) string {
		if d == nil {
			return "-"
		}
		return d.Pos.String()
	}
	for _, tc := range []struct {
		name string
		got  any
		want any
	}{
		// The first defaults section reaches fe1 and web.
		{"fe1 mode from defaults", proxyNamed(t, c, "frontend", "fe1").Mode.Val, "http"},
		{"fe1 mode is inherited", proxyNamed(t, c, "frontend", "fe1").Mode.Inherited(), true},
		{"fe1 own timeout client wins", proxyNamed(t, c, "frontend", "fe1").Timeouts["client"].Val, 30 * time.Second},
		{"fe1 timeout client is its own", proxyNamed(t, c, "frontend", "fe1").Timeouts["client"].Inherited(), false},
		{"fe1 default_backend from defaults", proxyNamed(t, c, "frontend", "fe1").DefaultBackend.Val, "web"},
		{"fe1 forwardfor from defaults", proxyNamed(t, c, "frontend", "fe1").Options["forwardfor"].On, true},
		{"web retries from defaults", proxyNamed(t, c, "backend", "web").Retries.Val, 5},
		{"web balance from defaults", proxyNamed(t, c, "backend", "web").Balance.Val, []string{"leastconn"}},
		{"web connect from defaults line", sec(proxyNamed(t, c, "backend", "web").Timeouts["connect"].From), "t.cfg:4"},
		{"no option redispatch", proxyNamed(t, c, "backend", "web").Options["redispatch"].On, false},
		{"w1 inter from default-server", proxyNamed(t, c, "backend", "web").Servers[0].Inter.Val, 3 * time.Second},
		{"w1 fall from default-server", proxyNamed(t, c, "backend", "web").Servers[0].Fall.Val, 5},
		{"w1 send-proxy from default-server", proxyNamed(t, c, "backend", "web").Servers[0].SendProxy.Val, 1},
		{"w1 no check", proxyNamed(t, c, "backend", "web").Servers[0].Check.Val, false},
		{"w2 own inter wins", proxyNamed(t, c, "backend", "web").Servers[1].Inter.Val, time.Second},
		{"w2 send-proxy-v2 after no-send-proxy", proxyNamed(t, c, "backend", "web").Servers[1].SendProxy.Val, 2},
		{"w2 fall still from default-server", proxyNamed(t, c, "backend", "web").Servers[1].Fall.Val, 5},
		// The last unnamed defaults section resets everything for fe2 and plain.
		{"fe2 mode: tcp, nothing set", proxyNamed(t, c, "frontend", "fe2").EffectiveMode(), "tcp"},
		{"fe2 no forwardfor", proxyNamed(t, c, "frontend", "fe2").Options["forwardfor"].On, false},
		{"fe2 no default_backend", proxyNamed(t, c, "frontend", "fe2").DefaultBackend.Set, false},
		{"plain no retries", proxyNamed(t, c, "backend", "plain").Retries.Set, false},
		{"plain timeout queue from the last defaults", proxyNamed(t, c, "backend", "plain").Timeouts["queue"].Val, 2 * time.Second},
		{"plain no connect timeout", proxyNamed(t, c, "backend", "plain").Timeouts["connect"].Set, false},
		{"plain no default-server options", proxyNamed(t, c, "backend", "plain").Servers[0].SendProxy.Set, false},
		{"plain inherits from the last defaults", proxyNamed(t, c, "backend", "plain").Defaults.Line, 30},
		// from NAME.
		{"fromnamed mode", proxyNamed(t, c, "backend", "fromnamed").Mode.Val, "http"},
		{"fromnamed connect", proxyNamed(t, c, "backend", "fromnamed").Timeouts["connect"].Val, 9 * time.Second},
		{"fromnamed httpchk", proxyNamed(t, c, "backend", "fromnamed").HTTPCheckOf(), HTTPCheck{Method: "GET", URI: "/ping", Version: "HTTP/1.0"}},
		{"fromnamed no queue from the last defaults", proxyNamed(t, c, "backend", "fromnamed").Timeouts["queue"].Set, false},
		// defaults child from named.
		{"fromchild connect via named", proxyNamed(t, c, "backend", "fromchild").Timeouts["connect"].Val, 9 * time.Second},
		{"fromchild server from child", proxyNamed(t, c, "backend", "fromchild").Timeouts["server"].Val, 7 * time.Second},
		{"fromchild httpchk via named", proxyNamed(t, c, "backend", "fromchild").Options["httpchk"].On, true},
	} {
		if d := cmp.Diff(tc.want, tc.got); d != "" {
			t.Errorf("%s (-want +got):\n%s", tc.name, d)
		}
	}
}

func TestDirectives(t *testing.T) {
	c := parse(t, `
frontend f
    mode tcp
    bind 192.0.2.1:443,[2001:db8::1]:443 accept-proxy name x
    bind :::8443 v4v6
    bind ipv4@:80
    bind unix@/run/x.sock
    bind *:9000-9002
    acl a req.ssl_sni -i a.example b.example
    acl a req_ssl_sni -m end .c.example
    acl h req_ssl_hello_type 1
    tcp-request inspect-delay 5s
    tcp-request content accept if h
    use_backend b if a || { req.ssl_sni -m dom x.example } h
    use_backend b unless !h
    default_backend b

backend b
    balance source
    option httpchk
    http-check send meth GET uri /health hdr Host check.example
    server s1 192.0.2.10:443 weight 10 maxconn 100 send-proxy-v2 check inter 2s rise 3 fall 4 backup disabled
    server s2 web.example:8443 cookie c1 slowstart 10s
    server s3 192.0.2.11 ssl verify none
    server s4 192.0.2.12:+1
`)
	f := proxyNamed(t, c, "frontend", "f")
	var binds []string
	for _, b := range f.Binds {
		for _, a := range b.Addrs {
			binds = append(binds, fmtAddr(a))
		}
	}
	want := []string{"|192.0.2.1|443", "|2001:db8::1|443", "|::|8443", "ipv4@||80", "unix@|/run/x.sock|0", "|*|9000-9002"}
	if d := cmp.Diff(want, binds); d != "" {
		t.Errorf("binds (-want +got):\n%s", d)
	}
	if !f.Binds[0].AcceptProxy || f.Binds[1].AcceptProxy {
		t.Error("accept-proxy: only on the first bind line")
	}
	if d := cmp.Diff([][]string{{"name", "x"}}, f.Binds[0].Other); d != "" {
		t.Errorf("bind options: %s", d)
	}
	if got := f.ACLs["a"]; len(got) != 2 || !got[0].Icase || got[1].Method != "end" || !slices.Equal(got[0].Values, []string{"a.example", "b.example"}) {
		t.Errorf("acl a: %+v", got)
	}
	if got := f.UseBackends[0].Cond.String(); got != "if a || { req.ssl_sni -m dom x.example } h" {
		t.Errorf("condition: %s", got)
	}
	if c := f.UseBackends[1].Cond; !c.Unless || !c.Groups[0][0].Neg {
		t.Errorf("unless !h: %+v", c)
	}
	if f.InspectDelay.Val != 5*time.Second || len(f.TCPRules) != 1 || f.TCPRules[0].Action[0] != "accept" {
		t.Errorf("tcp-request: %v %+v", f.InspectDelay, f.TCPRules)
	}
	b := proxyNamed(t, c, "backend", "b")
	s := b.Servers[0]
	if s.Weight.Val != 10 || s.MaxConn.Val != 100 || s.SendProxy.Val != 2 || !s.Check.Val || s.Inter.Val != 2*time.Second ||
		s.Rise.Val != 3 || s.Fall.Val != 4 || !s.Backup.Val || !s.Disabled.Val {
		t.Errorf("server s1: %+v", s.ServerOptions)
	}
	if s := b.Servers[1]; s.Addr.Host != "web.example" || s.Addr.IP.IsValid() || !slices.EqualFunc(s.Other, [][]string{{"cookie", "c1"}, {"slowstart", "10s"}}, slices.Equal) {
		t.Errorf("server s2: %+v %+v", s.Addr, s.Other)
	}
	if s := b.Servers[2]; s.Addr.Port != 0 || len(s.Other) != 2 {
		t.Errorf("server s3: %+v %+v", s.Addr, s.Other)
	}
	if s := b.Servers[3]; !s.Addr.PortOffset || s.Addr.Port != 1 {
		t.Errorf("server s4: %+v", s.Addr)
	}
	if got := b.HTTPCheckOf(); got != (HTTPCheck{Method: "GET", URI: "/health", Version: "HTTP/1.0", Host: "check.example"}) {
		t.Errorf("http check: %+v", got)
	}
}

func fmtAddr(a Addr) string {
	port := strconv.Itoa(a.Port)
	if a.PortHigh > a.Port {
		port += "-" + strconv.Itoa(a.PortHigh)
	}
	return a.Family + "|" + a.Host + "|" + port
}

// TestMalformed: every input HAProxy refuses gets an error with the file
// and line, and Parse reports all of them. Debian's HAProxy (haproxy -c)
// must refuse each of them too, so the parser is never stricter than
// HAProxy.
func TestMalformed(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (make deps installs Debian's): %v", err)
	}
	// Two inputs HAProxy runs but that cannot work; the parser refuses them.
	accepts := map[string]string{
		"bad retries":     "HAProxy reads it as 0",
		"httpchk bad URI": "HAProxy sends it, and servers answer 400",
		"Latin-1 value":   "HAProxy sends the byte; gitedge's YAML is UTF-8",
	}
	for _, tc := range []struct {
		name, cfg, want string
	}{
		{"outside a section", "bind :80\n", `t.cfg:1: "bind" is outside of any section`},
		{"unterminated quote", "frontend f\n  bind \":80\n", "t.cfg:2: unterminated double quote"},
		{"frontend without a name", "frontend\n  bind :80\n", "t.cfg:1: frontend needs a name"},
		{"bad proxy name", "backend a/b\n", `t.cfg:1: backend name "a/b"`},
		{"unknown timeout", "defaults\n  timeout serverr 5s\n", `t.cfg:2: timeout: unknown timeout "serverr"`},
		{"bad time", "defaults\n  timeout server 5x\n", `t.cfg:2: timeout: server: bad time "5x": unknown unit "x"`},
		{"removed keyword", "defaults\n  contimeout 5000\n", "t.cfg:2: contimeout: removed from HAProxy: use timeout connect"},
		{"bad mode", "defaults\n  mode https\n", `t.cfg:2: mode: expected http or tcp, got "https"`},
		{"bad bind address", "frontend f\n  bind 192.0.2.300:80\n", `t.cfg:2: bind: bad address "192.0.2.300:80": "192.0.2.300" is not an IP address`},
		{"bind without port", "frontend f\n  bind 192.0.2.1\n", `t.cfg:2: bind: bad address "192.0.2.1": a bind needs a port`},
		{"bad bind port", "frontend f\n  bind :99999\n", `t.cfg:2: bind: bad address ":99999": bad port "99999"`},
		{"bad server address", "backend b\n  server s 192.0.2.1:http\n", `t.cfg:2: server: s: bad address "192.0.2.1:http": bad port "http"`},
		{"bad server v6", "backend b\n  server s 2001:db8::zz:80\n", `t.cfg:2: server: s: bad address "2001:db8::zz:80"`},
		{"bad weight", "backend b\n  server s 192.0.2.1:80 weight 300\n", "t.cfg:2: server: s: server option weight 300: HAProxy allows 0..256"},
		{"option without value", "backend b\n  server s 192.0.2.1:80 inter\n", `t.cfg:2: server: s: server option "inter" needs a value`},
		{"duplicate server", "backend b\n  server s 192.0.2.1:80\n  server s 192.0.2.2:80\n", `t.cfg:3: server: server name "s" is already used at line 2`},
		{"server in a frontend", "frontend f\n  server s 192.0.2.1:80\n", `t.cfg:2: "server" is not allowed in a frontend section`},
		{"default-server in a frontend", "frontend f\n  default-server check\n", `t.cfg:2: "default-server" is not allowed in a frontend section`},
		{"bind in defaults", "defaults\n  bind :80\n", `t.cfg:2: "bind" is not allowed in a anonymous defaults section`},
		{"server in defaults", "defaults d\n  server s 192.0.2.1:80\n", `t.cfg:2: "server" is not allowed in a defaults section`},
		{"acl in anonymous defaults", "defaults\n  acl a hdr(host) -i x\n", `t.cfg:2: "acl" is not allowed in a anonymous defaults section`},
		{"tcp-request rule in anonymous defaults", "defaults\n  tcp-request content accept\n", "t.cfg:2: tcp-request content is not allowed in an anonymous defaults section"},
		{"ACL never defined", "frontend f\n  bind :80\n  use_backend b if nope\nbackend b\n  server s 192.0.2.1:80\n", `t.cfg:3: use_backend: ACL "nope" is used but never defined in frontend "f"`},
		{"ACL defined after use", "frontend f\n  bind :80\n  use_backend b if late\n  acl late hdr(host) -i x\nbackend b\n  server s 192.0.2.1:80\n", `t.cfg:3: use_backend: ACL "late" is used before its definition at line 4`},
		{"ACL of another proxy", "frontend f\n  bind :80\n  acl a hdr(host) -i x\nfrontend g\n  bind :81\n  use_backend b if a\nbackend b\n  server s 192.0.2.1:80\n", `t.cfg:6: use_backend: ACL "a" is used but never defined in frontend "g"`},
		{"ACL in tcp-request", "frontend f\n  bind :80\n  tcp-request content accept if hello\n", `t.cfg:3: tcp-request: ACL "hello" is used but never defined`},
		{"ACL in http-request", "frontend f\n  bind :80\n  http-request deny if bad\n", `t.cfg:3: http-request: ACL "bad" is used but never defined`},
		{"missing backend", "frontend f\n  bind :80\n  use_backend nope\n", `t.cfg:3: use_backend: no backend named "nope"`},
		{"missing default backend", "frontend f\n  bind :80\n  default_backend nope\n", `t.cfg:3: default_backend: no backend named "nope" (used by frontend "f")`},
		{"frontend is not a backend", "frontend f\n  bind :80\n  default_backend f\n", `no backend named "f"`},
		{"brace without blank", "frontend f\n  bind :80\n  use_backend b if {hdr(host) -i x}\nbackend b\n  server s 192.0.2.1:80\n", "braces need blanks around them"},
		{"unclosed brace", "frontend f\n  bind :80\n  use_backend b if { hdr(host) -i x\nbackend b\n  server s 192.0.2.1:80\n", "t.cfg:3: use_backend: '{' without its closing '}'"},
		{"unknown acl flag", "frontend f\n  acl a hdr(host) -x y\n", `t.cfg:2: acl: acl a: unknown flag "-x"`},
		{"duplicate backend", "backend b\n  server s 192.0.2.1:80\nbackend b\n  server s 192.0.2.1:80\n", `t.cfg:3: backend "b": the name is already used by the backend at line 1`},
		{"listen clashes with frontend", "frontend x\n  bind :80\nlisten x\n  bind :81\n", `t.cfg:3: listen "x": the name is already used by the frontend at line 1`},
		{"unknown from", "frontend f from nope\n  bind :80\n", `t.cfg:1: frontend "f": 'from nope' names no defaults section defined before it`},
		{"from defined later", "frontend f from d\n  bind :80\ndefaults d\n  mode http\n", `t.cfg:1: frontend "f": 'from d' names no defaults section`},
		{"ambiguous named defaults", "defaults d\n  mode http\ndefaults d\n  mode tcp\nfrontend f from d\n  bind :80\n", `t.cfg:5: frontend "f": 'from d' is ambiguous: defaults "d" is defined at lines 1 and 3`},
		{"bad retries", "backend b\n  retries many\n", `t.cfg:2: retries: "many": expected a whole number`},
		{"tcp-request unknown", "frontend f\n  tcp-request foo\n", `t.cfg:2: tcp-request: unknown "foo"`},
		{"httpchk bad URI", "backend b\n  option httpchk GET health\n", `t.cfg:2: option: httpchk: URI "health" must start with /`},
		{"global with argument", "global x\n", "t.cfg:1: global takes no argument"},
		{"Latin-1 name", "frontend f\n  bind :80\n  default_backend caf\xe9\nbackend caf\xe9\n  server s 192.0.2.1:80\n", `t.cfg:3: "caf\xe9" is not UTF-8 text, which gitedge's YAML files cannot hold: convert the file to UTF-8`},
		{"Latin-1 value", "frontend f\n  bind :80\n  http-request set-header X-Place \"caf\\xe9\"\n", `t.cfg:3: "caf\xe9" is not UTF-8 text`},
		{"HTTP frontend, TCP backend", "frontend f\n  mode http\n  bind :80\n  default_backend b\nbackend b\n  server s 192.0.2.1:80\n", `t.cfg:4: default_backend: backend "b" is mode tcp but frontend "f" is mode http: HAProxy refuses this`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.cfg", []byte(tc.cfg))
			reporttest.WantLocated(t, err, "t.cfg", tc.want)
			if accepts[tc.name] != "" {
				return
			}
			p := filepath.Join(t.TempDir(), "t.cfg")
			if err := os.WriteFile(p, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command(bin, "-c", "-f", p).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("haproxy -c does not refuse it (%v):\n%s", err, out)
			}
		})
	}
}

// TestAllErrors: one pass reports every problem, in line order.
func TestAllErrors(t *testing.T) {
	_, err := Parse("t.cfg", []byte("frontend f\n  bind :0\n  timeout client 1x\n  use_backend nope\n"))
	var es report.Errors
	if !errors.As(err, &es) || len(es) != 3 {
		t.Fatalf("want 3 errors, got %v", err)
	}
	for i, line := range []int{2, 3, 4} {
		if es[i].Line != line {
			t.Errorf("error %d at line %d, want %d: %v", i, es[i].Line, line, es[i])
		}
	}
}

// TestEmptyAlternatives: HAProxy skips empty alternatives: "if a or" is
// "if a", and "if" alone never matches, "unless" alone always does
// (checked with haproxy 2.6 answering requests).
func TestEmptyAlternatives(t *testing.T) {
	c := parse(t, "frontend f\n  bind :80\n  acl a hdr(host) -i x\n  use_backend b if a or\n  use_backend b if or || a\n  use_backend b if\n  use_backend b unless\nbackend b\n  server s 192.0.2.1:80\n")
	var got []string
	for _, u := range proxyNamed(t, c, "frontend", "f").UseBackends {
		got = append(got, fmt.Sprintf("%s (%d)", u.Cond, len(u.Cond.Groups)))
	}
	if d := cmp.Diff([]string{"if a (1)", "if a (1)", "if  (0)", "unless  (0)"}, got); d != "" {
		t.Errorf("conditions (-want +got):\n%s", d)
	}
}

// TestIgnoredLines: lines HAProxy ignores in a kind of section (with a
// warning) are kept apart, not refused.
// TestLatin1Comment: a comment is not read, whatever its encoding.
func TestLatin1Comment(t *testing.T) {
	c := parse(t, "# caf\xe9 de la gare\nfrontend f # caf\xe9\n  bind :80\n")
	if p := proxyNamed(t, c, "frontend", "f"); len(p.Binds) != 1 {
		t.Errorf("binds %v", p.Binds)
	}
}

func TestIgnoredLines(t *testing.T) {
	c := parse(t, "frontend f\n  bind :80\n  balance source\n  retries 3\nbackend b\n  bind :81\n  default_backend x\n  server s 192.0.2.1:80\n")
	if n := len(proxyNamed(t, c, "frontend", "f").Ignored); n != 2 {
		t.Errorf("frontend: %d ignored lines, want 2", n)
	}
	if b := proxyNamed(t, c, "backend", "b"); len(b.Ignored) != 2 || len(b.Binds) != 0 || b.DefaultBackend.Set {
		t.Errorf("backend: %d ignored lines, binds %v", len(b.Ignored), b.Binds)
	}
}

func TestSeedParses(t *testing.T) {
	data, err := os.ReadFile("../testdata/seed/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("haproxy.cfg", data)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range c.Proxies {
		names = append(names, p.Label())
	}
	want := []string{`frontend "http"`, `frontend "https"`, `backend "k8s-http-ingress"`, `backend "k8s-https-ingress"`, `backend "k3s-http-ingress"`, `backend "k3s-https-ingress"`}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("proxies (-want +got):\n%s", d)
	}
	https := proxyNamed(t, c, "frontend", "https")
	if len(https.ACLs["clienthello"]) != 3 || https.InspectDelay.Val != 10*time.Second || https.EffectiveMode() != "tcp" {
		t.Errorf("frontend https: %d clienthello lines, inspect %v, mode %s", len(https.ACLs["clienthello"]), https.InspectDelay.Val, https.EffectiveMode())
	}
	if b := proxyNamed(t, c, "backend", "k8s-http-ingress"); b.Timeouts["connect"].Val != time.Second || b.Timeouts["client"].Val != time.Hour {
		t.Errorf("k8s-http-ingress timeouts: %v", b.Timeouts)
	}
}
