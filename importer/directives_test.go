package importer

import (
	"errors"
	"io/fs"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/importer/report"
)

// memFiles serves inputs from memory.
func memFiles(files map[string]string) func(string) ([]byte, error) {
	return func(n string) ([]byte, error) {
		if d, ok := files[n]; ok {
			return []byte(d), nil
		}
		return nil, fs.ErrNotExist
	}
}

// check is one expectation on an import: "edge.yaml: text" means the
// file contains the text; "!edge.yaml: text" that it does not;
// "dropped: text", "changed: text", "note: text" that the report has an
// item of that severity containing the text; "error: text" that the
// import fails with an error containing it.
type check = string

func runChecks(t *testing.T, opts Options, files map[string]string, checks ...check) {
	t.Helper()
	if files != nil {
		opts.ReadFile = memFiles(files)
	}
	res, err := Import(opts)
	var strict *StrictError
	if err != nil && !errors.As(err, &strict) {
		for _, c := range checks {
			if msg, ok := strings.CutPrefix(c, "error: "); ok {
				if !strings.Contains(err.Error(), msg) {
					t.Errorf("error lacks %q:\n%v", msg, err)
				}
				continue
			}
		}
		if !strings.HasPrefix(checks[0], "error: ") {
			t.Fatalf("import failed: %v", err)
		}
		return
	}
	for _, c := range checks {
		sev, msg, _ := strings.Cut(c, ": ")
		switch sev {
		case "error":
			t.Errorf("no error, want %q", msg)
		case "dropped", "changed", "note":
			want := map[string]report.Severity{"dropped": report.Dropped, "changed": report.Changed, "note": report.Note}[sev]
			found := false
			for _, it := range res.Report.Sorted() {
				if it.Severity == want && strings.Contains(it.String(), msg) {
					found = true
				}
			}
			if !found {
				var b strings.Builder
				_ = res.Report.Write(&b)
				t.Errorf("no %s item containing %q in the report:%s", sev, msg, b.String())
			}
		default:
			neg := strings.HasPrefix(sev, "!")
			name := strings.TrimPrefix(sev, "!")
			data, ok := res.Files[name]
			if !ok && !neg {
				t.Errorf("no file %s; files: %v", name, slices.Sorted(maps.Keys(res.Files)))
				continue
			}
			if got := strings.Contains(string(data), msg); got == neg {
				t.Errorf("%s %s %q:\n%s", name, map[bool]string{true: "contains", false: "lacks"}[neg], msg, data)
			}
		}
	}
}

func runHAProxy(t *testing.T, cfg string, checks ...check) {
	t.Helper()
	runChecks(t, Options{HAProxy: "h.cfg"}, map[string]string{"h.cfg": cfg}, checks...)
}

// A minimal backend, and a frontend header, for the cases below.
const (
	beWeb  = "\nbackend web\n  timeout connect 1s\n  timeout server 1s\n  server w1 192.0.2.10:80\n"
	beAPI  = "\nbackend api\n  timeout connect 1s\n  timeout server 1s\n  server a1 192.0.2.20:80\n"
	feHTTP = "defaults\n  mode http\n  timeout client 5s\n  timeout http-request 5s\nfrontend f\n  bind :80\n"
	feTLS  = "defaults\n  mode tcp\n  timeout client 5s\nfrontend f\n  bind :443\n  tcp-request inspect-delay 3s\n  tcp-request content accept if { req_ssl_hello_type 1 }\n  tcp-request content reject if WAIT_END\n"
)

func TestHAProxyBinds(t *testing.T) {
	for _, tc := range []struct {
		name, bind string
		checks     []check
	}{
		{"port only", "bind :80", []check{`edge.yaml: bind: ":80"`}},
		{"star", "bind *:8080", []check{`edge.yaml: bind: ":8080"`}},
		{"IPv4", "bind 192.0.2.1:80", []check{`edge.yaml: bind: "192.0.2.1:80"`}},
		{"IPv6 without brackets", "bind :::443", []check{`edge.yaml: bind: "[::]:443"`}},
		{"IPv6 in brackets", "bind [2001:db8::1]:80", []check{`edge.yaml: bind: "[2001:db8::1]:80"`}},
		{"ipv4@", "bind ipv4@0.0.0.0:80", []check{`edge.yaml: bind: "0.0.0.0:80"`}},
		{"two addresses", "bind 192.0.2.1:80,192.0.2.2:80", []check{`edge.yaml: name: f-2`, `edge.yaml: bind: "192.0.2.2:80"`}},
		{"accept-proxy", "bind :80 accept-proxy", []check{`edge.yaml: acceptProxy: [0.0.0.0/0, "::/0"]`, "note: narrow it to the addresses of your upstream load balancers"}},
		{"TLS termination", "bind :80\n  bind :443 ssl crt /etc/ssl/x.pem", []check{"dropped: TLS termination", `!edge.yaml: ":443"`}},
		{"unix socket", "bind :80\n  bind unix@/run/x.sock", []check{"dropped: a unix socket: gitedge listens on IP addresses only"}},
		{"host name", "bind :80\n  bind lb.example:81", []check{`dropped: gitedge binds IP addresses: HAProxy resolved "lb.example"`}},
		{"port range", "bind :80\n  bind :81-83", []check{"dropped: a port range"}},
		{"bind options", "bind :80 name web tfo transparent", []check{"note: name web: bind option", "dropped: transparent: bind option: no gitedge counterpart"}},
		{"defer-accept", "bind :80 defer-accept", []check{"note: defer-accept: gitedge's listeners defer accepting by default (deferAccept)", `!edge.yaml: deferAccept`}},
		{"unknown bind option", "bind :80 frobnicate 1", []check{"dropped: h.cfg:6: frontend \"f\": frobnicate 1: unknown bind option"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := "defaults\n  mode http\n  timeout client 5s\n  timeout http-request 5s\nfrontend f\n  " + tc.bind + "\n  default_backend web\n" + beWeb
			runHAProxy(t, cfg, tc.checks...)
		})
	}
	runHAProxy(t, "defaults\n  mode http\nfrontend f\n  bind unix@/x\n  default_backend web\n"+beWeb,
		"dropped: no bind gitedge can listen on: the frontend is not imported", `!edge.yaml: name: f`)
}

