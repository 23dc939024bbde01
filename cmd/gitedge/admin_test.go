package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/reconcile"
)

// serveAdmin runs an admin server on a loopback listener until the test
// ends and returns its address.
func serveAdmin(t *testing.T, a *adminServer) string {
	t.Helper()
	ln := testkit.Listen(t)
	testkit.Run(t, func(ctx context.Context) error { return a.serve(ctx, ln) })
	return ln.Addr().String()
}

func TestAdminServerAndStatusCommand(t *testing.T) {
	reg := prometheus.NewRegistry()
	loop := &reconcile.Loop{Node: "lb-0", Metrics: reconcile.NewMetrics(reg)}
	if _, err := loop.Pass(context.Background(), reconcile.Revision{Commit: "0123456789abcdef", Files: os.DirFS("../../examples/homelab"), Author: "ops", Message: "add blog"}, nil); err != nil {
		t.Fatal(err)
	}
	var unhealthy error
	a := &adminServer{
		status: func() nodeStatus {
			return nodeStatus{Status: loop.Status(), Version: version, VRRP: []vrrpStatus{{InstanceStatus: failover.InstanceStatus{
				Name: "VI_1", State: failover.StateMaster, Priority: 101, Master: netip.MustParseAddr("192.0.2.251"), VIPs: []string{"192.0.2.254/24"}}}}}
		},
		ready: loop.Status, healthy: func() error { return unhealthy }, registry: reg, logger: slog.New(slog.DiscardHandler)}
	addr := serveAdmin(t, a)
	get := func(path string, want int) string {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s: %s, want %d", path, resp.Status, want)
		}
		return string(b)
	}
	if body := get("/healthz", 200); body != "ok\n" {
		t.Errorf("/healthz = %q", body)
	}
	unhealthy = errors.New("listeners not accepting")
	if body := get("/healthz", 503); body != "listeners not accepting\n" {
		t.Errorf("/healthz of an unhealthy node = %q", body)
	}
	if body := get("/readyz", 200); body != "ready: serving commit 0123456789abcdef, the newest\n" {
		t.Errorf("/readyz = %q", body)
	}
	if body := get("/metrics", 200); !strings.Contains(body, reconcile.MetricLiveCommit+`{commit="0123456789abcdef"} 1`) {
		t.Errorf("/metrics lacks the live commit:\n%s", body)
	}
	if body := get("/", 200); !strings.Contains(body, `<span class="node">lb-0</span>`) || !strings.Contains(body, "0123456789abcdef") || !strings.Contains(body, `<span class="st-master">MASTER</span>`) {
		t.Errorf("status page:\n%s", body)
	}
	get("/debug/pprof/", 404) // only with pprof
	code, out, errOut := gitedge(t, "status", "--admin", addr)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"node:         lb-0", "live commit:  0123456789abcdef", `"add blog" by ops`, "last attempt: applied", "plan: 15 to add",
		"vrrp:         VI_1 MASTER, priority 101, master 192.0.2.251, VIPs 192.0.2.254/24"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = gitedge(t, "status", "--admin", addr, "--output", "json")
	if code != 0 || !strings.Contains(out, `"commit": "0123456789abcdef"`) || !strings.Contains(out, `"state": "MASTER"`) {
		t.Errorf("status json: %d %s", code, out)
	}
	if code, _, errOut := gitedge(t, "status", "--admin", "127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "is gitedge running?") {
		t.Errorf("status of nothing: %d %s", code, errOut)
	}
}

// TestStatusBadAdminAddress is issue 11's defect: `gitedge status --admin
// 'a b'` panicked on the request it could not build. Every malformed
// address is a usage error naming it.
func TestStatusBadAdminAddress(t *testing.T) {
	for _, addr := range []string{"a b", "a b:9100", "127.0.0.1", "http://127.0.0.1:9100", "%zz:1"} {
		code, _, errOut := gitedge(t, "status", "--admin", addr)
		if code != 2 || !strings.Contains(errOut, `--admin "`+addr+`"`) {
			t.Errorf("--admin %q: exit %d: %s", addr, code, errOut)
		}
	}
	for addr, want := range map[string]string{":9100": "http://127.0.0.1:9100/status", "[::1]:9100": "http://[::1]:9100/status", "lb-0.example:9100": "http://lb-0.example:9100/status"} {
		if got, err := adminURL(addr); err != nil || got != want {
			t.Errorf("adminURL(%q) = %q, %v, want %q", addr, got, err, want)
		}
	}
}

// TestStatusJSONKeysLowerCamel: every key of a running node's /status is
// lowerCamelCase, whichever subsystem reports it (the keys of the maps
// that name things, conditions by step and drops by reason, are data and
// are left out); and its JSON log lines name each attribute once, with
// durations readable (issue 11: "subsystem" twice, nanoseconds).
func TestStatusJSONKeysLowerCamel(t *testing.T) {
	f := newFleetNode(t)
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	n := startNode(t, f.admin, "--config", f.config)
	_, raw := n.waitStatus("a commit live", func(s nodeStatus) bool { return s.Live != nil && len(s.Backends) > 0 })
	var doc any
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	var bad []string
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			data := strings.HasSuffix(path, ".conditions") || strings.HasSuffix(path, ".drops")
			for k, x := range v {
				if !data && !lowerCamel(k) {
					bad = append(bad, path+"."+k)
				}
				walk(x, path+"."+k)
			}
		case []any:
			for _, x := range v {
				walk(x, path+"[]")
			}
		}
	}
	walk(doc, "")
	for _, want := range []string{`"backends"`, `"lastAttempt"`, `"conditions"`, `"duration": "`} {
		if !strings.Contains(raw, want) {
			t.Errorf("/status lacks %s:\n%s", want, raw)
		}
	}
	if len(bad) > 0 {
		t.Errorf("keys not lowerCamelCase: %v\n%s", bad, raw)
	}

	n.waitLog(`"msg":"reconcile pass applied"`)
	lines := 0
	for line := range strings.Lines(n.logs.String()) {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		lines++
		keys, err := topKeys(line)
		if err != nil {
			t.Errorf("log line not JSON: %v: %s", err, line)
			continue
		}
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				t.Errorf("log line names %q twice: %s", k, line)
			}
			seen[k] = true
		}
		if strings.Contains(line, `"msg":"reconcile pass applied"`) && !strings.Contains(line, `"duration":"`) {
			t.Errorf("a duration not written as a Go duration: %s", line)
		}
	}
	if lines == 0 {
		t.Fatalf("no JSON log lines:\n%s", n.logs)
	}
}

