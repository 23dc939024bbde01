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
