package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// freePort finds a port free on every address given (bounded tries).
func freePort(t *testing.T, ips ...string) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		ok := true
		for _, ip := range ips[1:] {
			l, err := net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on every benchmark address")
	return 0
}

// needPeers fails t unless the tools are installed, and nginx's stream
// module (its TLS passthrough) with them: `make deps` installs them all.
func needPeers(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: `make deps` installs what the tests need", tool)
		}
	}
	if findStreamModule() == "" {
		t.Fatal("nginx's stream module is not installed (libnginx-mod-stream): `make deps`")
	}
}

// TestSmoke runs the whole benchmark once, briefly, unpinned: it proves
// the harness works from a clone of the project alone — every proxy
// starts from the configs generated from the routes, routes correctly,
// answers every scenario with no error, and reloads — in rounds, and in
// slices with every proxy up at once. The figures of such a short run
// mean nothing; `make bench` measures.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("the smoke run takes about a minute")
	}
	needPeers(t, "wrk", "nginx", "haproxy", "caddy")
	// Not t.TempDir (0700): nginx's workers run as nobody and must read
	// the backends' 1 MiB file.
	dir, err := os.MkdirTemp("", "gitedge-bench-smoke-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gitedge")
	build := exec.Command("go", "build", "-o", bin, "github.com/gitedge/gitedge/cmd/gitedge")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building gitedge: %v\n%s", err, out)
	}
	topo := defaultTopology()
	var beIPs []string
	for _, s := range httpServers {
		beIPs = append(beIPs, s.ip)
	}
	for _, s := range tlsServers {
		beIPs = append(beIPs, s.ip)
	}
	o := defaultOptions()
	// The ports must be free on the address of each proxy of a sliced run.
	var proxyIPs []string
	for i := range o.Proxies {
		s, err := topo.slot(i)
		if err != nil {
			t.Fatal(err)
		}
		proxyIPs = append(proxyIPs, s.ProxyIP)
	}
	topo.HTTPPort = freePort(t, proxyIPs...)
	topo.TLSPort = freePort(t, proxyIPs...)
	topo.AdminPort = freePort(t, proxyIPs...)
	topo.BackendHTTP = freePort(t, beIPs...)
	topo.BackendTLS = freePort(t, beIPs...)
	o.Topology = topo
	o.Duration, o.Warmup = time.Second, 0
	// Few connections and a long wrk timeout: on a loaded machine a TLS
	// handshake can take a second, and this run only proves the harness.
	o.Conns, o.BigConns, o.WrkTimeout = 8, 2, 10*time.Second
	o.Gitedge, o.NoPin = bin, true
	t.Run("rounds", func(t *testing.T) {
		o := o
		o.Scenarios = []string{"ka", "close", "tls-ka", "tls-close", "big", "reload", "reload-tls", "mem", "mem-tls", "mem-tls-silent"}
		o.Rounds, o.OtherRounds = 1, 1
		o.ReloadDuration, o.Reloads = 2*time.Second, 2
		o.MemConns, o.MemHold = 100, 200*time.Millisecond
		o.Out = filepath.Join(dir, "rounds")
		smokeRun(t, o)
	})
	t.Run("slices", func(t *testing.T) {
		o := o
		o.Scenarios = []string{"ka", "tls-close"}
		o.Slices, o.Slice = 2, time.Second
		o.Out = filepath.Join(dir, "slices")
		rs := smokeRun(t, o)
		count := map[string]int{}
		for _, r := range rs {
			if r.Skipped != "" || r.Error != "" {
				continue
			}
			what := fmt.Sprintf("%s %s cycle %d", r.Scenario, r.Proxy, r.Round)
			if r.SliceSecs != 1 {
				t.Errorf("%s: slice of %v s, want 1", what, r.SliceSecs)
			}
			// Every proxy is up during every slice: only the one
			// measured may have done the work.
			if r.ProxyCPU == 0 {
				t.Errorf("%s: the proxy used no CPU in its slice: the load went elsewhere", what)
			}
			count[r.Scenario+" "+r.Proxy]++
		}
		for _, sc := range o.Scenarios {
			for _, p := range o.Proxies {
				if p == "caddy" && sc == "tls-close" {
					continue
				}
				if n := count[sc+" "+p]; n != o.Slices {
					t.Errorf("%s %s: %d slices measured, want %d", sc, p, n, o.Slices)
				}
			}
		}
		b, err := os.ReadFile(filepath.Join(o.Out, "table.md"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"2 cycles of 1s slices", "cycles above the better of HAProxy and nginx (sign test)"} {
			if !strings.Contains(string(b), want) {
				t.Errorf("table.md lacks %q:\n%s", want, b)
			}
		}
	})
}

// smokeRun runs the harness with o (bounded), checks every result that
// all runs have, and returns the results.
func smokeRun(t *testing.T, o options) []result {
	t.Helper()
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	table, err := run(ctx, o, &log)
	t.Log("\n" + log.String() + table)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := readResults(filepath.Join(o.Out, "results.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rs {
		what := fmt.Sprintf("%s %s", r.Scenario, r.Proxy)
		switch {
		case r.Skipped != "":
			if r.Proxy != "caddy" || !strings.Contains(r.Scenario, "tls") {
				t.Errorf("%s skipped: %s", what, r.Skipped)
			}
			continue
		case r.Error != "":
			t.Errorf("%s: %s", what, r.Error)
			continue
		}
		seen[r.Proxy] = true
		switch {
		case strings.HasPrefix(r.Scenario, "mem"):
			if r.Ready != r.Conns || r.RSSLoadKiB == 0 {
				t.Errorf("%s: %d of %d connections held, RSS %d KiB", what, r.Ready, r.Conns, r.RSSLoadKiB)
			}
		case strings.HasPrefix(r.Scenario, "reload"):
			if r.Requests == 0 || r.ReloadFailed != 0 || !r.FinalOK {
				t.Errorf("%s: %d requests, %d of %d reloads failed, final routes in force %v", what, r.Requests, r.ReloadFailed, r.Reloads, r.FinalOK)
			}
			// Peers may lose requests on a reload (that is what the
			// scenario shows); gitedge must not.
			if r.Proxy == "gitedge" && (r.Errors != 0 || r.Non2xx != 0) {
				t.Errorf("%s: %d socket errors, %d non-2xx answers during reloads", what, r.Errors, r.Non2xx)
			}
		default:
			if r.Requests == 0 || r.Errors != 0 || r.Non2xx != 0 {
				t.Errorf("%s: %d requests, %d socket errors, %d non-2xx", what, r.Requests, r.Errors, r.Non2xx)
			}
			// The servers share a ticket key: whichever server a
			// connection lands on resumes wrk's session, so only each
			// wrk connection's first handshake is a full one.
			if r.Scenario == "tls-close" && r.TLSResumed < 90 {
				t.Errorf("%s: %.1f%% of handshakes resumed, want nearly all", what, r.TLSResumed)
			}
		}
	}
	for _, p := range o.Proxies {
		if !seen[p] {
			t.Errorf("no successful run of %s", p)
		}
	}
	if _, err := os.Stat(filepath.Join(o.Out, "table.md")); err != nil {
		t.Error(err)
	}
	return rs
}
