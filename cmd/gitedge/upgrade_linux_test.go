package main

// In-place upgrades (SIGUSR2) of real `gitedge run` processes, under load,
// with systemd's notify socket listening.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// versionedBinary builds the command with its version set to v (once per
// version and test run), as a release build does.
var (
	versionedMu   sync.Mutex
	versionedBins = map[string]string{}
)

func versionedBinary(t *testing.T, v string) string {
	t.Helper()
	gitedgeBinary(t) // binDir, and the build cache warm
	versionedMu.Lock()
	defer versionedMu.Unlock()
	if p, ok := versionedBins[v]; ok {
		return p
	}
	p := filepath.Join(binDir, "gitedge-"+v)
	if out, err := exec.Command("go", "build", "-ldflags", "-X main.version="+v, "-o", p, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", v, err, out)
	}
	versionedBins[v] = p
	return p
}

// install puts the file at src in place of dst, as a package upgrade does
// (a new inode renamed over the path; the running binary is untouched).
func install(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// upgradedNode is a `gitedge run` whose processes replace one another: the
// first is the test's child, the next ones the children of the one before.
// They all write to one log file.
type upgradedNode struct {
	t     *testing.T
	exe   string
	admin string
	log   string
	first *exec.Cmd
	done  chan struct{} // the first process was waited for
	mu    sync.Mutex
	pid   int // the process serving now
	pids  []int
}

func startUpgradedNode(t *testing.T, exe, admin string, env []string, args ...string) *upgradedNode {
	t.Helper()
	n := &upgradedNode{t: t, exe: exe, admin: admin, log: filepath.Join(t.TempDir(), "gitedge.log"), done: make(chan struct{})}
	f, err := os.OpenFile(n.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n.first = exec.Command(exe, args...)
	n.first.Env = append(os.Environ(), env...)
	// A file, not a pipe: the processes an upgrade starts write to it too,
	// and outlive the first.
	n.first.Stdout, n.first.Stderr = f, f
	if err := n.first.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { n.first.Wait(); close(n.done) }()
	n.pid = n.first.Process.Pid
	n.pids = []int{n.pid}
	t.Cleanup(func() {
		n.mu.Lock()
		pids := n.pids
		n.mu.Unlock()
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		<-n.done
		if t.Failed() {
			t.Logf("gitedge log:\n%s", n.logText())
		}
	})
	return n
}

func (n *upgradedNode) logText() string {
	b, _ := os.ReadFile(n.log)
	return string(b)
}

// logLines returns the JSON log lines whose msg is msg.
func (n *upgradedNode) logLines(msg string) []map[string]any {
	var out []map[string]any
	for line := range strings.Lines(n.logText()) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitLogLines waits (bounded) until the log holds count lines with msg.
func (n *upgradedNode) waitLogLines(msg string, count int) []map[string]any {
	n.t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if l := n.logLines(msg); len(l) >= count {
			return l
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("the log never said %q %d times", msg, count)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// status returns the version /status shows, "" when it does not answer.
func (n *upgradedNode) version() string {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + n.admin + "/status")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var s nodeStatus
	if json.NewDecoder(resp.Body).Decode(&s) != nil || s.Live == nil {
		return ""
	}
	return s.Version
}

// upgrade sends SIGUSR2 to the process serving now and waits until the
// new one serves alone (the old one has exited), returning the new pid and
// the time from the signal to the new process ready, as the old one
// measured it.
func (n *upgradedNode) upgrade(nth int) (pid int, took time.Duration) {
	n.t.Helper()
	n.mu.Lock()
	old := n.pid
	n.mu.Unlock()
	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		n.t.Fatal(err)
	}
	l := n.waitLogLines("upgrade: the new process serves; this one drains and exits", nth)[nth-1]
	pid = int(l["pid"].(float64))
	if took, _ = time.ParseDuration(l["took"].(string)); took == 0 {
		n.t.Fatalf("no duration in %v", l)
	}
	n.mu.Lock()
	n.pid = pid
	n.pids = append(n.pids, pid)
	n.mu.Unlock()
	n.waitGone(old)
	return pid, took
}

// waitGone waits (bounded) until pid has exited.
func (n *upgradedNode) waitGone(pid int) {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			// Its goroutines go to the log.
			syscall.Kill(pid, syscall.SIGQUIT)
			time.Sleep(time.Second)
			n.t.Fatalf("process %d still runs", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processGone: no such process, or a zombie (an orphan init has not reaped).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
}

// load runs keep-alive and new-connection clients against bind until stop
// is closed (bounded in count), counting requests and failures.
type upgradeLoad struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	wg         sync.WaitGroup
}

func startUpgradeLoad(bind, want string, clients, maxPerClient int, stop <-chan struct{}) *upgradeLoad {
	l := &upgradeLoad{}
	for i := range clients {
		keepAlive := i%2 == 0
		tr := &http.Transport{DisableKeepAlives: !keepAlive, MaxIdleConnsPerHost: 1}
		// A request must not fail; how long it takes on a loaded machine
		// under -race is no part of that (the e2e figures time upgrades).
		c := &http.Client{Transport: tr, Timeout: testkit.Deadline}
		l.wg.Go(func() {
			defer tr.CloseIdleConnections()
			for range maxPerClient {
				select {
				case <-stop:
					return
				default:
				}
				req, _ := http.NewRequest("GET", "http://"+bind+"/", nil)
				req.Host = "a.test"
				resp, err := c.Do(req)
				if err == nil {
					b, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					switch {
					case rerr != nil:
						err = rerr
					case resp.StatusCode != 200 || string(b) != want:
						err = fmt.Errorf("status %d, body %q", resp.StatusCode, b)
					}
				}
				if err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if len(l.errs) < 20 {
						l.errs = append(l.errs, fmt.Sprintf("keepAlive=%v: %v", keepAlive, err))
					}
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
				time.Sleep(time.Millisecond) // a client, not a flood: the machine is shared
			}
		})
	}
	return l
}

// TestRunUpgradeUnderLoad is issue 12 item 4: two in-place upgrades
// (SIGUSR2) while keep-alive and new-connection clients run for 10 s: no
// request fails, /status shows each new version, systemd hears each new
// process as the main one (MAINPID) and ready.
func TestRunUpgradeUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	v1, v2 := versionedBinary(t, "1.0.0-upgrade"), versionedBinary(t, "2.0.0-upgrade")
	exe := filepath.Join(t.TempDir(), "gitedge")
	install(t, v1, exe)

	f := newFleetNode(t)
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	sock := filepath.Join(t.TempDir(), "notify")
	sd := sdListen(t, sock)
	n := startUpgradedNode(t, exe, f.admin, []string{"NOTIFY_SOCKET=" + sock}, "run", "--no-vrrp", "--config", f.config)
	ready := sdWait(t, sd, "READY=1")
	if ready.pid != int32(n.first.Process.Pid) || !sdHas(ready, "STATUS=gitedge 1.0.0-upgrade: serving commit "+short(f.good)) {
		t.Fatalf("first READY: %+v", ready)
	}
	askUntil(t, f.bind, "one")

	stop := make(chan struct{})
	start := time.Now()
	l := startUpgradeLoad(f.bind, "one", 8, 20000, stop)
	var tooks []time.Duration
	for i, next := range []struct{ bin, version string }{{v2, "2.0.0-upgrade"}, {v1, "1.0.0-upgrade"}} {
		time.Sleep(2 * time.Second) // load before, between and after the upgrades
		install(t, next.bin, exe)
		pid, took := n.upgrade(i + 1)
		tooks = append(tooks, took)
		msg := sdWait(t, sd, "MAINPID="+strconv.Itoa(pid))
		if msg.pid != int32(pid) || !sdHas(msg, "READY=1") {
			t.Errorf("upgrade %d: the new process told systemd %+v, want MAINPID=%d and READY=1 from pid %d", i+1, msg, pid, pid)
		}
		deadline := time.Now().Add(10 * time.Second)
		for n.version() != next.version && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if v := n.version(); v != next.version {
			t.Errorf("upgrade %d: /status shows version %q, want %q", i+1, v, next.version)
		}
	}
	for time.Since(start) < 10*time.Second {
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	l.wg.Wait()
	t.Logf("upgrade under load: %d requests in %v, %d failed; SIGUSR2 to the new process ready: %v",
		l.ok.Load()+l.failed.Load(), time.Since(start).Round(time.Millisecond), l.failed.Load(), tooks)
	if l.failed.Load() != 0 || l.ok.Load() == 0 {
		t.Errorf("%d requests failed (%d served): %s", l.failed.Load(), l.ok.Load(), strings.Join(l.errs, "\n"))
	}
	if len(n.logLines("SIGUSR2: upgrade failed; this process keeps serving")) > 0 {
		t.Error("an upgrade failed")
	}
	// SIGTERM to the process serving now: a clean stop, STOPPING=1.
	syscall.Kill(n.pid, syscall.SIGTERM)
	if msg := sdWait(t, sd, "STOPPING=1"); msg.pid != int32(n.pid) {
		t.Errorf("STOPPING=1 from pid %d, want %d", msg.pid, n.pid)
	}
	n.waitGone(n.pid)
}

// TestRunUpgradeRefused is issue 12 item 4's failure side: a new binary
// that cannot start, exits at once, or cannot serve leaves the old
// process serving, which logs why; a good upgrade afterwards works.
func TestRunUpgradeRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	v1, v2 := versionedBinary(t, "1.0.0-upgrade"), versionedBinary(t, "2.0.0-upgrade")
	dir := t.TempDir()
	exe := filepath.Join(dir, "gitedge")
	install(t, v1, exe)
	f := newFleetNode(t)
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	n := startUpgradedNode(t, exe, f.admin, nil, "run", "--no-vrrp", "--config", f.config)
	n.waitLogLines("ready", 1)
	askUntil(t, f.bind, "one")

	broken := filepath.Join(dir, "broken.sh")
	testkit.WriteFile(t, broken, "#!/bin/sh\necho 'broken build: missing library' >&2\nexit 1\n")
	notExec := filepath.Join(dir, "text")
	testkit.WriteFile(t, notExec, "not a program\n")
	failures := 0
	for _, tc := range []struct {
		name    string
		prepare func()
		reason  string
	}{
		{"exits 1", func() { install(t, broken, exe) }, "the new process exited before it was ready (exit status 1)"},
		{"not executable", func() {
			install(t, notExec, exe)
			os.Chmod(exe, 0o644)
		}, "permission denied"},
		{"refuses the node config", func() {
			// The real binary; the node config it reads at start is broken.
			install(t, v2, exe)
			testkit.WriteFile(t, f.config, "node: lb-0\nsource: {url: [\n")
		}, "the new process refused to take over: node config " + f.config + ":2: not valid YAML"},
		{"serves nothing", func() {
			// The node config is fixed, but the state directory is lost (no
			// record of the last applied commit, no git cache) and the git
			// server is down: the new process has nothing to serve.
			f.writeConfig(t, "main", f.admin, "@every 1s")
			os.RemoveAll(f.state)
			f.remote.stop()
		}, "the new process refused to take over: the new process serves nothing: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.prepare()
			syscall.Kill(n.pid, syscall.SIGUSR2)
			failures++
			l := n.waitLogLines("SIGUSR2: upgrade failed; this process keeps serving", failures)[failures-1]
			if r, _ := l["reason"].(string); !strings.Contains(r, tc.reason) {
				t.Errorf("reason %q, want it to say %q", r, tc.reason)
			}
			t.Logf("old process log: %v", l)
			if processGone(n.pid) {
				t.Fatal("the old process exited")
			}
			askUntil(t, f.bind, "one")
			if v := n.version(); v != "1.0.0-upgrade" {
				t.Errorf("version %q after a failed upgrade", v)
			}
		})
	}
	// A good binary afterwards, the git server back: the upgrade goes
	// through.
	f.remote.start()
	if _, took := n.upgrade(1); took <= 0 {
		t.Error("no upgrade time")
	}
	askUntil(t, f.bind, "one")
	deadline := time.Now().Add(10 * time.Second)
	for n.version() != "2.0.0-upgrade" && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if v := n.version(); v != "2.0.0-upgrade" {
		t.Errorf("/status version %q after the good upgrade", v)
	}
}

// sdWait reads notifications until one holds line (bounded).
func sdWait(t *testing.T, c *net.UnixConn, line string) sdMessage {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		m := sdRecv(t, c)
		if sdHas(m, line) {
			return m
		}
		seen = append(seen, strings.Join(m.lines, "|"))
	}
	t.Fatalf("no notification with %q; got %q", line, seen)
	return sdMessage{}
}

