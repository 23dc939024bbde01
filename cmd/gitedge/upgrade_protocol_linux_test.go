package main

// The control protocol of an in-place upgrade (upgrade.go): an abort at
// the instant the new process is ready, both protocols either way, and a
// reload of the new process before it is ready.

import (
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// sdFrom returns the messages of msgs that pid sent.
func sdFrom(msgs []sdMessage, pid int) []sdMessage {
	var out []sdMessage
	for _, m := range msgs {
		if m.pid == int32(pid) {
			out = append(out, m)
		}
	}
	return out
}

// startNotifiedNode runs exe as `gitedge run` for f, serving its good
// commit, with env and a notify socket of its own (sd), and waits until
// the first process is ready (READY=1 from it) and serves.
func startNotifiedNode(t *testing.T, exe string, f *fleetNode, env ...string) (*upgradedNode, *net.UnixConn) {
	t.Helper()
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	sock := filepath.Join(t.TempDir(), "notify")
	sd := sdListen(t, sock)
	n := startUpgradedNode(t, exe, f.admin, append([]string{"NOTIFY_SOCKET=" + sock}, env...),
		"run", "--no-vrrp", "--config", f.config)
	if m := sdWait(t, sd, "READY=1"); m.pid != int32(n.first.Process.Pid) {
		t.Fatalf("first READY: %+v", m)
	}
	askUntil(t, f.bind, "one")
	return n, sd
}

// oldServesOn checks that the old process of an upgrade given up still
// runs and serves: the load l saw no failure, requests and /status are
// answered.
func oldServesOn(t *testing.T, n *upgradedNode, f *fleetNode, l *upgradeLoad) {
	t.Helper()
	if processGone(n.first.Process.Pid) {
		t.Fatal("the old process exited")
	}
	if l.failed.Load() != 0 || l.ok.Load() == 0 {
		t.Errorf("%d requests failed (%d served): %s", l.failed.Load(), l.ok.Load(), strings.Join(l.errs, "\n"))
	}
	askUntil(t, f.bind, "one")
	if v := n.version(); v == "" {
		t.Error("the old process's admin server does not answer /status after the abort")
	}
}

// TestRunUpgradeAbortedAtReady: the old process gives the upgrade up at
// the very instant it reads the new process's ready line (a test hook:
// as if its upgradeTimeout fired then). The new process must not have
// told systemd it is the main process (MAINPID=): the old one stops it,
// and systemd, seeing its main process exit, would stop the unit, the old
// process with it. The new one exits, saying why; the old one, the main
// process all along, keeps serving, requests answered throughout.
func TestRunUpgradeAbortedAtReady(t *testing.T) {
	f := newFleetNode(t)
	n, sd := startNotifiedNode(t, hookedExe(t), f, "GITEDGE_TEST_ABORT_UPGRADE_AT_READY=1")
	old := n.first.Process.Pid

	stop := make(chan struct{})
	l := startUpgradeLoad(f.bind, "one", 4, 20000, stop)
	time.Sleep(500 * time.Millisecond)
	n.signalUpgrade()
	child := n.successor(1)
	failed := n.waitLogLines("SIGUSR2: upgrade failed; this process keeps serving", 1)[0]
	t.Logf("old process log: %v", failed)
	reason, _ := failed["reason"].(string)
	if !strings.Contains(reason, "the new process was not ready within") {
		t.Errorf("reason %q, want the timeout's", reason)
	}
	n.waitGone(child)
	time.Sleep(time.Second) // load after the abort
	close(stop)
	l.wg.Wait()

	msgs := sdPending(t, sd)
	for _, m := range msgs {
		t.Logf("systemd heard from %d: %q", m.pid, m.lines)
		for _, line := range m.lines {
			if line == "MAINPID="+strconv.Itoa(child) {
				t.Errorf("systemd heard MAINPID=%d (from %d): the unit's main process was stopped by the old one", child, m.pid)
			}
		}
	}
	if from := sdFrom(msgs, child); len(from) > 0 {
		t.Errorf("the new process told systemd %+v", from)
	}
	if !slices.ContainsFunc(sdFrom(msgs, old), func(m sdMessage) bool { return sdHas(m, "MAINPID="+strconv.Itoa(old)) }) {
		t.Errorf("the old process did not claim MAINPID back after the abort")
	}
	if len(n.logLines("the old process aborted the upgrade; this process stops")) != 1 {
		t.Error("the new process did not log that the old one aborted the upgrade")
	}
	if !strings.Contains(reason, "exit status 1") {
		t.Errorf("reason %q: want the new process to exit 1", reason)
	}
	oldServesOn(t, n, f, l)
}

// TestRunUpgradeNoMainAfterGo: the old process said "go", the new one
// claimed the unit (MAINPID=) and then never said "main" (a test hook
// holds it): the old one gives the upgrade up after upgradeCommitTimeout,
// claims MAINPID back before the new one exits, and serves on; the new
// one, stopped, says nothing more to systemd (its STOPPING=1 would stop
// the unit).
func TestRunUpgradeNoMainAfterGo(t *testing.T) {
	f := newFleetNode(t)
	n, sd := startNotifiedNode(t, hookedExe(t), f, "GITEDGE_TEST_SUCCESSOR_MAIN_DELAY=1h")
	old := n.first.Process.Pid

	stop := make(chan struct{})
	l := startUpgradeLoad(f.bind, "one", 4, 20000, stop)
	n.signalUpgrade()
	child := n.successor(1)
	if m := sdWait(t, sd, "MAINPID="+strconv.Itoa(child)); m.pid != int32(child) {
		t.Fatalf("MAINPID=%d from %d", child, m.pid)
	}
	failed := n.waitLogLines("SIGUSR2: upgrade failed; this process keeps serving", 1)[0]
	t.Logf("old process log: %v", failed)
	reason, _ := failed["reason"].(string)
	if want := fmt.Sprintf("the new process did not take over within %v of being told to", upgradeCommitTimeout); !strings.Contains(reason, want) {
		t.Errorf("reason %q, want it to say %q", reason, want)
	}
	n.waitGone(child)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	l.wg.Wait()

	mainPID := ""
	for _, m := range sdPending(t, sd) {
		t.Logf("systemd heard from %d: %q", m.pid, m.lines)
		for _, line := range m.lines {
			if strings.HasPrefix(line, "MAINPID=") {
				mainPID = line
			}
		}
		if m.pid == int32(child) {
			t.Errorf("the new process told systemd %q after its claim", m.lines)
		}
	}
	if mainPID != "MAINPID="+strconv.Itoa(old) {
		t.Errorf("the last MAINPID systemd heard: %q, want the old process's, %d", mainPID, old)
	}
	oldServesOn(t, n, f, l)
}

// TestRunUpgradeProtocols: an upgrade goes through whichever control
// protocol each process speaks (a test hook plays a process of protocol
// 1: an upgrade from, or a downgrade to, a binary of an earlier version),
// the new process the unit's main one (MAINPID=, READY=1) in the end.
func TestRunUpgradeProtocols(t *testing.T) {
	exe := hookedExe(t)
	for _, tc := range []struct {
		name  string
		env   []string
		proto float64
	}{
		{"both 2", nil, 2},
		{"old process of protocol 1", []string{"GITEDGE_TEST_OLD_PROTOCOL=1"}, 1},
		{"new process of protocol 1", []string{"GITEDGE_TEST_NEW_PROTOCOL=1"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleetNode(t)
			n, sd := startNotifiedNode(t, exe, f, tc.env...)
			pid, _ := n.upgrade(1)
			if m := sdWait(t, sd, "MAINPID="+strconv.Itoa(pid)); m.pid != int32(pid) || !sdHas(m, "READY=1") {
				t.Errorf("the new process told systemd %+v, want MAINPID=%d and READY=1 from it", m, pid)
			}
			if p := n.waitLogLines("upgrade: the new process serves; this one drains and exits", 1)[0]["protocol"]; p != tc.proto {
				t.Errorf("the old process says protocol %v, want %v", p, tc.proto)
			}
			if p := n.waitLogLines("upgrade complete: this process alone runs the node", 1)[0]["protocol"]; p != tc.proto {
				t.Errorf("the new process says protocol %v, want %v", p, tc.proto)
			}
			askUntil(t, f.bind, "one")
			if v := n.version(); v == "" {
				t.Error("the new process's admin server does not answer /status")
			}
		})
	}
}

// TestRunUpgradeReloadBeforeReady: a SIGHUP to the new process of an
// upgrade before it is ready (a test hook holds it there), whose node
// config changes the source (so the admin server and the webhook are
// rebuilt), is applied at once, and on the admin and webhook sockets it
// inherited: it does not bind them again while the old process still
// holds them, which would fail and leave them closed once the old one
// exits. Neither socket refuses a connection across the upgrade.
func TestRunUpgradeReloadBeforeReady(t *testing.T) {
	exe := hookedExe(t)
	f := newFleetNode(t)
	hook, config := withWebhook(t, f)
	config("@every 1s")
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	n := startUpgradedNode(t, exe, f.admin, []string{"GITEDGE_TEST_SUCCESSOR_READY_DELAY=6s"},
		"run", "--no-vrrp", "--config", f.config)
	n.waitLogLines("ready", 1)
	askUntil(t, f.bind, "one")

	stop := make(chan struct{})
	probes := probeListenSockets(f.admin, hook, stop)
	old := n.signalUpgrade()
	child := n.successor(1)
	n.waitLogLines("test hook: holding the new process before it reports ready", 1)
	config("@every 2s")
	if err := syscall.Kill(child, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	reload := n.waitLogLines("SIGHUP: node config reloaded; re-fetching", 1)[0]
	if live := fmt.Sprint(reload["appliedLive"]); live != "[source]" {
		t.Errorf("the reload applied %s, want [source]", live)
	}
	if len(n.logLines("ready")) != 1 {
		t.Fatal("the new process was ready before its reload: the test hook held it too short a time")
	}
	pid, took := n.upgraded(1, old)
	t.Logf("SIGUSR2 to the new process ready: %v", took)
	if pid != child {
		t.Fatalf("pid %d took over, want %d", pid, child)
	}
	time.Sleep(time.Second) // the old process gone, the probes go on
	close(stop)
	for _, l := range n.logLines("a part started by a reload failed; the node runs on without it") {
		t.Errorf("the new process: %v", l)
	}
	closed := n.logLines("an inherited socket is not in the running config: closed")
	closed = append(closed, n.logLines("a socket the reloaded config no longer has: closed")...)
	checkListenSockets(t, probes, closed, "the reload and the upgrade")
	if v := n.version(); v == "" {
		t.Error("the admin server does not answer /status after the upgrade")
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + hook + "/")
	if err != nil {
		t.Fatalf("the webhook after the upgrade: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusNotFound {
		t.Errorf("the webhook after the upgrade: GET / answered %d", resp.StatusCode)
	}
}
