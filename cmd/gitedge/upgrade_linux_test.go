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

	"golang.org/x/sys/unix"

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
	return builtBinary(t, "gitedge-"+v, "-ldflags", "-X main.version="+v)
}

// hookedBinary builds the command with the test hooks (-tags gitedgetest:
// testhooks_gitedgetest.go), which read their delays from the environment.
func hookedBinary(t *testing.T) string {
	t.Helper()
	return builtBinary(t, "gitedge-hooked", "-tags", "gitedgetest")
}

// builtBinary builds the command as name in binDir with flags, once per
// name and test run.
func builtBinary(t *testing.T, name string, flags ...string) string {
	t.Helper()
	gitedgeBinary(t) // binDir, and the build cache warm
	versionedMu.Lock()
	defer versionedMu.Unlock()
	if p, ok := versionedBins[name]; ok {
		return p
	}
	p := filepath.Join(binDir, name)
	args := append(append([]string{"build"}, flags...), "-o", p, ".")
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", name, err, out)
	}
	versionedBins[name] = p
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

// hookedExe installs the test build (hookedBinary) where an upgrade finds
// it, in a directory of its own, and returns its path.
func hookedExe(t *testing.T) string {
	t.Helper()
	needsBuild(t, "build a binary")
	exe := filepath.Join(t.TempDir(), "gitedge")
	install(t, hookedBinary(t), exe)
	return exe
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
func (n *upgradedNode) logLines(msg string) []map[string]any { return logLinesIn(n.log, msg) }

// waitLogLines waits (bounded) until the log holds count lines with msg.
func (n *upgradedNode) waitLogLines(msg string, count int) []map[string]any {
	n.t.Helper()
	return waitLogLinesIn(n.t, n.log, msg, count)
}

// logLinesIn returns the JSON log lines of file whose msg is msg.
func logLinesIn(file, msg string) []map[string]any {
	b, _ := os.ReadFile(file)
	var out []map[string]any
	for line := range strings.Lines(string(b)) {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// waitLogLinesIn waits (bounded) until file holds count JSON log lines
// with msg.
func waitLogLinesIn(t *testing.T, file, msg string, count int) []map[string]any {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		if l := logLinesIn(file, msg); len(l) >= count {
			return l
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log never said %q %d times", msg, count)
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
	old := n.signalUpgrade()
	return n.upgraded(nth, old)
}

// signalUpgrade sends SIGUSR2 to the process serving now, and returns its
// pid.
func (n *upgradedNode) signalUpgrade() (old int) {
	n.t.Helper()
	n.mu.Lock()
	old = n.pid
	n.mu.Unlock()
	if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
		n.t.Fatal(err)
	}
	return old
}

// successor waits until the old process logged that it started the
// new process of its nth upgrade, and returns that one's pid (killed at
// the end if still there).
func (n *upgradedNode) successor(nth int) int {
	n.t.Helper()
	l := n.waitLogLines("upgrade: the new process started; waiting until it serves", nth)[nth-1]
	pid := int(l["pid"].(float64))
	n.mu.Lock()
	n.pids = append(n.pids, pid)
	n.mu.Unlock()
	return pid
}

// upgraded is upgrade once SIGUSR2 was sent to old.
func (n *upgradedNode) upgraded(nth, old int) (pid int, took time.Duration) {
	n.t.Helper()
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
	needsBuild(t, "build two binaries")
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
	needsBuild(t, "build a binary")
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
	needsBuild(t, "build two binaries")
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

// socketProbe connects to a listening socket every few milliseconds until
// stop is closed, counting the connections refused: a socket neither
// process of an upgrade has open.
type socketProbe struct {
	dials, refused atomic.Int64
	mu             sync.Mutex
	first          error
	done           chan struct{}
}

func startSocketProbe(addr string, stop <-chan struct{}) *socketProbe {
	p := &socketProbe{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			c, err := net.DialTimeout("tcp", addr, time.Second)
			p.dials.Add(1)
			if err != nil {
				p.refused.Add(1)
				p.mu.Lock()
				if p.first == nil {
					p.first = err
				}
				p.mu.Unlock()
				continue
			}
			c.Close()
		}
	}()
	return p
}

// withWebhook gives f's node a webhook on a port of its own: config
// writes the node config with that poll schedule (and rewrites it when
// called again); hook is the webhook's address.
func withWebhook(t *testing.T, f *fleetNode) (hook string, config func(poll string)) {
	t.Helper()
	hook = testkit.QuietPort(t)
	secret := filepath.Join(t.TempDir(), "webhook.secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return hook, func(poll string) {
		testkit.WriteFile(t, f.config, fmt.Sprintf("node: lb-0\nsource: {url: %q, branch: main, path: edge/, poll: %q}\n"+
			"admin: {listen: %q}\nwebhook: {listen: %q, secretFile: %s}\nstateDir: %s\n", f.remote.URL(), poll, f.admin, hook, secret, f.state))
	}
}

// listenProbe is a socketProbe of the admin or webhook socket.
type listenProbe struct {
	name, addr string
	*socketProbe
}

// probeListenSockets probes the admin and webhook sockets until stop is
// closed.
func probeListenSockets(admin, hook string, stop <-chan struct{}) []listenProbe {
	var out []listenProbe
	for _, s := range [][2]string{{"admin", admin}, {"webhook", hook}} {
		out = append(out, listenProbe{s[0], s[1], startSocketProbe(s[1], stop)})
	}
	return out
}

// checkListenSockets says, per socket, whether a connection was refused
// across what the probes ran over, whether the new process closed it
// (closed: its log lines of closed sockets), and whether it still
// accepts.
func checkListenSockets(t *testing.T, probes []listenProbe, closed []map[string]any, what string) {
	t.Helper()
	for _, p := range probes {
		t.Run(p.name, func(t *testing.T) {
			<-p.done
			if p.refused.Load() > 0 || p.dials.Load() == 0 {
				t.Errorf("%s %s: %d of %d connections refused across %s; the first: %v", p.name, p.addr, p.refused.Load(), p.dials.Load(), what, p.first)
			}
			for _, l := range closed {
				if l["socket"] == keyListen+p.addr {
					t.Errorf("the new process closed the %s socket: %v", p.name, l)
				}
			}
			c, err := net.DialTimeout("tcp", p.addr, time.Second)
			if err != nil {
				t.Fatalf("%s %s after %s: %v", p.name, p.addr, what, err)
			}
			c.Close()
		})
	}
}

// TestRunUpgradeKeepsListenSockets: the new process of an upgrade takes the
// admin and webhook sockets it inherits before it reports ready, however
// late their tasks get to them (a test hook holds them back 2s), so it
// never closes them as "not in the running config" and neither refuses a
// connection across the upgrade.
func TestRunUpgradeKeepsListenSockets(t *testing.T) {
	exe := hookedExe(t)
	f := newFleetNode(t)
	hook, config := withWebhook(t, f)
	config("@every 1s")
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	const delay = 2 * time.Second
	n := startUpgradedNode(t, exe, f.admin, []string{"GITEDGE_TEST_SUCCESSOR_LISTEN_DELAY=" + delay.String()},
		"run", "--no-vrrp", "--config", f.config)
	n.waitLogLines("ready", 1)
	askUntil(t, f.bind, "one")

	stop := make(chan struct{})
	probes := probeListenSockets(f.admin, hook, stop)
	pid, took := n.upgrade(1)
	t.Logf("SIGUSR2 to the new process ready: %v", took)
	// The new process has listened by then, whichever way it got there.
	time.Sleep(delay + time.Second)
	close(stop)
	if processGone(pid) {
		t.Fatalf("the new process %d exited", pid)
	}
	askUntil(t, f.bind, "one")
	checkListenSockets(t, probes, n.logLines("an inherited socket is not in the running config: closed"), "the upgrade")
}

// heldServer is a backend whose /slow requests wait until release is
// closed; arrived hears each as it comes in. Any other path answers "one".
func heldServer(t *testing.T) (addr string, arrived <-chan struct{}, release chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	in, rel := make(chan struct{}, 16), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			io.WriteString(w, "one")
			return
		}
		in <- struct{}{}
		select {
		case <-rel:
			io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), in, rel
}

// waitStopped waits (bounded) until every thread of pid is stopped
// (SIGSTOP): kill returns before they all are.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/stat")
		stopped := len(tasks) > 0
		for _, p := range tasks {
			b, err := os.ReadFile(p)
			_, rest, _ := strings.Cut(string(b), ") ")
			if err == nil && !strings.HasPrefix(rest, "T") && !strings.HasPrefix(rest, "t") {
				stopped = false
			}
		}
		if stopped {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d did not stop on SIGSTOP", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// sdPending returns the notifications received and not read yet.
func sdPending(t *testing.T, c *net.UnixConn) []sdMessage {
	t.Helper()
	var out []sdMessage
	for {
		if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		if err != nil {
			return out
		}
		m := sdMessage{lines: strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n"), pid: -1}
		scms, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, s := range scms {
			if cred, err := unix.ParseUnixCredentials(&s); err == nil {
				m.pid = cred.Pid
			}
		}
		out = append(out, m)
	}
}

// TestProxyUpgradeAbortStopsNewProcess: an upgrade aborted while the new
// process already accepts on the shared sockets (`gitedge proxy` applies
// its directory before it reports ready; a test hook keeps it from
// reporting) stops it with SIGTERM, so that a request it accepted is
// answered, not cut, and it tells systemd nothing (its STOPPING=1 would
// stop the unit); the old process keeps its sockets and, unless it is
// stopping itself, serves on.
func TestProxyUpgradeAbortStopsNewProcess(t *testing.T) {
	exe := hookedExe(t)
	const timeout = 3 * time.Second
	for _, tc := range []struct {
		name string
		env  []string
		// abort aborts the upgrade that started at start, once the old
		// process continues (it is stopped, SIGSTOP, meanwhile).
		abort  func(old int, start time.Time)
		reason string
		stops  bool // the old process exits too
	}{
		{"not ready in time", []string{"GITEDGE_TEST_UPGRADE_TIMEOUT=" + timeout.String()},
			func(_ int, start time.Time) { time.Sleep(time.Until(start.Add(timeout + 200*time.Millisecond))) },
			"the new process was not ready within " + timeout.String(), false},
		{"old process stopped", nil, func(old int, _ time.Time) { syscall.Kill(old, syscall.SIGTERM) },
			"this process is stopping", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			backend, arrived, release := heldServer(t)
			dir, bind, admin := t.TempDir(), testkit.QuietPort(t), testkit.QuietPort(t)
			writeRoutes(t, dir, bind, backend, namedServer(t, "two"), "one")
			// The new process never reports ready by itself: its admin
			// socket waits for the hook until it stops.
			sock := filepath.Join(t.TempDir(), "notify")
			sd := sdListen(t, sock)
			env := append([]string{"GITEDGE_TEST_SUCCESSOR_LISTEN_DELAY=1h", "NOTIFY_SOCKET=" + sock}, tc.env...)
			n := startUpgradedNode(t, exe, admin, env, "proxy", dir, "--metrics", admin, "--log-format", "json")
			n.waitLogLines("ready", 1)
			askUntil(t, bind, "one")

			old := n.pid
			start := time.Now()
			if err := syscall.Kill(old, syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
			l := n.waitLogLines("upgrade: the new process started; waiting until it serves", 1)[0]
			child := int(l["pid"].(float64))
			n.mu.Lock()
			n.pids = append(n.pids, child) // killed at the end if still there
			n.mu.Unlock()
			n.waitLogLines("gitedge proxy starting", 2) // the new process applied DIR: it accepts
			// With the old process stopped, only the new one accepts: the
			// request below is its.
			syscall.Kill(old, syscall.SIGSTOP)
			t.Cleanup(func() { syscall.Kill(old, syscall.SIGCONT) })
			waitStopped(t, old)
			got := make(chan string, 1)
			go func() {
				req, _ := http.NewRequest("GET", "http://"+bind+"/slow", nil)
				req.Host = "a.test"
				resp, err := (&http.Client{Timeout: testkit.Deadline, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
				if err != nil {
					got <- err.Error()
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					got <- err.Error()
					return
				}
				got <- fmt.Sprintf("%d %s", resp.StatusCode, b)
			}()
			select {
			case <-arrived:
			case <-time.After(10 * time.Second):
				syscall.Kill(old, syscall.SIGCONT)
				syscall.Kill(child, syscall.SIGQUIT) // its goroutines go to the log
				time.Sleep(time.Second)
				t.Fatal("the request never reached the backend through the new process")
			}
			tc.abort(old, start)
			syscall.Kill(old, syscall.SIGCONT)
			// The abort under way, the request held a while longer: a new
			// process killed outright has cut it by then.
			time.Sleep(time.Second)
			close(release)
			select {
			case b := <-got:
				if b != "200 slow" {
					t.Errorf("the request the new process accepted got %q, want 200 slow", b)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("the request the new process accepted never ended")
			}

			l = n.waitLogLines("SIGUSR2: upgrade failed; this process keeps serving", 1)[0]
			t.Logf("old process log: %v", l)
			if r, _ := l["reason"].(string); !strings.Contains(r, tc.reason) || !strings.Contains(r, "the new process was stopped with SIGTERM") {
				t.Errorf("reason %q, want it to say %q and that the new process was stopped with SIGTERM", r, tc.reason)
			}
			n.waitGone(child)
			for _, m := range sdPending(t, sd) {
				if m.pid == int32(child) {
					t.Errorf("the new process told systemd %q", m.lines)
				}
			}
			if tc.stops {
				select {
				case <-n.done:
				case <-time.After(30 * time.Second):
					t.Fatal("the old process did not stop")
				}
				if code := n.first.ProcessState.ExitCode(); code != 0 {
					t.Errorf("the old process exited %d, want 0", code)
				}
				return
			}
			if processGone(old) {
				t.Fatal("the old process exited")
			}
			askUntil(t, bind, "one")
			if v := n.version(); v == "" {
				t.Error("the old process's admin server does not answer /status after the abort")
			}
		})
	}
}

// needsBuild skips t under -short, which builds no binary, but fails it
// under make test (GITEDGE_TEST_ALL), where every test must run.
func needsBuild(t *testing.T, what string) {
	t.Helper()
	if testing.Short() {
		testkit.Missing(t, "-short: the test would %s", what)
	}
}