func sdHas(m sdMessage, prefix string) bool {
	for _, l := range m.lines {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// TestRunSDNotify is the unit's Type=notify as systemd hears it: READY=1
// with the live commit in STATUS=, RELOADING=1 (with MONOTONIC_USEC) and
// READY=1 around a SIGHUP, STOPPING=1 on SIGTERM. (MAINPID on an upgrade:
// TestRunUpgradeUnderLoad.)
func TestRunSDNotify(t *testing.T) {
	f := newFleetNode(t)
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	sock := filepath.Join(t.TempDir(), "notify")
	sd := sdListen(t, sock)
	n := startUpgradedNode(t, gitedgeBinary(t), f.admin, []string{"NOTIFY_SOCKET=" + sock}, "run", "--no-vrrp", "--config", f.config)
	pid := int32(n.first.Process.Pid)
	m := sdWait(t, sd, "READY=1")
	if m.pid != pid || !sdHas(m, "STATUS=gitedge dev: serving commit "+short(f.good)) {
		t.Fatalf("READY: %+v", m)
	}
	askUntil(t, f.bind, "one") // ready means serving

	syscall.Kill(n.pid, syscall.SIGHUP)
	m = sdWait(t, sd, "RELOADING=1")
	if !sdHas(m, "MONOTONIC_USEC=") || m.pid != pid {
		t.Errorf("RELOADING: %+v", m)
	}
	if m = sdWait(t, sd, "READY=1"); !sdHas(m, "STATUS=gitedge dev: serving commit ") {
		t.Errorf("READY after the reload: %+v", m)
	}

	syscall.Kill(n.pid, syscall.SIGTERM)
	if m = sdWait(t, sd, "STOPPING=1"); m.pid != pid {
		t.Errorf("STOPPING: %+v", m)
	}
	n.waitGone(n.pid)
}

// TestRunSDNotifyNothingToServe: a first start with no valid commit (the
// branch holds a refused one, nothing recorded) is READY=1 all the same, so
// that systemd does not restart it in a loop, with STATUS= saying nothing
// serves and why; /readyz stays 503.
func TestRunSDNotifyNothingToServe(t *testing.T) {
	f := newFleetNode(t)
	f.bad = f.remote.commit("main", "dangling backend", f.badFiles())
	f.remote.start()
	sock := filepath.Join(t.TempDir(), "notify")
	sd := sdListen(t, sock)
	n := startUpgradedNode(t, gitedgeBinary(t), f.admin, []string{"NOTIFY_SOCKET=" + sock}, "run", "--no-vrrp", "--config", f.config)
	m := sdWait(t, sd, "READY=1")
	if !sdHas(m, "STATUS=gitedge dev: nothing serves yet: ") || !strings.Contains(strings.Join(m.lines, "\n"), `no Backend named "nope"`) {
		t.Fatalf("READY: %q", m.lines)
	}
	resp, err := http.Get("http://" + n.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz: %d, want 503", resp.StatusCode)
	}
}

// TestProxyUpgrade: `gitedge proxy` upgrades in place on SIGUSR2 as
// `gitedge run` does.
func TestProxyUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("builds two binaries")
	}
	v1, v2 := versionedBinary(t, "1.0.0-upgrade"), versionedBinary(t, "2.0.0-upgrade")
	exe := filepath.Join(t.TempDir(), "gitedge")
	install(t, v1, exe)
	dir, bind, admin := t.TempDir(), testkit.QuietPort(t), testkit.QuietPort(t)
	writeRoutes(t, dir, bind, namedServer(t, "one"), namedServer(t, "two"), "one")
	n := startUpgradedNode(t, exe, admin, nil, "proxy", dir, "--metrics", admin, "--log-format", "json")
	n.waitLogLines("ready", 1)
	askUntil(t, bind, "one")
	install(t, v2, exe)
	n.upgrade(1)
	askUntil(t, bind, "one")
	if v := n.version(); v != "2.0.0-upgrade" {
		t.Errorf("/status version %q after the upgrade", v)
	}
}
