package main

import (
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/reconcile"
)

// TestRunSIGHUP is issue 9 defect 2: SIGHUP (systemctl reload) re-reads
// the node config and re-fetches; a config that does not load is logged
// and the running one kept; what needs a restart is said; SIGTERM still
// stops cleanly.
func TestRunSIGHUP(t *testing.T) {
	f := newFleetNode(t)
	f.writeConfig(t, "main", f.admin, "@every 1h") // no polling: only SIGHUP looks again
	f.good = f.remote.commit("main", "good", f.goodFiles)
	other := f.remote.commit("other", "other branch", routeFiles(f.bind, f.one, f.two, "one"))
	f.remote.start()
	n := startNode(t, f.admin, "--config", f.config)
	askUntil(t, f.bind, "one")

	// 1. The config unchanged: a SIGHUP re-fetches (a push without a webhook).
	pushed := f.remote.commit("main", "to two", routeFiles(f.bind, f.one, f.two, "two"))
	n.cmd.Process.Signal(syscall.SIGHUP)
	askUntil(t, f.bind, "two")
	n.waitStatus("the pushed commit live", func(s nodeStatus) bool { return s.Live != nil && s.Live.Commit == pushed })
	n.waitLog(`"msg":"SIGHUP: node config reloaded; re-fetching","config":"` + f.config + `","appliedLive":[],"needsRestart":[]`)
	if s, _ := n.status(); !strings.HasPrefix(s.LastAttempt.Trigger, "manual: SIGHUP") {
		t.Errorf("last attempt trigger %q", s.LastAttempt.Trigger)
	}

	// 2. Another branch and another admin address: both applied live.
	admin2 := testkit.QuietPort(t)
	f.writeConfig(t, "other", admin2, "@every 1h")
	n.cmd.Process.Signal(syscall.SIGHUP)
	askUntil(t, f.bind, "one")
	n.admin = admin2
	n.waitStatus("the other branch live, on the new admin address", func(s nodeStatus) bool { return s.Live != nil && s.Live.Commit == other })
	n.waitLog(`"appliedLive":["source","admin"],"needsRestart":[]`)
	if c, err := net.DialTimeout("tcp", f.admin, time.Second); err == nil {
		c.Close()
		t.Errorf("the old admin address %s still answers", f.admin)
	}

	// 3. A config that does not load: logged, the running one kept.
	testkit.WriteFile(t, f.config, "node: lb-0\nsource: {url: [\n")
	n.cmd.Process.Signal(syscall.SIGHUP)
	n.waitLog(`"level":"ERROR","msg":"SIGHUP: the node config does not load; keeping the running config","config":"` + f.config + `"`)
	askUntil(t, f.bind, "one")
	n.alive()

	// 4. A change that needs a restart is said, and waits for it.
	f.writeConfig(t, "other", admin2, "@every 1h")
	text := strings.Replace(readFileString(t, f.config), "node: lb-0", "node: lb-9", 1)
	testkit.WriteFile(t, f.config, text)
	n.cmd.Process.Signal(syscall.SIGHUP)
	n.waitLog(`"level":"WARN","msg":"SIGHUP: node config reloaded; some changes need a restart (systemctl restart gitedge)","config":"` + f.config + `","appliedLive":[],"needsRestart":["node"]`)
	if s, _ := n.status(); s.Node != "lb-0" {
		t.Errorf("the node's name changed without a restart: %q", s.Node)
	}
	for _, want := range []string{"SIGHUP: node config reloaded; re-fetching", "SIGHUP: the node config does not load", "SIGHUP: node config reloaded; some changes need a restart"} {
		t.Logf("log: %s", n.logLine(want))
	}

	// SIGTERM: a clean stop, listeners drained and closed.
	if code := n.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	if !strings.Contains(n.logs.String(), `"msg":"gitedge stopped"`) {
		t.Errorf("no clean stop logged:\n%s", n.logs)
	}
	if c, err := net.DialTimeout("tcp", f.bind, time.Second); err == nil {
		c.Close()
		t.Error("the listener still accepts after SIGTERM")
	}
}

// TestRunSIGINT stops as SIGTERM does.
func TestRunSIGINT(t *testing.T) {
	f := newFleetNode(t)
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	n := startNode(t, f.admin, "--config", f.config)
	askUntil(t, f.bind, "one")
	n.waitStatus("live", func(s nodeStatus) bool { return s.Conditions["state"].Status == reconcile.CondReady })
	if code := n.stop(syscall.SIGINT); code != 0 || !strings.Contains(n.logs.String(), `"msg":"stopping: draining connections"`) {
		t.Fatalf("SIGINT: exit %d\n%s", code, n.logs)
	}
}
