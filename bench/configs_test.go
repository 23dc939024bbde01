package main

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/reconcile"
)

// TestHAProxyConfigCaps: the caps a routes directory sets reach HAProxy's
// config as HAProxy spells them (a listener's maxConn as its frontend's
// maxconn, a server's as the server's), and HAProxy accepts the file.
func TestHAProxyConfigCaps(t *testing.T) {
	bind, err := dataplane.ParseBind("127.0.0.1:18080")
	if err != nil {
		t.Fatal(err)
	}
	server := dataplane.Server{Name: "s1", Address: netip.MustParseAddrPort("127.0.0.11:80"), Weight: 1, MaxConn: 10}
	for _, tc := range []struct {
		name    string
		maxConn int
		want    []string
		absent  string
	}{
		{"capped", 500, []string{"frontend http\n    bind 127.0.0.1:18080\n    maxconn 500\n", "server s1 127.0.0.11:80 weight 1 maxconn 10"}, ""},
		{"uncapped", 0, []string{"frontend http\n    bind 127.0.0.1:18080\n    mode http\n"}, "    maxconn 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &dataplane.Config{
				Listeners: []dataplane.Listener{{Name: "http", Bind: bind, Mode: dataplane.ModeHTTP, DefaultBackend: "web",
					ClientTimeout: time.Minute, RequestTimeout: 10 * time.Second, MaxConn: tc.maxConn}},
				Backends: []dataplane.Backend{{Name: "web", Balance: dataplane.BalanceRoundRobin, ConnectTimeout: time.Second, IdleTimeout: time.Minute, Servers: []dataplane.Server{server}}},
			}
			dir := t.TempDir()
			text, err := haproxyConfig(cfg, dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(text, w) {
					t.Errorf("haproxy.cfg lacks %q:\n%s", w, text)
				}
			}
			if tc.absent != "" && strings.Contains(text, tc.absent) {
				t.Errorf("haproxy.cfg has %q:\n%s", tc.absent, text)
			}
			f := filepath.Join(dir, "haproxy.cfg")
			if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("haproxy", "-c", "-f", f).CombinedOutput(); err != nil {
				t.Fatalf("haproxy -c: %v\n%s\n%s", err, out, text)
			}
		})
	}
}

// TestPeerConfigsAlign: the generated configs give HAProxy and nginx
// what gitedge does: HAProxy reuses pooled server connections for first
// requests (http-reuse aggressive, HTTP backends only), nginx keeps its
// default response buffering (off was far slower in big) and has the
// routes' connect timeout and the listener's request timeout (HAProxy's
// timeout http-request) and the listeners' deferAccept, on by default and
// off with -no-defer-accept; both accept the files.
func TestPeerConfigsAlign(t *testing.T) {
	needPeers(t, "haproxy", "nginx")
	dir, err := os.MkdirTemp("", "gitedge-bench-configs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	topo := defaultTopology()
	if err := writeRoutes(filepath.Join(dir, "routes"), topo, "b"); err != nil {
		t.Fatal(err)
	}
	d, err := reconcile.LoadDir(filepath.Join(dir, "routes"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &d.Dataplane
	var req time.Duration
	for _, l := range cfg.Listeners {
		if l.Mode == dataplane.ModeHTTP {
			req = l.RequestTimeout
		}
	}
	if req == 0 {
		t.Fatal("the routes' http listener has no request timeout")
	}
	stream := findStreamModule()
	if err := writeConfigs(cfg, dir, stream, topo); err != nil {
		t.Fatal(err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	haproxy, nginx := read("haproxy.cfg"), read("nginx.conf")
	for _, tc := range []struct {
		name, text, want string
		count            int // times want must occur
	}{
		{"haproxy: reuse in every http backend", haproxy, "    http-reuse aggressive\n", 3},
		{"haproxy: the request timeout", haproxy, "    timeout http-request " + secs(req) + "\n", 1},
		{"nginx: its default response buffering", nginx, "proxy_buffering off", 0},
		{"nginx: the request timeout in every http server", nginx, "client_header_timeout " + secs(req) + ";", 5},
		{"nginx: the connect timeout in every http location", nginx, "proxy_connect_timeout 1000ms;", 5 + 1},
		{"nginx: no 1s literal left", nginx, "proxy_connect_timeout 1s", 0},
		{"haproxy: deferAccept on both binds", haproxy, " defer-accept\n", 2},
		{"nginx: deferAccept on the http listen (1.22's stream has none)", nginx, " deferred;", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := strings.Count(tc.text, tc.want); n != tc.count {
				t.Errorf("%q occurs %d times, want %d:\n%s", tc.want, n, tc.count, tc.text)
			}
		})
	}
	// HAProxy has one http-reuse line per http backend: the tcp backends
	// have none.
	for _, be := range strings.Split(haproxy, "\nbackend ")[1:] {
		if strings.Contains(be, "mode tcp") && strings.Contains(be, "http-reuse") {
			t.Errorf("tcp backend with http-reuse:\n%s", be)
		}
	}
	if out, err := exec.Command("haproxy", "-c", "-f", filepath.Join(dir, "haproxy.cfg")).CombinedOutput(); err != nil {
		t.Errorf("haproxy -c: %v\n%s", err, out)
	} else if strings.Contains(string(out), "WARNING") {
		t.Errorf("haproxy -c warns:\n%s", out)
	}
	if out, err := exec.Command("nginx", "-t", "-q", "-c", filepath.Join(dir, "nginx.conf"), "-p", dir).CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}

	topo.NoDeferAccept = true
	if err := writeRoutes(filepath.Join(dir, "routes"), topo, "b"); err != nil {
		t.Fatal(err)
	}
	if d, err = reconcile.LoadDir(filepath.Join(dir, "routes")); err != nil {
		t.Fatal(err)
	}
	if err := writeConfigs(&d.Dataplane, dir, stream, topo); err != nil {
		t.Fatal(err)
	}
	for _, l := range d.Dataplane.Listeners {
		if l.DeferAccept {
			t.Errorf("-no-defer-accept: listener %s defers accepting", l.Name)
		}
	}
	if haproxy, nginx = read("haproxy.cfg"), read("nginx.conf"); strings.Contains(haproxy, "defer-accept") || strings.Contains(nginx, "deferred") {
		t.Errorf("-no-defer-accept: a peer still defers:\n%s\n%s", haproxy, nginx)
	}
}
