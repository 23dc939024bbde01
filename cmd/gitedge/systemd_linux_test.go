package main

// An in-place upgrade, its abort, a reload and a stop under a real
// systemd, with the service lines the package ships: the other upgrade
// tests stand in for systemd with a notify socket of their own, which
// cannot tell whether systemd accepts what it hears.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// systemdBinary is where Debian puts the service manager.
const systemdBinary = "/lib/systemd/systemd"

// userManager is a systemd user manager run for one test. There is no
// systemd as PID 1 here (nor in CI), and a manager refuses to start
// unless the machine was booted with it (/run/systemd/system exists): it
// runs in a mount namespace of its own, on a tmpfs /run that says so.
// It runs in cgroups of its own too (testCgroups), since a manager moves
// every process of its cgroup into an init.scope it makes there: in the
// test's, that would be the test's and, at the root, the machine's. Its
// units are files in its runtime directory; systemctl reaches it there
// (XDG_RUNTIME_DIR).
type userManager struct {
	t       *testing.T
	dir     string // XDG_RUNTIME_DIR
	cmd     *exec.Cmd
	cgroups []string
}

func startUserManager(t *testing.T) *userManager {
	t.Helper()
	if os.Geteuid() != 0 {
		testkit.Missing(t, "root, to give the systemd user manager a mount namespace")
	}
	if _, err := os.Stat(systemdBinary); err != nil {
		testkit.Missing(t, "systemd (%s): apt-get install systemd", systemdBinary)
	}
	for _, b := range []string{"unshare", "systemctl"} {
		if _, err := exec.LookPath(b); err != nil {
			testkit.Missing(t, "%s (util-linux, systemd)", b)
		}
	}
	if out, err := exec.Command("unshare", "-m", "--propagation", "private", "true").CombinedOutput(); err != nil {
		testkit.Missing(t, "a mount namespace (unshare -m: %v %s)", err, out)
	}
	m := &userManager{t: t, dir: t.TempDir()}
	m.cgroups = testCgroups(t)
	if err := os.Chmod(m.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	// The manager starts this target alone, not default.target and the
	// sockets it pulls in.
	m.writeUnit("ge-test.target", "[Unit]\nDescription=gitedge test\n")
	log, err := os.Create(filepath.Join(m.dir, "manager.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	m.cmd = exec.Command("unshare", append([]string{"-m", "--propagation", "private", "sh", "-c",
		`sd=$1; shift; for d; do echo $$ > "$d/cgroup.procs" || exit 1; done; ` +
			`mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/system && exec "$sd" --user --unit=ge-test.target`,
		"sh", systemdBinary}, m.cgroups...)...)
	m.cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+m.dir)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	// Should the test binary die (a -timeout), so does the manager.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.stop)
	deadline := time.Now().Add(testkit.Deadline)
	for {
		out, err := m.systemctl("show", "-p", "SystemState")
		if err == nil && strings.TrimSpace(out) == "SystemState=running" {
			return m
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("the systemd user manager is not running: %v %s; its log: %s", err, out, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (m *userManager) writeUnit(name, body string) {
	m.t.Helper()
	dir := filepath.Join(m.dir, "systemd", "user")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		m.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

// systemctl runs `systemctl --user args` against this manager.
func (m *userManager) systemctl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testkit.Deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, "systemctl", append([]string{"--user"}, args...)...)
	cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+m.dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// must is systemctl, failing the test on an error.
func (m *userManager) must(args ...string) {
	m.t.Helper()
	if out, err := m.systemctl(args...); err != nil {
		m.t.Fatalf("systemctl --user %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// state is the unit's main process and states, as systemd has them.
func (m *userManager) state(unit string) (mainPID int, active string) {
	m.t.Helper()
	out, err := m.systemctl("show", "-p", "MainPID", "-p", "ActiveState", "-p", "SubState", unit)
	if err != nil {
		m.t.Fatalf("systemctl show %s: %v %s", unit, err, out)
	}
	var sub string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		k, v, _ := strings.Cut(l, "=")
		switch k {
		case "MainPID":
			mainPID, _ = strconv.Atoi(v)
		case "ActiveState":
			active = v
		case "SubState":
			sub = v
		}
	}
	return mainPID, active + "/" + sub
}

// stop stops the test's units, then the manager (testCgroups' cleanup,
// which runs after, kills what is left, a unit still draining).
func (m *userManager) stop() {
	m.systemctl("stop", "ge-*.service")
	m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(testkit.Deadline):
		m.cmd.Process.Kill()
		<-done
	}
}

// testCgroups makes a cgroup of its own under the test's in each cgroup
// hierarchy mounted (a cgroup2 one, or each v1 controller's and
// name=systemd's), and returns their directories. The test's end kills
// what is left in them and removes them.
func testCgroups(t *testing.T) []string {
	t.Helper()
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("gitedge-test-%d", os.Getpid())
	var dirs []string
	for _, l := range strings.Split(strings.TrimSpace(string(self)), "\n") {
		// hierarchy-ID:controllers:path; controllers empty for cgroup2.
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		ctrls, path := parts[1], parts[2]
		for _, ml := range strings.Split(string(mounts), "\n") {
			// ID parent major:minor root mountpoint options - fstype source super
			pre, post, ok := strings.Cut(ml, " - ")
			f, g := strings.Fields(pre), strings.Fields(post)
			if !ok || len(f) < 5 || len(g) < 3 {
				continue
			}
			if ctrls == "" && g[0] != "cgroup2" {
				continue
			}
			if ctrls != "" && (g[0] != "cgroup" || !sameControllers(ctrls, g[2])) {
				continue
			}
			rel, ok := strings.CutPrefix(path, f[3])
			if !ok {
				continue // the mount shows another part of the hierarchy
			}
			dir := filepath.Join(f[4], rel, name)
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatalf("a cgroup for the systemd user manager: %v", err)
			}
			t.Cleanup(func() { removeCgroup(t, dir) })
			if slices.Contains(strings.Split(ctrls, ","), "cpuset") {
				// A v1 cpuset takes no process until it has CPUs and
				// memory nodes: its parent's.
				for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
					b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
					if err == nil {
						err = os.WriteFile(filepath.Join(dir, f), b, 0o644)
					}
					if err != nil {
						t.Fatalf("a cgroup for the systemd user manager: %v", err)
					}
				}
			}
			dirs = append(dirs, dir)
			break
		}
	}
	if len(dirs) == 0 {
		testkit.Missing(t, "a cgroup hierarchy mounted (/sys/fs/cgroup) for the systemd user manager")
	}
	return dirs
}

// sameControllers reports whether a v1 mount's super options name every
// controller of ctrls ("cpu,cpuacct", "name=systemd").
func sameControllers(ctrls, opts string) bool {
	have := strings.Split(opts, ",")
	for _, c := range strings.Split(ctrls, ",") {
		if !slices.Contains(have, c) {
			return false
		}
	}
	return true
}

// removeCgroup kills what is left in dir and below, then removes the
// cgroups, deepest first.
func removeCgroup(t *testing.T, dir string) {
	var subs []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			subs = append(subs, p)
		}
		return nil
	})
	for _, d := range subs {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				t.Logf("killing process %d left in %s", pid, d)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for i := len(subs) - 1; i >= 0; i-- {
		var err error
		for range 100 { // a killed process leaves its cgroup a moment later
			if err = os.Remove(subs[i]); err == nil || os.IsNotExist(err) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err != nil && !os.IsNotExist(err) {
			t.Errorf("removing the test's cgroup: %v", err)
		}
	}
}

// shippedService is the [Service] lines of packaging/gitedge.service that
// drive a start, a reload, an upgrade and a stop: the test runs the unit's
// own way of doing each. Its sandboxing (User=, Protect*=) needs the
// system manager and is left out.
func shippedService(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "packaging", "gitedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	keys := []string{"Type", "NotifyAccess", "ExecReload", "ExecStop", "KillMode"}
	for _, l := range strings.Split(string(b), "\n") {
		if k, _, ok := strings.Cut(l, "="); ok && slices.Contains(keys, k) {
			lines = append(lines, l)
		}
	}
	if len(lines) != len(keys) {
		t.Fatalf("packaging/gitedge.service: found %q, want one line each of %v", lines, keys)
	}
	return lines
}

// TestUpgradeUnderSystemd: `gitedge proxy` as a Type=notify unit of a
// real systemd (Debian 12's 252), with the shipped unit's lines. Started,
// it is active once ready; an upgrade (`systemctl kill -s USR2
// --kill-whom=main`) makes the new process the unit's main one and the
// old one exits; `systemctl reload` reaches the serving one; an upgrade whose
// new process never takes over (a test hook) leaves the old process the
// main one, the unit active: systemd took MAINPID= back from it, which
// only a real systemd can say; `systemctl stop` ends it. No request
// fails throughout.
func TestUpgradeUnderSystemd(t *testing.T) {
	m := startUserManager(t)
	exe := hookedExe(t)
	service := shippedService(t)
	for _, tc := range []struct {
		name string
		env  string
		// takes: the new process takes over; else the old one keeps serving.
		takes bool
	}{
		{"upgrade", "", true},
		{"new process never takes over", "GITEDGE_TEST_SUCCESSOR_MAIN_DELAY=1h", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m.t = t
			unit := "ge-" + strings.ReplaceAll(tc.name, " ", "-") + ".service"
			dir, bind, admin := t.TempDir(), testkit.QuietPort(t), testkit.QuietPort(t)
			one := namedServer(t, "one")
			writeRoutes(t, dir, bind, one, namedServer(t, "two"), "one")
			log := filepath.Join(t.TempDir(), "gitedge.log")
			body := "[Unit]\nDescription=gitedge under test\n[Service]\n" + strings.Join(service, "\n") + "\n" +
				fmt.Sprintf("ExecStart=%s proxy %s --watch=false --metrics %s --log-format json\n", exe, dir, admin) +
				fmt.Sprintf("StandardOutput=append:%s\nStandardError=append:%s\n", log, log) +
				"TimeoutStartSec=60s\nTimeoutStopSec=60s\n"
			if tc.env != "" {
				body += "Environment=" + tc.env + "\n"
			}
			m.writeUnit(unit, body)
			m.must("daemon-reload")
			m.must("start", unit) // returns once READY=1 came
			old, st := m.state(unit)
			if st != "active/running" || old == 0 {
				t.Fatalf("after start: %s, main process %d", st, old)
			}
			askUntil(t, bind, "one")

			stop := make(chan struct{})
			l := startUpgradeLoad(bind, "one", 4, 20000, stop)
			stopLoad := sync.OnceFunc(func() { close(stop); l.wg.Wait() })
			t.Cleanup(stopLoad) // also when the test fails first
			m.must("kill", "-s", "USR2", "--kill-whom=main", unit)
			child := int(waitLogLinesIn(t, log, "upgrade: the new process started; waiting until it serves", 1)[0]["pid"].(float64))
			// What systemd has as the main process, until the upgrade's
			// outcome is known.
			seen := []int{old}
			outcome := "upgrade: the new process serves; this one drains and exits"
			if !tc.takes {
				outcome = "SIGUSR2: upgrade failed; this process keeps serving"
			}
			deadline := time.Now().Add(2 * testkit.Deadline)
			for {
				pid, _ := m.state(unit)
				if pid != seen[len(seen)-1] {
					seen = append(seen, pid)
				}
				if len(logLinesIn(log, outcome)) > 0 || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			waitLogLinesIn(t, log, outcome, 1)
			gone := old
			if !tc.takes {
				gone = child
			}
			for deadline := time.Now().Add(2 * testkit.Deadline); !processGone(gone) && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
			if !processGone(gone) {
				t.Errorf("process %d still runs", gone)
			}
			mainPID, st := m.state(unit)
			t.Logf("main process as systemd had it: %v; now %d, %s", seen, mainPID, st)
			want := child
			if !tc.takes {
				want = old
				// The new process claimed the unit once told to go, and
				// the old one took it back.
				if !slices.Contains(seen, child) {
					t.Errorf("systemd never had the new process %d as the main one (%v): the abort was not tested", child, seen)
				}
			}
			if mainPID != want || st != "active/running" {
				t.Fatalf("after the upgrade: main process %d, %s; want %d, active/running", mainPID, st, want)
			}

			stopLoad()
			if l.failed.Load() != 0 || l.ok.Load() == 0 {
				t.Errorf("%d requests failed (%d served): %s", l.failed.Load(), l.ok.Load(), strings.Join(l.errs, "\n"))
			}

			// The files change, and only a reload applies them
			// (--watch=false): it reaches the process that serves.
			writeRoutes(t, dir, bind, one, namedServer(t, "two"), "two")
			m.must("reload", unit)
			askUntil(t, bind, "two")
			if pid, st := m.state(unit); pid != want || st != "active/running" {
				t.Errorf("after a reload: main process %d, %s; want %d, active/running", pid, st, want)
			}

			m.must("stop", unit)
			if pid, st := m.state(unit); pid != 0 || st != "inactive/dead" {
				t.Errorf("after stop: main process %d, %s; want none, inactive/dead", pid, st)
			}
			if !processGone(want) {
				t.Errorf("process %d still runs after stop", want)
			}
		})
	}
}