func TestHAProxyACLs(t *testing.T) {
	runRules(t, "\n  default_backend web\n", []ruleCase{
		{"hdr(host) with values", "acl a hdr(host) -i a.example.org B.example.org\n  use_backend api if a", false,
			[]check{"routes/a.yaml: hosts: [a.example.org, b.example.org]", "routes/a.yaml: http: {backend: api}"}},
		{"acl lines add up", "acl a hdr(host) -i a.example.org\n  acl a hdr(host) -i b.example.org\n  use_backend api if a", false,
			[]check{"routes/a.yaml: hosts: [a.example.org, b.example.org]"}},
		{"hdr_end with a dot", "acl a hdr_end(host) -i .apps.example.org\n  use_backend api if a", false,
			[]check{`routes/a.yaml: hosts: ["*.apps.example.org"]`}},
		{"hdr_end without a dot", "acl a hdr_end(host) -i example.org\n  use_backend api if a", false,
			[]check{`routes/a.yaml: hosts: [example.org, "*.example.org"]`, "changed: HAProxy also matched any name merely ending in it"}},
		{"-m end", "acl a hdr(host) -m end -i .example.org\n  use_backend api if a", false,
			[]check{`routes/a.yaml: hosts: ["*.example.org"]`}},
		{"hdr_beg with a name", "acl a hdr_beg(host) -i api.example.org\n  use_backend api if a", false,
			[]check{`routes/a.yaml: hosts: [api.example.org]`, "changed: HAProxy also matched longer names beginning with it"}},
		{"hdr_beg with a prefix", "acl a hdr_beg(host) -i www.\n  use_backend api if a", false,
			[]check{"dropped: \"www.\" is a prefix, not a host name", "!routes/a.yaml: hosts"}},
		{"-m beg", "acl a hdr(host) -m beg api.example.org\n  use_backend api if a", false, []check{`routes/a.yaml: hosts: [api.example.org]`}},
		{"hdr_dom", "acl a hdr_dom(host) -i example.org\n  use_backend api if a", false,
			[]check{`routes/a.yaml: hosts: [example.org, "*.example.org"]`, "changed: HAProxy matched it as any dot-delimited part"}},
		{"-m str", "acl a hdr(host) -m str -i a.example.org\n  use_backend api if a", false, []check{`routes/a.yaml: hosts: [a.example.org]`}},
		{"-m reg", "acl a hdr(host) -m reg ^a\\.\n  use_backend api if a", false, []check{"dropped: -m reg: only exact (str), beg, end and dom matches map to host names"}},
		{"-m sub", "acl a hdr_sub(host) -i example\n  use_backend api if a", false, []check{"dropped: hdr_sub(host) matches a header other than Host"}},
		{"path", "acl a path_beg /api\n  use_backend api if a", false, []check{"dropped: path_beg matches paths, URLs or methods; gitedge routes by host name only"}},
		{"method", "use_backend api if METH_POST", false, []check{"dropped: predefined ACL METH_POST: gitedge routes by host name only"}},
		{"src", "acl a src 192.0.2.0/24\n  use_backend api if a", false, []check{"dropped: src matches addresses or ports"}},
		{"pattern file", "acl a hdr(host) -i -f /etc/haproxy/hosts.lst\n  use_backend api if a", false, []check{"dropped: patterns read from /etc/haproxy/hosts.lst"}},
		{"literal star", "acl a hdr(host) -i *.example.org\n  use_backend api if a", false, []check{"dropped: HAProxy compares '*' literally, so no client ever matched it"}},
		{"port in the value", "acl a hdr(host) -i a.example.org:8080\n  use_backend api if a", false,
			[]check{`routes/a.yaml: hosts: [a.example.org]`, "changed: includes a port"}},
		{"no -i and upper case", "acl a hdr(host) A.example.org\n  use_backend api if a", false, []check{"changed: without -i HAProxy matched these upper-case letters exactly"}},
		{"bad host name", "acl a hdr(host) -i a_b..example\n  use_backend api if a", false, []check{"dropped: is not a host name gitedge can route"}},
		{"SNI in mode http", "acl a req.ssl_sni -i a.example.org\n  use_backend api if a", false, []check{"dropped: req.ssl_sni is for mode tcp frontends"}},
		// TLS frontends.
		{"req.ssl_sni", "acl a req.ssl_sni -i a.example.org\n  use_backend api if a", true, []check{`routes/a.yaml: tls: {backend: api}`, `routes/a.yaml: hosts: [a.example.org]`}},
		{"req_ssl_sni -m end", "acl a req_ssl_sni -m end .example.org\n  use_backend api if a", true, []check{`routes/a.yaml: hosts: ["*.example.org"]`}},
		{"req_ssl_sni -m dom", "acl a req_ssl_sni -m dom example.org\n  use_backend api if a", true, []check{`routes/a.yaml: hosts: [example.org, "*.example.org"]`}},
		{"Host in mode tcp", "acl a hdr(host) -i a.example.org\n  use_backend api if a", true, []check{"dropped: hdr(host) needs mode http"}},
	})
}

