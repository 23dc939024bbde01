package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/reconcile"
)

// fleetNode is what the restart tests share: a git daemon serving a routes
// repository, backends one and two, and a node config.
type fleetNode struct {
	remote        *gitRemote
	bind, admin   string
	one, two      string
	config, state string
	good, bad     string // commits
	goodFiles     map[string]string
}

func newFleetNode(t *testing.T) *fleetNode {
	f := &fleetNode{remote: newGitRemote(t), bind: testkit.QuietPort(t), admin: testkit.QuietPort(t),
		one: namedServer(t, "one"), two: namedServer(t, "two")}
	dir := t.TempDir()
	f.config, f.state = filepath.Join(dir, "gitedge.yaml"), filepath.Join(dir, "state")
	f.writeConfig(t, "main", f.admin, "@every 1s")
	f.goodFiles = routeFiles(f.bind, f.one, f.two, "one")
	return f
}

func (f *fleetNode) writeConfig(t *testing.T, branch, admin, poll string) {
	testkit.WriteFile(t, f.config, fmt.Sprintf("node: lb-0\nsource: {url: %q, branch: %s, path: edge/, poll: %q}\nadmin: {listen: %q}\nstateDir: %s\n",
		f.remote.URL(), branch, poll, admin, f.state))
}

// badFiles: a route to a Backend that does not exist.
func (f *fleetNode) badFiles() map[string]string {
	return routeFiles(f.bind, f.one, f.two, "nope")
}

// TestRunRestartServesLastApplied is issue 9 defect 1 as a user meets it:
// a good commit is live, a bad one is pushed and refused, the node is
// restarted — with the git server down, then up — and must serve the good
// commit at once, before any fetch, whatever the branch tip holds.
func TestRunRestartServesLastApplied(t *testing.T) {
	f := newFleetNode(t)
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()

	n := startNode(t, f.admin, "--config", f.config)
	n.waitStatus("the good commit live", func(s nodeStatus) bool { return s.Live != nil && s.Live.Commit == f.good })
	askUntil(t, f.bind, "one")
	f.bad = f.remote.commit("main", "dangling backend", f.badFiles())
	n.waitStatus("the bad commit refused", func(s nodeStatus) bool {
		return s.LastAttempt != nil && s.LastAttempt.Commit == f.bad && s.LastAttempt.Result == reconcile.ResultInvalid
	})
	askUntil(t, f.bind, "one")
	if code := n.stop(syscall.SIGTERM); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}

	t.Run("server down", func(t *testing.T) {
		f.remote.stop()
		start := time.Now()
		n := startNode(t, f.admin, "--config", f.config)
		askUntil(t, f.bind, "one")
		t.Logf("serving %s %s after start, with the git server down", f.good[:12], time.Since(start).Round(time.Millisecond))
		s, raw := n.waitStatus("the refused tip seen again", func(s nodeStatus) bool {
			return s.LastAttempt != nil && s.LastAttempt.Trigger != reconcile.TriggerRestart
		})
		if s.Live == nil || s.Live.Commit != f.good || !s.Live.Restored || s.Conditions["state"].Status != reconcile.CondReady {
			t.Errorf("/status:\n%s", indentJSON(raw))
		}
		askUntil(t, f.bind, "one")
		t.Logf("log:\n%s\n/status:\n%s", n.logs, indentJSON(raw))
		if code := n.stop(syscall.SIGINT); code != 0 {
			t.Fatalf("SIGINT: exit %d", code)
		}
	})

	t.Run("server up, bad tip", func(t *testing.T) {
		f.remote.start()
		n := startNode(t, f.admin, "--config", f.config)
		askUntil(t, f.bind, "one")
		s, raw := n.waitStatus("the bad tip fetched and refused", func(s nodeStatus) bool {
			return s.LastAttempt != nil && s.LastAttempt.Commit == f.bad && s.LastAttempt.Result == reconcile.ResultInvalid
		})
		if s.Live == nil || s.Live.Commit != f.good || s.Conditions["config"].Status != reconcile.CondStalled ||
			!strings.Contains(s.Conditions["config"].Message, `no Backend named "nope"`) {
			t.Errorf("/status:\n%s", indentJSON(raw))
		}
		askUntil(t, f.bind, "one")
		t.Logf("log:\n%s\n/status:\n%s", n.logs, indentJSON(raw))
		// The tip fixed: it applies, and becomes the record.
		fixed := f.remote.commit("main", "fixed", routeFiles(f.bind, f.one, f.two, "two"))
		askUntil(t, f.bind, "two")
		n.waitStatus("the fix recorded", func(s nodeStatus) bool {
			return s.Live != nil && s.Live.Commit == fixed && !s.Live.Restored && strings.Contains(s.Conditions["state"].Message, fixed[:12])
		})
		if code := n.stop(syscall.SIGTERM); code != 0 {
			t.Fatalf("exit %d", code)
		}
		rec, err := reconcile.NewStateFile(f.state).Load()
		if err != nil || rec.Commit != fixed {
			t.Fatalf("record after the fix: %v, %v", rec, err)
		}
	})

	t.Run("damaged record", func(t *testing.T) {
		path := filepath.Join(f.state, reconcile.RecordFileName)
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data[:len(data)/2], 0o600); err != nil { // a crash mid-write, without the rename
			t.Fatal(err)
		}
		f.remote.stop()
		n := startNode(t, f.admin, "--config", f.config)
		// Nothing trustworthy recorded, and the cache holds the fixed tip:
		// the node serves it from the cache, and says what happened.
		askUntil(t, f.bind, "two")
		n.waitLog(`"level":"ERROR","msg":"the last applied record cannot be used; fetching instead"`)
		if line := n.logLine("the last applied record cannot be used"); !strings.Contains(line, `"error":"state record `+path+`: half-written: `) {
			t.Errorf("log line: %s", line)
		}
		t.Logf("log line: %s", n.logLine("the last applied record cannot be used"))
		s, raw := n.waitStatus("a commit recorded again", func(s nodeStatus) bool { return s.Conditions["state"].Status == reconcile.CondReady })
		t.Logf("/status:\n%s", indentJSON(raw))
		if s.Live == nil {
			t.Errorf("/status:\n%s", indentJSON(raw))
		}
		n.stop(syscall.SIGTERM)
		if _, err := reconcile.NewStateFile(f.state).Load(); err != nil {
			t.Errorf("the damaged record was not replaced: %v", err)
		}
	})
}