// topKeys lists the keys of a JSON object in order, repeats included
// (encoding/json would keep only the last).
func topKeys(line string) ([]string, error) {
	dec := json.NewDecoder(strings.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, err
		}
	}
	return keys, nil
}

func lowerCamel(k string) bool {
	if k == "" || !unicode.IsLower(rune(k[0])) {
		return false
	}
	for _, r := range k {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// TestStatusExitCodes: `gitedge status` (text and JSON) exits by what a
// running node says, for monitoring scripts, and /readyz says whether the
// node serves the newest commit (issue 12.6).
func TestStatusExitCodes(t *testing.T) {
	for _, c := range []struct {
		name string
		// setup pushes commits and waits for the node to take them; it
		// returns the node's admin address.
		setup     func(t *testing.T, f *fleetNode) string
		code      int
		say       string // in the text output
		readyCode int    // 0: the node is gone
		ready     string // the start of /readyz's body, %s the live commit, %b the refused one (%B its short form)
	}{
		{name: "serving the newest", code: statusOK, readyCode: 200, ready: "ready: serving commit %s, the newest\n",
			setup: func(t *testing.T, f *fleetNode) string {
				f.good = f.remote.commit("main", "good", f.goodFiles)
				f.remote.start()
				n := startNode(t, f.admin, "--config", f.config)
				n.waitStatus("the good commit live", func(s nodeStatus) bool { return s.Live != nil && s.Live.Commit == f.good })
				return f.admin
			}},
		{name: "a newer commit refused", code: statusUnhealthy, say: "  - config Stalled: ", readyCode: 200,
			ready: "ready: serving commit %s; not the newest: commit %b is invalid: ",
			setup: func(t *testing.T, f *fleetNode) string {
				f.good = f.remote.commit("main", "good", f.goodFiles)
				f.remote.start()
				n := startNode(t, f.admin, "--config", f.config)
				n.waitStatus("the good commit live", func(s nodeStatus) bool { return s.Live != nil && s.Live.Commit == f.good })
				f.bad = f.remote.commit("main", "dangling backend", f.badFiles())
				n.waitStatus("the bad commit refused", func(s nodeStatus) bool { return s.LastAttempt != nil && s.LastAttempt.Commit == f.bad })
				return f.admin
			}},
		{name: "nothing serves", code: statusUnhealthy, say: "  - no commit serves\n", readyCode: 503, ready: "no commit applied yet: commit %B was refused",
			setup: func(t *testing.T, f *fleetNode) string {
				f.bad = f.remote.commit("main", "dangling backend", f.badFiles())
				f.remote.start()
				n := startNode(t, f.admin, "--config", f.config)
				n.waitStatus("the tip refused", func(s nodeStatus) bool { return s.LastAttempt != nil })
				return f.admin
			}},
		{name: "the node is gone", code: statusNoAnswer,
			setup: func(t *testing.T, f *fleetNode) string {
				f.good = f.remote.commit("main", "good", f.goodFiles)
				f.remote.start()
				n := startNode(t, f.admin, "--config", f.config)
				n.waitStatus("the good commit live", func(s nodeStatus) bool { return s.Live != nil })
				n.stop(syscall.SIGTERM)
				return f.admin
			}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newFleetNode(t)
			admin := c.setup(t, f)
			code, out, errOut := gitedge(t, "status", "--admin", admin)
			if code != c.code || !strings.Contains(out, c.say) {
				t.Errorf("gitedge status: exit %d, want %d; output lacks %q?\n%s%s", code, c.code, c.say, out, errOut)
			}
			if code, out, errOut := gitedge(t, "status", "--admin", admin, "--output", "json"); code != c.code || c.code != statusNoAnswer && !json.Valid([]byte(out)) {
				t.Errorf("gitedge status --output json: exit %d, want %d\n%s%s", code, c.code, out, errOut)
			}
			if c.readyCode == 0 {
				return
			}
			resp, err := http.Get("http://" + admin + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := strings.NewReplacer("%s", f.good, "%b", f.bad, "%B", shortCommit(f.bad)).Replace(c.ready)
			if resp.StatusCode != c.readyCode || !strings.HasPrefix(string(body), want) {
				t.Errorf("/readyz: %s %q, want %d %q…", resp.Status, body, c.readyCode, want)
			}
			if c.readyCode != 200 {
				return
			}
			// A refused commit leaves the node healthy: it serves.
			if resp, err := http.Get("http://" + admin + "/healthz"); err != nil || resp.StatusCode != 200 {
				t.Errorf("/healthz of a node that serves: %v %v", resp, err)
			} else {
				resp.Body.Close()
			}
		})
	}
}