// ruleCase is frontend rules (in the HTTP frontend, or the TLS one) and
// what the import must say about them.
type ruleCase struct {
	name, rules string
	tls         bool
	checks      []check
}

// runRules imports each case's rules followed by tail, with the web and
// api backends.
func runRules(t *testing.T, tail string, cases []ruleCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			head := feHTTP
			if tc.tls {
				head = feTLS
			}
			runHAProxy(t, head+"  "+tc.rules+tail+beWeb+beAPI, tc.checks...)
		})
	}
}

func TestHAProxyRules(t *testing.T) {
	runRules(t, "\n", []ruleCase{
		{"if A or B", "acl a hdr(host) -i a.example.org\n  acl b hdr(host) -i b.example.org\n  use_backend api if a or b\n  default_backend web", false,
			[]check{"routes/a.yaml: hosts: [a.example.org, b.example.org]"}},
		{"if A || B", "acl a hdr(host) -i a.example.org\n  acl b hdr(host) -i b.example.org\n  use_backend api if a || b\n  default_backend web", false,
			[]check{"routes/a.yaml: hosts: [a.example.org, b.example.org]"}},
		{"if A B: the hosts both match", "acl a hdr_end(host) -i .example.org\n  acl b hdr(host) -i x.example.org y.other.org\n  use_backend api if a b\n  default_backend web", false,
			[]check{"routes/a.yaml: hosts: [x.example.org]"}},
		{"if A B with a ClientHello test", "acl h req_ssl_hello_type 1\n  acl a req.ssl_sni -i a.example.org\n  use_backend api if h a\n  default_backend web", true,
			[]check{"routes/h.yaml: hosts: [a.example.org]"}},
		{"anonymous ACL", "use_backend api if { req.ssl_sni -i a.example.org }\n  default_backend web", true,
			[]check{"routes/a.example.org.yaml: hosts: [a.example.org]"}},
		{"anonymous wildcard", "use_backend api if { req.ssl_sni -m end .example.org }\n  default_backend web", true,
			[]check{`routes/wildcard.example.org.yaml: hosts: ["*.example.org"]`}},
		{"unless", "acl a hdr(host) -i a.example.org\n  use_backend api unless a\n  default_backend web", false,
			[]check{"dropped: an 'unless' condition matches every host but some"}},
		{"negation", "acl a hdr(host) -i a.example.org\n  use_backend api if !a\n  default_backend web", false,
			[]check{"dropped: !a: a negated ACL"}},
		{"shadowed by a wildcard before it", "acl w hdr_end(host) -i .example.org\n  acl a hdr(host) -i a.example.org\n  use_backend web if w\n  use_backend api if a\n  default_backend web", false,
			[]check{"note: a.example.org: never reached, the rule at line 9 matches it first (to web)", "!routes/a.yaml: hosts"}},
		{"more specific first", "acl a hdr(host) -i a.example.org\n  acl w hdr_end(host) -i .example.org\n  use_backend api if a\n  use_backend web if w\n  default_backend web", false,
			[]check{"routes/a.yaml: hosts: [a.example.org]", `routes/w.yaml: hosts: ["*.example.org"]`}},
		{"unconditional use_backend", "use_backend api\n  acl a hdr(host) -i a.example.org\n  use_backend web if a\n  default_backend web", false,
			[]check{"edge.yaml: defaultBackend: api", "note: never reached: the rule at line 7 matches every connection", "note: no condition: every connection not matched before goes to api"}},
		{"ClientHello only: every connection", "use_backend api if { req_ssl_hello_type 1 }", true,
			[]check{"edge.yaml: defaultBackend: api", "note: matches every connection gitedge routes"}},
		{"TRUE", "use_backend api if TRUE", false, []check{"edge.yaml: defaultBackend: api"}},
		{"empty if", "use_backend api if\n  default_backend web", false, []check{"edge.yaml: defaultBackend: web", "note: an empty condition: HAProxy never matches it"}},
		{"empty unless", "use_backend api unless\n  default_backend web", false, []check{"edge.yaml: defaultBackend: api"}},
		{"ignored in a frontend", "balance source\n  default_backend web", false, []check{"note: balance source: HAProxy ignores it in a frontend section too"}},
		{"dynamic backend name", "use_backend %[req.hdr(host),lower,map(/etc/haproxy/hosts.map)]\n  default_backend web", false,
			[]check{"dropped: the backend name is computed per request"}},
		{"default_backend", "default_backend api", false, []check{"edge.yaml: defaultBackend: api"}},
		{"no default backend", "acl a hdr(host) -i a.example.org\n  use_backend api if a", false, []check{"!edge.yaml: defaultBackend"}},
	})
}