// TestRunFirstStartWithABadTip: nothing was ever applied and the tip is
// refused: the node stays up, says so in /status and /readyz, and applies
// the first good commit pushed.
func TestRunFirstStartWithABadTip(t *testing.T) {
	f := newFleetNode(t)
	f.bad = f.remote.commit("main", "dangling backend", f.badFiles())
	f.remote.start()
	n := startNode(t, f.admin, "--config", f.config)
	s, raw := n.waitStatus("the tip refused", func(s nodeStatus) bool { return s.LastAttempt != nil })
	if !strings.Contains(raw, `"live": null`) || s.Conditions["live"].Status != reconcile.CondStalled ||
		s.Conditions["live"].Message != "no commit applied yet: commit "+f.bad[:12]+" was refused (see config); waiting for a new commit" {
		t.Errorf("/status:\n%s", indentJSON(raw))
	}
	t.Logf("/status:\n%s", indentJSON(raw))
	resp, err := http.Get("http://" + n.admin + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body := make([]byte, 512)
	k, _ := resp.Body.Read(body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.HasPrefix(string(body[:k]), "no commit applied yet: commit ") {
		t.Errorf("/readyz: %s %q", resp.Status, body[:k])
	}
	t.Logf("/readyz: %s %s", resp.Status, body[:k])
	code, out, _ := gitedge(t, "status", "--admin", n.admin)
	if code != statusUnhealthy || !strings.Contains(out, "live commit:  none yet (no commit applied yet: commit "+f.bad[:12]) {
		t.Errorf("gitedge status: exit %d\n%s", code, out)
	}
	t.Logf("gitedge status:\n%s", out)
	if c, err := net.DialTimeout("tcp", f.bind, time.Second); err == nil {
		c.Close()
		t.Error("a listener is open with no commit applied")
	}
	f.good = f.remote.commit("main", "good", f.goodFiles)
	askUntil(t, f.bind, "one")
	n.alive()
}

// TestRunLocalDirectoryUsesTheRecord: `gitedge run --source DIR` keeps the
// same record: a broken directory at restart serves the last applied
// state.
func TestRunLocalDirectoryUsesTheRecord(t *testing.T) {
	f := newFleetNode(t)
	dir := t.TempDir()
	write := func(files map[string]string) {
		for name, body := range files {
			testkit.WriteFile(t, filepath.Join(dir, name), body)
		}
	}
	write(f.goodFiles)
	n := startNode(t, f.admin, "--config", f.config, "--source", dir)
	askUntil(t, f.bind, "one")
	n.waitStatus("the directory recorded", func(s nodeStatus) bool { return s.Conditions["state"].Status == reconcile.CondReady })
	n.stop(syscall.SIGTERM)
	write(f.badFiles())
	n = startNode(t, f.admin, "--config", f.config, "--source", dir)
	askUntil(t, f.bind, "one")
	s, raw := n.waitStatus("the broken directory refused", func(s nodeStatus) bool {
		return s.LastAttempt != nil && s.LastAttempt.Result == reconcile.ResultInvalid
	})
	if s.Live == nil || !s.Live.Restored {
		t.Errorf("/status:\n%s", indentJSON(raw))
	}
}

// TestRunFullStateDirectory is issue 10 defect 3 from the node's side: the
// state directory is a full filesystem at start; the node serves its last
// applied commit all the same, and says it cannot record a newer one.
func TestRunFullStateDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts a tmpfs: run as root (make test does)")
	}
	f := newFleetNode(t)
	if err := os.MkdirAll(f.state, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "gitedge-test-state", f.state).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", f.state).Run() })
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	n := startNode(t, f.admin, "--config", f.config)
	askUntil(t, f.bind, "one")
	n.waitStatus("recorded", func(s nodeStatus) bool { return s.Conditions["state"].Status == reconcile.CondReady })
	n.stop(syscall.SIGTERM)

	// Fill the filesystem.
	fill, err := os.Create(filepath.Join(f.state, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	block := make([]byte, 64<<10)
	for {
		if _, err := fill.Write(block); err != nil {
			break
		}
	}
	fill.Close()
	newer := f.remote.commit("main", "newer", routeFiles(f.bind, f.one, f.two, "two"))

	n = startNode(t, f.admin, "--config", f.config)
	askUntil(t, f.bind, "one") // the record, before any fetch
	// Whether the fetch of the newer commit fits or not, the node keeps
	// serving, and cannot record what it applies.
	s, raw := n.waitStatus("the fetch tried", func(s nodeStatus) bool {
		return s.LastAttempt != nil && s.LastAttempt.Trigger != reconcile.TriggerRestart
	})
	t.Logf("/status:\n%s\nlog:\n%s", indentJSON(raw), n.logs)
	if s.Live == nil {
		t.Fatalf("nothing served with a full state directory:\n%s", indentJSON(raw))
	}
	if s.Live.Commit == newer {
		askUntil(t, f.bind, "two")
		if c := s.Conditions["state"]; c.Status != reconcile.CondFailed || !strings.Contains(c.Message, "no space left on device") {
			t.Errorf("state condition %+v", c)
		}
	}
	n.alive()
}

// TestRunSourceCannotOpen: the git cache cannot be created in the state
// directory at start (here a file stands in its way; a full disk does the
// same): the node serves its last applied commit, reports why the source
// failed, and opens the source once it can.
func TestRunSourceCannotOpen(t *testing.T) {
	f := newFleetNode(t)
	f.good = f.remote.commit("main", "good", f.goodFiles)
	f.remote.start()
	n := startNode(t, f.admin, "--config", f.config)
	askUntil(t, f.bind, "one")
	n.waitStatus("recorded", func(s nodeStatus) bool { return s.Conditions["state"].Status == reconcile.CondReady })
	n.stop(syscall.SIGTERM)

	cache := filepath.Join(f.state, "gitsource")
	if err := os.RemoveAll(cache); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, cache, "in the way")
	newer := f.remote.commit("main", "newer", routeFiles(f.bind, f.one, f.two, "two"))
	n = startNode(t, f.admin, "--config", f.config)
	askUntil(t, f.bind, "one")
	s, raw := n.waitStatus("the source failure reported", func(s nodeStatus) bool { return s.Conditions["source"].Status == reconcile.CondFailed })
	if !strings.Contains(s.Conditions["source"].Message, "gitsource: state directory") || s.Live == nil || s.Live.Commit != f.good {
		t.Errorf("/status:\n%s", indentJSON(raw))
	}
	t.Logf("log: %s", n.logLine("the git source cannot be opened"))
	os.Remove(cache)
	askUntil(t, f.bind, "two")
	n.waitStatus("the newer commit live", func(s nodeStatus) bool { return s.Live != nil && s.Live.Commit == newer })
}

// TestRunNodeLocalChecks: gitedge run checks every commit against the node
// too: a listener on its admin port is refused with a located error.
func TestRunNodeLocalChecks(t *testing.T) {
	f := newFleetNode(t)
	dir := t.TempDir()
	for name, body := range routeFiles(f.admin, f.one, f.two, "one") {
		testkit.WriteFile(t, filepath.Join(dir, name), body)
	}
	n := startNode(t, f.admin, "--config", f.config, "--source", dir)
	s, raw := n.waitStatus("the commit refused", func(s nodeStatus) bool { return s.LastAttempt != nil })
	want := `edge.yaml:6: Edge "test": spec.listeners[0].bind: listener "http" binds ` + f.admin + `, which clashes with this node's admin.listen ` + f.admin + ` (node config ` + f.config + `): move one of them to another port`
	if s.LastAttempt.Result != reconcile.ResultInvalid || s.Conditions["config"].Message != want {
		t.Errorf("/status:\n%s\nwant config message %s", indentJSON(raw), want)
	}
}
