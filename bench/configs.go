package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gitedge/gitedge/dataplane"
)

// The peers' configs are generated from the dataplane config gitedge
// loads (reconcile.LoadDir of the routes directory), so every proxy
// routes the same hosts to the same servers with the same limits: exact
// and "*.suffix" hosts, a default backend per listener, weighted round
// robin, maxConn (a server's, and in HAProxy a listener's), PROXY protocol
// where the peer can send it.

// modes says in which listener mode each backend is used: HAProxy and
// nginx split HTTP and TCP backends, so one backend cannot serve both.
func modes(cfg *dataplane.Config) (map[string]dataplane.Mode, error) {
	m := map[string]dataplane.Mode{}
	use := func(b string, mode dataplane.Mode) error {
		if b == "" {
			return nil
		}
		if prev, ok := m[b]; ok && prev != mode {
			return fmt.Errorf("backend %q is used by http and tls listeners: the peers need one backend per mode", b)
		}
		m[b] = mode
		return nil
	}
	for _, l := range cfg.Listeners {
		if err := use(l.DefaultBackend, l.Mode); err != nil {
			return nil, err
		}
	}
	for _, r := range cfg.Routes {
		if err := use(r.HTTPBackend, dataplane.ModeHTTP); err != nil {
			return nil, err
		}
		if err := use(r.TLSBackend, dataplane.ModeTLS); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// hostRoute is one host of one mode.
type hostRoute struct {
	host, backend string
}

// haproxyRoutes writes an acl on fetch (the Host field, the SNI) and a
// use_backend line for each route; a "*." host matches by suffix.
func haproxyRoutes(b *strings.Builder, routes []hostRoute, fetch string) {
	for i, r := range routes {
		if h, ok := strings.CutPrefix(r.host, "*."); ok {
			fmt.Fprintf(b, "    acl r%d %s -i -m end .%s\n", i, fetch, h)
		} else {
			fmt.Fprintf(b, "    acl r%d %s -i %s\n", i, fetch, r.host)
		}
		fmt.Fprintf(b, "    use_backend %s if r%d\n", r.backend, i)
	}
}

func routesOf(cfg *dataplane.Config, mode dataplane.Mode) []hostRoute {
	var out []hostRoute
	for _, r := range cfg.Routes {
		b := r.HTTPBackend
		if mode == dataplane.ModeTLS {
			b = r.TLSBackend
		}
		if b == "" {
			continue
		}
		for _, h := range r.Hosts {
			out = append(out, hostRoute{h, b})
		}
	}
	// Exact names first, then wildcards longest first: gitedge's precedence.
	slices.SortStableFunc(out, func(a, b hostRoute) int {
		wa, wb := strings.HasPrefix(a.host, "*."), strings.HasPrefix(b.host, "*.")
		switch {
		case wa != wb && wa:
			return 1
		case wa != wb:
			return -1
		case wa:
			return len(b.host) - len(a.host)
		}
		return 0
	})
	return out
}

func secs(d time.Duration) string { return fmt.Sprintf("%dms", d.Milliseconds()) }

// deferOpt is a peer's bind option for the listener's deferAccept.
func deferOpt(l dataplane.Listener, opt string) string {
	if l.DeferAccept {
		return opt
	}
	return ""
}

// haproxyConfig renders haproxy.cfg: master-worker, one thread, listeners
// handed over on reload (expose-fd listeners), as an operator runs it.
func haproxyConfig(cfg *dataplane.Config, runDir string) (string, error) {
	bm, err := modes(cfg)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
    master-worker
    nbthread 1
    maxconn 9900
    pidfile %s/haproxy.pid
    stats socket %s/haproxy.sock mode 600 level admin expose-fd listeners

defaults
    timeout connect 1s
    timeout client 60s
    timeout server 60s
    timeout tunnel 60s
    timeout http-keep-alive 60s
    timeout http-request 10s
`, runDir, runDir)
	for _, l := range cfg.Listeners {
		fmt.Fprintf(&b, "\nfrontend %s\n    bind %s%s\n", l.Name, l.Bind, deferOpt(l, " defer-accept"))
		if l.MaxConn > 0 {
			fmt.Fprintf(&b, "    maxconn %d\n", l.MaxConn)
		}
		if l.Mode == dataplane.ModeHTTP {
			fmt.Fprintf(&b, "    mode http\n    timeout client %s\n    timeout http-request %s\n", secs(l.ClientTimeout), secs(l.RequestTimeout))
			if l.ForwardFor {
				b.WriteString("    option forwardfor\n")
			}
			haproxyRoutes(&b, routesOf(cfg, l.Mode), "req.hdr(host),field(1,:)")
		} else {
			fmt.Fprintf(&b, "    mode tcp\n    tcp-request inspect-delay %s\n    tcp-request content accept if { req_ssl_hello_type 1 }\n", secs(l.InspectTimeout))
			haproxyRoutes(&b, routesOf(cfg, l.Mode), "req_ssl_sni")
		}
		if l.DefaultBackend != "" {
			fmt.Fprintf(&b, "    default_backend %s\n", l.DefaultBackend)
		}
	}
	for _, be := range cfg.Backends {
		mode, ok := bm[be.Name]
		if !ok {
			continue
		}
		hm := "http"
		if mode == dataplane.ModeTLS {
			hm = "tcp"
		}
		balance := map[dataplane.Balance]string{dataplane.BalanceRoundRobin: "roundrobin", dataplane.BalanceLeastConn: "leastconn", dataplane.BalanceSource: "source"}[be.Balance]
		fmt.Fprintf(&b, "\nbackend %s\n    mode %s\n    balance %s\n    timeout connect %s\n    timeout server %s\n    retries %d\n",
			be.Name, hm, balance, secs(be.ConnectTimeout), secs(be.IdleTimeout), be.Retries)
		if mode == dataplane.ModeHTTP {
			// HAProxy's default (safe) opens a server connection for each
			// client connection's first request; gitedge and nginx take a
			// pooled one: aggressive reuses those proven reusable.
			b.WriteString("    http-reuse aggressive\n")
		}
		pp := map[dataplane.ProxyProtocol]string{dataplane.ProxyV1: " send-proxy", dataplane.ProxyV2: " send-proxy-v2"}[be.ProxyProtocol]
		for _, s := range be.Servers {
			fmt.Fprintf(&b, "    server %s %s weight %d", s.Name, s.Address, s.Weight)
			if s.MaxConn > 0 {
				fmt.Fprintf(&b, " maxconn %d", s.MaxConn)
			}
			b.WriteString(pp + "\n")
		}
	}
	return b.String(), nil
}

// nginxConfig renders the proxy's nginx.conf: http{} with upstream
// keep-alive (without it nginx opens a server connection per request),
// stream{} with ssl_preread for SNI. nginx's http proxy cannot send a
// PROXY header, and its stream proxy only v1.
func nginxConfig(cfg *dataplane.Config, runDir, streamModule string) (string, error) {
	bm, err := modes(cfg)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if streamModule != "" {
		fmt.Fprintf(&b, "load_module %s;\n", streamModule)
	}
	fmt.Fprintf(&b, nginxMain+`  keepalive_timeout 60s;
  keepalive_requests 10000000;
`+nginxTemps+`  proxy_http_version 1.1;
  proxy_set_header Connection "";
  proxy_set_header Host $http_host;
  # proxy_buffering stays on (the default): off, nginx moves an answer
  # through one 4k buffer, and big fell from 755-795 to 391-555 req/s.
`, runDir)
	upstream := func(be dataplane.Backend, keepalive bool) {
		fmt.Fprintf(&b, "  upstream %s {\n", be.Name)
		switch be.Balance {
		case dataplane.BalanceLeastConn:
			b.WriteString("    least_conn;\n")
		case dataplane.BalanceSource:
			b.WriteString("    hash $remote_addr consistent;\n")
		}
		for _, s := range be.Servers {
			fmt.Fprintf(&b, "    server %s weight=%d", s.Address, s.Weight)
			if s.MaxConn > 0 {
				fmt.Fprintf(&b, " max_conns=%d", s.MaxConn)
			}
			b.WriteString(";\n")
		}
		if keepalive {
			b.WriteString("    keepalive 128;\n    keepalive_requests 10000000;\n    keepalive_timeout 60s;\n")
		}
		b.WriteString("  }\n")
	}
	for _, be := range cfg.Backends {
		if bm[be.Name] != dataplane.ModeHTTP {
			continue
		}
		if be.ProxyProtocol != dataplane.ProxyNone && be.ProxyProtocol != "" {
			return "", fmt.Errorf("backend %q: nginx's http proxy cannot send a PROXY header", be.Name)
		}
		upstream(be, true)
	}
	byName := map[string]dataplane.Backend{}
	for _, be := range cfg.Backends {
		byName[be.Name] = be
	}
	for _, l := range cfg.Listeners {
		if l.Mode != dataplane.ModeHTTP {
			continue
		}
		xff := ""
		if l.ForwardFor {
			xff = " proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Proto http;"
		}
		// The timeouts HAProxy gets: the request's (its timeout
		// http-request) and the backend's connect timeout.
		hdr := fmt.Sprintf(" client_header_timeout %s;", secs(l.RequestTimeout))
		location := func(backend string) string {
			return fmt.Sprintf("location / { proxy_pass http://%s; proxy_connect_timeout %s;%s }", backend, secs(byName[backend].ConnectTimeout), xff)
		}
		if l.DefaultBackend != "" {
			fmt.Fprintf(&b, "  server { listen %s default_server backlog=4096%s; server_name _;%s %s }\n", l.Bind, deferOpt(l, " deferred"), hdr, location(l.DefaultBackend))
		} else {
			fmt.Fprintf(&b, "  server { listen %s default_server backlog=4096%s; server_name _;%s return 503; }\n", l.Bind, deferOpt(l, " deferred"), hdr)
		}
		for _, r := range routesOf(cfg, l.Mode) {
			fmt.Fprintf(&b, "  server { listen %s; server_name %s;%s %s }\n", l.Bind, r.host, hdr, location(r.backend))
		}
	}
	b.WriteString("}\n")
	var tls []dataplane.Listener
	for _, l := range cfg.Listeners {
		if l.Mode == dataplane.ModeTLS {
			tls = append(tls, l)
		}
	}
	if len(tls) == 0 {
		return b.String(), nil
	}
	if streamModule == "" {
		return "", fmt.Errorf("tls listeners need nginx's stream module (libnginx-mod-stream)")
	}
	b.WriteString("stream {\n")
	pp := "off"
	// nginx's stream proxy_connect_timeout is the server block's, whatever
	// backend the map picks: the longest of the tls backends'.
	var connect time.Duration
	for _, be := range cfg.Backends {
		if bm[be.Name] != dataplane.ModeTLS {
			continue
		}
		connect = max(connect, be.ConnectTimeout)
		switch be.ProxyProtocol {
		case dataplane.ProxyV1:
			pp = "on"
		case dataplane.ProxyV2:
			return "", fmt.Errorf("backend %q: nginx's stream proxy sends PROXY protocol v1 only", be.Name)
		}
		upstream(be, false)
	}
	// No deferred here: Debian 12's nginx (1.22) takes it in http only.
	// Its stream preread waits for readability before its first read
	// all the same, so it makes no read that finds nothing.
	for i, l := range tls {
		fmt.Fprintf(&b, "  map $ssl_preread_server_name $sni%d {\n    hostnames;\n", i)
		for _, r := range routesOf(cfg, l.Mode) {
			fmt.Fprintf(&b, "    %s %s;\n", strings.TrimPrefix(r.host, "*"), r.backend)
		}
		def := l.DefaultBackend
		if def == "" {
			def = "127.0.0.1:1" // refused: as gitedge, close
		}
		fmt.Fprintf(&b, "    default %s;\n  }\n", def)
		fmt.Fprintf(&b, "  server { listen %s backlog=4096; ssl_preread on; preread_timeout %s; proxy_pass $sni%d; proxy_connect_timeout %s; proxy_protocol %s; }\n",
			l.Bind, secs(l.InspectTimeout), i, secs(cmp.Or(connect, time.Second)), pp)
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// caddyConfig renders a Caddyfile for the http listeners (Debian's Caddy
// 2.6 has no SNI passthrough and no PROXY protocol towards servers).
func caddyConfig(cfg *dataplane.Config, admin string) (string, error) {
	bm, err := modes(cfg)
	if err != nil {
		return "", err
	}
	servers := map[string]dataplane.Backend{}
	for _, be := range cfg.Backends {
		servers[be.Name] = be
	}
	var b strings.Builder
	fmt.Fprintf(&b, "{\n  admin %s\n  auto_https off\n}\n", admin)
	proxy := func(name string) string {
		be := servers[name]
		if bm[name] != dataplane.ModeHTTP {
			return "respond 503"
		}
		var addrs []string
		for _, s := range be.Servers {
			addrs = append(addrs, s.Address.String())
		}
		return fmt.Sprintf("reverse_proxy %s {\n    lb_policy round_robin\n  }", strings.Join(addrs, " "))
	}
	for _, l := range cfg.Listeners {
		if l.Mode != dataplane.ModeHTTP {
			continue
		}
		ip, port := l.Bind.Addr.String(), l.Bind.Port
		for _, r := range routesOf(cfg, l.Mode) {
			fmt.Fprintf(&b, "http://%s:%d {\n  bind %s\n  %s\n}\n", r.host, port, ip, proxy(r.backend))
		}
		def := "respond 503"
		if l.DefaultBackend != "" {
			def = proxy(l.DefaultBackend)
		}
		fmt.Fprintf(&b, "http://:%d {\n  bind %s\n  %s\n}\n", port, ip, def)
	}
	return b.String(), nil
}

// nginxMain opens an nginx.conf whose files are all below the directory
// given as the format's first argument, up to the http block's first
// line; nginxTemps puts the http block's temporary files there too.
const (
	nginxMain = `worker_processes 1;
worker_rlimit_nofile 20000;
daemon off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 19500; }
http {
  access_log off;
`
	nginxTemps = `  client_body_temp_path %[1]s/tmp/body;
  proxy_temp_path %[1]s/tmp/proxy;
  fastcgi_temp_path %[1]s/tmp/fastcgi;
  uwsgi_temp_path %[1]s/tmp/uwsgi;
  scgi_temp_path %[1]s/tmp/scgi;
`
)

// backendsConfig renders the nginx config of the servers themselves: each
// plain server answers "/" with its name and "/1m" with 1 MiB; each TLS
// server does the same over TLS with a self-signed certificate, and logs
// whether each handshake resumed a session (resumedLog).
//
// With sharedTicketKey the TLS servers share one session-ticket key, as
// the servers of one pool behind a layer-4 balancer should: a client's
// ticket then resumes on whichever server the balancer picks. Without it
// each server has a key of its own, and a wrk connection resumes only
// when its next connection lands on the same server as its last; under
// round robin that depends on the order in which the proxy happened to
// pick, and measures that order, not the proxy (see docs/benchmarks.md,
// Round 9).
func backendsConfig(cfg *dataplane.Config, dir string, sharedTicketKey bool) (string, error) {
	bm, err := modes(cfg)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, nginxMain+`  sendfile on;
  tcp_nopush on;
  keepalive_timeout 120s;
  keepalive_requests 10000000;
`+nginxTemps+`  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  log_format resumed "$ssl_session_reused";
`, dir)
	seen := map[string]bool{}
	for _, be := range cfg.Backends {
		for _, s := range be.Servers {
			addr := s.Address.String()
			if seen[addr] {
				continue
			}
			seen[addr] = true
			tls := ""
			if bm[be.Name] == dataplane.ModeTLS {
				tls = fmt.Sprintf(" ssl;\n    ssl_certificate %[1]s/server.crt; ssl_certificate_key %[1]s/server.key;\n    access_log %[1]s/%[2]s resumed buffer=32k flush=%[3]dms", dir, resumedLog, resumedFlush.Milliseconds())
				if sharedTicketKey {
					tls += fmt.Sprintf(";\n    ssl_session_ticket_key %s/%s", dir, ticketKeyFile)
				}
			}
			pp := ""
			if be.ProxyProtocol != dataplane.ProxyNone && be.ProxyProtocol != "" {
				pp = " proxy_protocol"
			}
			fmt.Fprintf(&b, "  server {\n    listen %s backlog=4096%s%s;\n    default_type text/plain;\n    location = / { return 200 \"%s\\n\"; }\n    location = /1m { alias %s/1m.bin; }\n  }\n",
				addr, pp, tls, s.Name, dir)
		}
	}
	b.WriteString("}\n")
	return b.String(), nil
}

// writeConfigs writes every peer's config for cfg into dir.
func writeConfigs(cfg *dataplane.Config, dir, streamModule string, t topology) error {
	files := map[string]func() (string, error){
		"haproxy.cfg": func() (string, error) { return haproxyConfig(cfg, dir) },
		"nginx.conf":  func() (string, error) { return nginxConfig(cfg, dir, streamModule) },
		"Caddyfile":   func() (string, error) { return caddyConfig(cfg, fmt.Sprintf("%s:%d", t.ProxyIP, t.AdminPort)) },
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return err
	}
	for name, gen := range files {
		text, err := gen()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	return nil
}