func TestHAProxyBackends(t *testing.T) {
	for _, tc := range []struct {
		name, lines string
		checks      []check
	}{
		{"roundrobin", "balance roundrobin\n  server s 192.0.2.1:80", []check{"backends/b.yaml: balance: roundrobin"}},
		{"leastconn", "balance leastconn\n  server s 192.0.2.1:80", []check{"backends/b.yaml: balance: leastconn"}},
		{"source", "balance source\n  server s 192.0.2.1:80", []check{"backends/b.yaml: balance: source"}},
		{"static-rr", "balance static-rr\n  server s 192.0.2.1:80", []check{"backends/b.yaml: balance: roundrobin", "note: gitedge's roundrobin is weighted the same way"}},
		{"uri", "balance uri\n  server s 192.0.2.1:80", []check{"backends/b.yaml: balance: roundrobin", "changed: gitedge balances by roundrobin, leastconn or source only"}},
		{"server options", "server s 192.0.2.1:80 weight 10 maxconn 100 send-proxy", []check{
			`backends/b.yaml: - {name: s, address: "192.0.2.1:80", weight: 10, maxConn: 100}`, "backends/b.yaml: proxyProtocol: v1"}},
		{"send-proxy-v2", "server s 192.0.2.1:80 send-proxy-v2", []check{"backends/b.yaml: proxyProtocol: v2"}},
		{"mixed PROXY versions", "server s 192.0.2.1:80 send-proxy-v2\n  server t 192.0.2.2:80", []check{"backends/b.yaml: proxyProtocol: v2",
			"changed: gitedge sends one PROXY protocol version per backend: v2, as the first server"}},
		{"checks", "server s 192.0.2.1:80 check inter 3s rise 4 fall 5\n  server t 192.0.2.2:80 check inter 3s rise 4 fall 5", []check{
			"backends/b.yaml: healthCheck: {type: tcp, interval: 3s, timeout: 3s, rise: 4, fall: 5}"}},
		{"check defaults", "server s 192.0.2.1:80 check", []check{"backends/b.yaml: healthCheck: {type: tcp, interval: 2s, timeout: 2s, rise: 2, fall: 3}"}},
		{"timeout check", "timeout check 500ms\n  server s 192.0.2.1:80 check", []check{"backends/b.yaml: timeout: 500ms"}},
		{"some servers checked", "server s 192.0.2.1:80 check\n  server t 192.0.2.2:80", []check{"changed: no check on this server: gitedge checks every server of a backend"}},
		{"different inter", "server s 192.0.2.1:80 check inter 1s\n  server t 192.0.2.2:80 check inter 5s", []check{"changed: gitedge checks every server of a backend alike: inter 1s"}},
		{"httpchk GET", "option httpchk GET /health\n  server s 192.0.2.1:80 check", []check{"backends/b.yaml: healthCheck: {type: http, path: /health,"}},
		{"httpchk default method", "option httpchk\n  server s 192.0.2.1:80 check", []check{"backends/b.yaml: {type: http, path: /,", "changed: gitedge's http check sends GET / where HAProxy sent OPTIONS"}},
		{"httpchk old Host header", `option httpchk GET /h HTTP/1.1\r\nHost:\ www.example.org` + "\n  server s 192.0.2.1:80 check", []check{"backends/b.yaml: path: /h, host: www.example.org"}},
		{"http-check send", "option httpchk\n  http-check send meth GET uri /ready hdr Host app.example\n  server s 192.0.2.1:80 check", []check{"backends/b.yaml: path: /ready, host: app.example"}},
		{"http-check expect", "option httpchk GET /\n  http-check expect status 200\n  server s 192.0.2.1:80 check", []check{"changed: gitedge counts any 2xx or 3xx answer as healthy"}},
		{"httpchk without check", "option httpchk GET /\n  server s 192.0.2.1:80", []check{"!backends/b.yaml: healthCheck", "note: no server of backend \"b\" has check: HAProxy ran no check"}},
		{"ssl-hello-chk with check", "option ssl-hello-chk\n  server s 192.0.2.1:443 check", []check{"backends/b.yaml: type: tcp", "changed: with a TCP connect, not an SSLv3 hello"}},
		{"backup", "server s 192.0.2.1:80\n  server t 192.0.2.2:80 backup", []check{"!backends/b.yaml: name: t", "dropped: backup server: gitedge has no backup servers"}},
		{"only backups", "server s 192.0.2.1:80 backup", []check{"backends/b.yaml: name: s", "changed: only backup servers"}},
		{"disabled", "server s 192.0.2.1:80\n  server t 192.0.2.2:80 disabled", []check{`backends/b.yaml: {name: t, address: "192.0.2.2:80", weight: 0}`, "note: disabled (maintenance): imported with weight 0"}},
		{"host name server", "server s 192.0.2.1:80\n  server t web.example:80", []check{`dropped: gitedge needs an IP address: HAProxy resolved "web.example"`}},
		{"server without port", "server s 192.0.2.1:80\n  server t 192.0.2.2", []check{"dropped: no fixed port"}},
		{"TLS to the server", "server s 192.0.2.1:80\n  server t 192.0.2.2:443 ssl verify none", []check{"dropped: ssl: gitedge does not open TLS to servers", "note: verify none: server option: a TLS setting"}},
		{"server options without counterpart", "server s 192.0.2.1:80 cookie s1 slowstart 30s id 3", []check{"dropped: cookie s1: server option", "dropped: slowstart 30s", "note: id 3"}},
		{"no usable server", "server t web.example:80", []check{`error: h.cfg:9: backend "b": no server gitedge can use`}},
		{"timeouts", "timeout connect 5000\n  timeout queue 2m\n  timeout server 1h\n  server s 192.0.2.1:80", []check{
			"backends/b.yaml: connectTimeout: 5s", "backends/b.yaml: queueTimeout: 120s", "backends/b.yaml: idleTimeout: 3600s"}},
		{"queue defaults to connect", "timeout connect 3s\n  server s 192.0.2.1:80", []check{"backends/b.yaml: queueTimeout: 3s"}},
		{"tunnel in mode http", "mode http\n  timeout server 30s\n  timeout tunnel 1h\n  server s 192.0.2.1:80", []check{"backends/b.yaml: idleTimeout: 30s", "changed: also bounds upgraded connections such as WebSocket"}},
		{"no connect timeout", "timeout server 1s\n  server s 192.0.2.1:80", []check{"!backends/b.yaml: connectTimeout", "changed: timeout connect: not set: HAProxy waited indefinitely"}},
		{"no server timeout", "timeout connect 1s\n  server s 192.0.2.1:80", []check{"!backends/b.yaml: idleTimeout", "changed: timeout server: not set"}},
		// HAProxy reads a timeout of 0 as none (haproxy -c warns of it as missing).
		{"zero server timeout", "timeout connect 1s\n  timeout server 0\n  server s 192.0.2.1:80", []check{"!backends/b.yaml: idleTimeout", "changed: h.cfg:11: backend \"b\": timeout server: 0, which HAProxy reads as none: HAProxy waited indefinitely"}},
		{"zero connect timeout", "timeout connect 0\n  timeout server 1s\n  server s 192.0.2.1:80", []check{"!backends/b.yaml: connectTimeout", "!backends/b.yaml: queueTimeout", "changed: h.cfg:10: backend \"b\": timeout connect: 0, which HAProxy reads as none"}},
		{"zero queue timeout", "timeout connect 2s\n  timeout queue 0\n  timeout server 1s\n  server s 192.0.2.1:80", []check{"backends/b.yaml: queueTimeout: 2s"}},
		{"zero check timeout", "timeout check 0\n  server s 192.0.2.1:80 check inter 3s", []check{"backends/b.yaml: timeout: 3s"}},
		{"retries", "retries 1\n  option redispatch\n  server s 192.0.2.1:80\n  server t 192.0.2.2:80", []check{"backends/b.yaml: retries: 1"}},
		{"HAProxy's default retries", "server s 192.0.2.1:80", []check{"backends/b.yaml: retries: 3"}},
		{"too many retries", "retries 1000\n  server s 192.0.2.1:80", []check{"backends/b.yaml: retries: 100", "changed: gitedge allows at most 100 retries"}},
		{"no redispatch", "server s 192.0.2.1:80\n  server t 192.0.2.2:80", []check{"changed: option redispatch: not set: HAProxy retried the same server"}},
		{"stick table", "stick-table type ip size 1m\n  stick on src\n  server s 192.0.2.1:80", []check{"dropped: stick-table type ip size 1m: gitedge has no stick tables", "dropped: stick on src"}},
		{"http-request", "http-request set-header X-A b\n  server s 192.0.2.1:80", []check{"dropped: http-request set-header X-A b: gitedge does not rewrite"}},
		{"unknown keyword", "frobnicate yes\n  server s 192.0.2.1:80", []check{"dropped: h.cfg:11: backend \"b\": frobnicate yes: unknown keyword: not interpreted"}},
		{"unknown option", "option frobnicate\n  server s 192.0.2.1:80", []check{"dropped: option frobnicate: unknown option"}},
		{"renamed", "server s 192.0.2.1:80", []check{"backends/b.yaml: name: b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := "defaults\n  mode http\n  timeout client 5s\n  timeout http-request 5s\nfrontend f\n  bind :80\n  default_backend b\n\nbackend b\n  timeout connect 1s\n  " +
				strings.Replace(tc.lines, "server s", "timeout server 1s\n  server s", 1) + "\n"
			if strings.Contains(tc.lines, "timeout") {
				cfg = "defaults\n  mode http\n  timeout client 5s\n  timeout http-request 5s\nfrontend f\n  bind :80\n  default_backend b\n\nbackend b\n  " + tc.lines + "\n"
			}
			runHAProxy(t, cfg, tc.checks...)
		})
	}
	runHAProxy(t, "defaults\n  mode tcp\n  timeout client 1s\nfrontend f\n  bind :443\n  tcp-request inspect-delay 1s\n  default_backend b\nbackend b\n  timeout connect 1s\n  timeout server 30s\n  timeout tunnel 1h\n  server s 192.0.2.1:443\n",
		"backends/b.yaml: idleTimeout: 3600s", "note: in mode tcp timeout tunnel (3600s) applies once connected")
	// A server that is a frontend's own bind loops; it is not imported.
	for _, tc := range []struct{ bind, server, dropped string }{
		{"192.0.2.9:80", "192.0.2.9:80", "dropped: s 192.0.2.9:80: this is frontend \"f\"'s bind 192.0.2.9:80: requests would loop back"},
		{":80", "127.0.0.1:80", "dropped: s 127.0.0.1:80: this is frontend \"f\"'s bind :80"},
		{"0.0.0.0:80", "0.0.0.0:80", "dropped: s 0.0.0.0:80: this is frontend \"f\"'s bind 0.0.0.0:80"},
		{"[::]:80", "[::1]:80", "dropped: s [::1]:80: this is frontend \"f\"'s bind [::]:80"},
	} {
		runHAProxy(t, "defaults\n  mode http\n  timeout client 1s\nfrontend f\n  bind "+tc.bind+"\n  default_backend b\nbackend b\n  timeout connect 1s\n  timeout server 1s\n  server s "+tc.server+"\n  server t 192.0.2.1:80\n",
			"!backends/b.yaml: name: s,", tc.dropped)
	}
	// Not a loop: another port, or 0.0.0.0 and an IPv6 loopback.
	runHAProxy(t, "defaults\n  mode http\n  timeout client 1s\nfrontend f\n  bind 0.0.0.0:80\n  default_backend b\nbackend b\n  timeout connect 1s\n  timeout server 1s\n  server s [::1]:80\n  server t 127.0.0.1:81\n",
		"backends/b.yaml: name: s,", "backends/b.yaml: name: t,")
	// A zero inspect-delay: gitedge's default wait for the ClientHello.
	runHAProxy(t, "defaults\n  mode tcp\n  timeout client 1s\nfrontend f\n  bind :443\n  tcp-request inspect-delay 0\n  default_backend b\nbackend b\n  timeout connect 1s\n  timeout server 30s\n  server s 192.0.2.1:443\n",
		"!edge.yaml: inspectTimeout", "changed: h.cfg:6: frontend \"f\": tcp-request inspect-delay 0: no wait: HAProxy routed on whatever bytes had arrived")
	// In mode tcp a zero timeout tunnel leaves timeout server in force.
	runHAProxy(t, "defaults\n  mode tcp\n  timeout client 1s\nfrontend f\n  bind :443\n  tcp-request inspect-delay 1s\n  default_backend b\nbackend b\n  timeout connect 1s\n  timeout server 30s\n  timeout tunnel 0\n  server s 192.0.2.1:443\n",
		"backends/b.yaml: idleTimeout: 30s")
	runHAProxy(t, "defaults\n  mode http\nfrontend f\n  bind :80\n  default_backend b:c\nbackend b:c\n  timeout connect 1s\n  timeout server 1s\n  server s 192.0.2.1:80\n",
		`note: renamed to "b-c"`, "edge.yaml: defaultBackend: b-c", "backends/b-c.yaml: name: b-c")
}

func TestHAProxyListeners(t *testing.T) {
	for _, tc := range []struct {
		name, cfg string
		checks    []check
	}{
		{"http listener", "defaults\n  mode http\n  timeout client 30s\n  timeout http-request 4s\n  option forwardfor\nfrontend f\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"edge.yaml: mode: http", "edge.yaml: forwardFor: true", "edge.yaml: clientTimeout: 30s", "edge.yaml: requestTimeout: 4s"}},
		{"no client timeout", "defaults\n  mode http\nfrontend f\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"!edge.yaml: clientTimeout", "changed: timeout client: not set", "changed: timeout http-request: not set: HAProxy bounded the request head only by timeout client"}},
		{"zero client timeouts", "defaults\n  mode http\n  timeout client 0\n  timeout http-request 0\nfrontend f\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"!edge.yaml: clientTimeout", "!edge.yaml: requestTimeout", "changed: h.cfg:3: frontend \"f\": timeout client: 0, which HAProxy reads as none", "changed: h.cfg:4: frontend \"f\": timeout http-request: 0, which HAProxy reads as none"}},
		{"forwardfor except", "defaults\n  mode http\nfrontend f\n  bind :80\n  option forwardfor except 127.0.0.0/8\n  default_backend web\n" + beWeb,
			[]check{"edge.yaml: forwardFor: true", "changed: gitedge adds X-Forwarded-For for every client"}},
		{"forwardfor on the backend only", "defaults\n  mode http\nfrontend f\n  bind :80\n  default_backend web\nbackend web\n  option forwardfor\n  server w 192.0.2.1:80\n",
			[]check{"!edge.yaml: forwardFor", "changed: gitedge adds X-Forwarded-For per listener: frontend \"f\" routes to web without it"}},
		{"tls listener", feTLS + "  default_backend web\n" + beWeb,
			[]check{"edge.yaml: mode: tls", "edge.yaml: inspectTimeout: 3s", "note: gitedge's tls listener accepts only connections that start with a ClientHello: the same",
				"note: gitedge closes a connection whose ClientHello has not arrived within inspectTimeout: the same"}},
		{"tls without reject on WAIT_END", "defaults\n  mode tcp\n  timeout client 5s\nfrontend f\n  bind :443\n  tcp-request inspect-delay 3s\n  use_backend web if { req.ssl_sni -i a.example.org }\n" + beWeb,
			[]check{"changed: tcp-request content reject if WAIT_END: absent"}},
		{"tls without inspect-delay", "defaults\n  mode tcp\n  timeout client 5s\nfrontend f\n  bind :443\n  use_backend web if { req.ssl_sni -i a.example.org }\n" + beWeb,
			[]check{"!edge.yaml: inspectTimeout", "changed: tcp-request inspect-delay: not set: HAProxy routed on whatever bytes had arrived"}},
		{"plain TCP", "defaults\n  mode tcp\n  timeout client 5s\nfrontend db\n  bind :5432\n  default_backend web\n" + beWeb,
			[]check{"edge.yaml: mode: tls", "changed: mode tcp: plain TCP forwarding"}},
		{"other tcp-request", feTLS + "  tcp-request connection reject if { src 192.0.2.66 }\n  default_backend web\n" + beWeb,
			[]check{"dropped: tcp-request connection reject if { src 192.0.2.66 }: tcp-request rules other than accepting a ClientHello"}},
		{"forwardfor in mode tcp", feTLS + "  option forwardfor\n  default_backend web\n" + beWeb,
			[]check{"!edge.yaml: forwardFor", "note: option forwardfor: has no effect in mode tcp"}},
		{"listen section", "defaults\n  mode http\n  timeout connect 1s\n  timeout server 1s\n  timeout client 1s\nlisten app\n  bind :8080\n  server a 192.0.2.1:80\n",
			[]check{"edge.yaml: defaultBackend: app", "backends/app.yaml: name: a"}},
		{"two http frontends", "defaults\n  mode http\n  timeout connect 1s\n  timeout server 1s\n  timeout client 1s\nfrontend one\n  bind :80\n  use_backend api if { hdr(host) -i a.example.org }\n  default_backend web\nfrontend two\n  bind :81\n  use_backend web if { hdr(host) -i a.example.org }\n  use_backend api if { hdr(host) -i b.example.org }\n" + beWeb + beAPI,
			[]check{
				"changed: h.cfg:12: frontend \"two\": use_backend web if { hdr(host) -i a.example.org }: a.example.org: gitedge's routes are shared by every mode http listener, and frontend \"one\" (line 8) sends it to api",
				"changed: h.cfg:6: frontend \"one\": b.example.org: routed to api by frontend \"two\" (line 13)",
			}},
		// HAProxy binds the same port twice (SO_REUSEPORT); gitedge once.
		{"the same bind twice", "defaults\n  mode http\nfrontend f\n  bind :80\n  bind 0.0.0.0:80\n  default_backend web\n" + beWeb,
			[]check{"!edge.yaml: f-2", "note: h.cfg:5: frontend \"f\": bind 0.0.0.0:80: the same address as this frontend's bind at line 4: one listener"}},
		{"two frontends on one address", "defaults\n  mode http\nfrontend f\n  bind 192.0.2.1:80\n  default_backend web\nfrontend g\n  bind 192.0.2.1:80\n  use_backend api if { hdr(host) -i a.example.org }\n  default_backend api\n" + beWeb + beAPI,
			[]check{"!edge.yaml: name: g", "edge.yaml: defaultBackend: web", "routes/a.example.org.yaml: api",
				"changed: h.cfg:7: frontend \"g\": bind 192.0.2.1:80: listener \"f\" (frontend \"f\", line 4) already listens there: HAProxy handed each connection to either frontend; gitedge listens once, with that listener's default backend, and this frontend's routes join the ones every http listener shares"}},
		{"http and tcp on one address", "defaults\n  mode http\nfrontend f\n  bind :80\n  default_backend web\nfrontend g\n  mode tcp\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"!edge.yaml: name: g", "dropped: h.cfg:8: frontend \"g\": bind :80: listener \"f\" (frontend \"f\", line 4) already listens there in mode http"}},
		{"wildcard beside a specific address", "defaults\n  mode http\nfrontend f\n  bind :80\n  default_backend web\nfrontend g\n  bind 192.0.2.1:80\n  default_backend api\n" + beWeb + beAPI,
			[]check{"error: h.cfg:7: frontend \"g\": bind 192.0.2.1:80 shares port 80 with listener \"f\" (frontend \"f\", line 4): HAProxy gave each connection to the more specific address"}},
		{"two addresses, one port", "defaults\n  mode http\nfrontend f\n  bind 192.0.2.1:80\n  default_backend web\nfrontend g\n  bind 192.0.2.2:80\n  default_backend api\n" + beWeb + beAPI,
			[]check{`edge.yaml: bind: "192.0.2.1:80"`, `edge.yaml: bind: "192.0.2.2:80"`, "edge.yaml: name: g"}},
		{"global", "global\n  daemon\n  maxconn 5000\n  tune.bufsize 32768\n  stats socket /run/haproxy.sock\ndefaults\n  mode http\nfrontend f\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"note: h.cfg:1: global: daemon, stats: ignored", "dropped: h.cfg:4: global: tune.bufsize 32768: HAProxy tuning",
				"changed: h.cfg:3: global: maxconn 5000: imported as the maxConn of each listener whose frontend sets none", "edge.yaml: maxConn: 5000"}},
		// HAProxy caps a frontend by its own maxconn (or its defaults'),
		// else by global's; a bind's maxconn caps that bind below it.
		{"maxconn", "global\n  maxconn 5000\ndefaults\n  mode http\n  maxconn 300\nfrontend f\n  bind :80\n  default_backend web\nfrontend g\n  maxconn 200\n  bind :81 maxconn 50\n  bind :82 maxconn 900\n  default_backend web\nbackend web\n  maxconn 10\n  server w 192.0.2.1:80\n",
			[]check{"edge.yaml: maxConn: 300", "edge.yaml: maxConn: 50", "edge.yaml: maxConn: 200", "!edge.yaml: maxConn: 5000", "!edge.yaml: maxConn: 900",
				"note: h.cfg:15: backend \"web\": maxconn 10: HAProxy ignores it in a backend section too"}},
		{"maxconn 0 leaves global's", "global\n  maxconn 5000\ndefaults\n  mode http\nfrontend f\n  maxconn 0\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"edge.yaml: maxConn: 5000"}},
		{"no maxconn anywhere", "defaults\n  mode http\nfrontend f\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"!edge.yaml: maxConn"}},
		{"maxconn not a number", "global\n  maxconn lots\ndefaults\n  mode http\nfrontend f\n  bind :80 maxconn -3\n  default_backend web\n" + beWeb,
			[]check{"!edge.yaml: maxConn", "dropped: h.cfg:2: global: maxconn lots: \"lots\": expected a whole number: not interpreted",
				"dropped: maxconn -3: bind option: \"-3\": expected a whole number"}},
		{"frontend maxconn not a number", "defaults\n  mode http\nfrontend f\n  maxconn 1 2\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"error: h.cfg:4: maxconn: expected a number"}},
		{"other sections", "userlist u\n  user a password x\npeers p\n  peer a 192.0.2.1:1024\nresolvers dns\n  nameserver a 192.0.2.53:53\ndefaults\n  mode http\nfrontend f\n  bind :80\n  default_backend web\n" + beWeb,
			[]check{"dropped: h.cfg:1: userlist \"u\": gitedge has no HTTP authentication", "dropped: h.cfg:3: peers \"p\"", "note: h.cfg:5: resolvers \"dns\""}},
		{"defaults lines reported once", "defaults\n  mode http\n  errorfile 503 /e/503.http\n  log global\nfrontend f\n  bind :80\n  default_backend web\nfrontend g\n  bind :81\n  default_backend web\n" + beWeb,
			[]check{"dropped: h.cfg:3: defaults: errorfile 503 /e/503.http: gitedge answers errors", "note: h.cfg:4: defaults: log global: logging"}},
		{"environment variable", "defaults\n  mode http\nfrontend f\n  bind :80\n  http-request set-header X-Env \"${ENV}\"\n  default_backend web\n" + beWeb,
			[]check{"changed: h.cfg:5: ${ENV}: HAProxy expands environment variables at start"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runHAProxy(t, tc.cfg, tc.checks...)
		})
	}
}

// TestDefaultsMapping: what the defaults give reaches the repository
// through the proxies that inherit it, and a later defaults section
// starts again from HAProxy's own values.
func TestDefaultsMapping(t *testing.T) {
	runHAProxy(t, `
defaults
    mode http
    timeout connect 2s
    timeout server 2m
    timeout client 1m
    retries 5
    option forwardfor
    balance leastconn
    default-server check inter 4s send-proxy

frontend first
    bind :80
    default_backend one

backend one
    server s 192.0.2.1:80

defaults
    mode tcp
    timeout client 10s

frontend second
    bind :443
    tcp-request inspect-delay 1s
    default_backend two

backend two
    timeout connect 1s
    timeout server 1s
    server s 192.0.2.2:443

defaults fromme
    mode http
    timeout connect 7s
    timeout server 7s

backend three from fromme
    server s 192.0.2.3:80
`,
		"backends/one.yaml: balance: leastconn", "backends/one.yaml: connectTimeout: 2s", "backends/one.yaml: idleTimeout: 120s",
		"backends/one.yaml: retries: 5", "backends/one.yaml: proxyProtocol: v1", "backends/one.yaml: interval: 4s",
		"backends/two.yaml: balance: roundrobin", "backends/two.yaml: retries: 3", "backends/two.yaml: proxyProtocol: none",
		"!backends/two.yaml: healthCheck", "backends/three.yaml: connectTimeout: 7s",
		"edge.yaml: clientTimeout: 60s", "edge.yaml: clientTimeout: 10s", "edge.yaml: mode: tls", "edge.yaml: forwardFor: true",
	)
}

func TestStrict(t *testing.T) {
	files := map[string]string{"h.cfg": "defaults\n  mode http\n  timeout client 5s\n  timeout http-request 5s\nfrontend f\n  bind :80\n  frobnicate 1\n  default_backend web\n" + beWeb}
	opts := Options{HAProxy: "h.cfg", Strict: true, ReadFile: memFiles(files)}
	res, err := Import(opts)
	var strict *StrictError
	if !errors.As(err, &strict) {
		t.Fatalf("strict import: %v, want a StrictError", err)
	}
	if !strings.Contains(err.Error(), `h.cfg:7: frontend "f": frobnicate 1: unknown keyword: not interpreted`) || res == nil {
		t.Errorf("strict error: %v", err)
	}
	// Notes alone pass.
	files["h.cfg"] = strings.Replace(files["h.cfg"], "  frobnicate 1\n", "  option httplog\n", 1)
	if _, err := Import(opts); err != nil {
		t.Errorf("strict import with notes only: %v", err)
	}
}
