package main

// Helpers for tests that run the built `gitedge run` against a real git
// daemon, as a node is deployed.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// gitedgeBinary builds the command once per test run.
func gitedgeBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binErr = os.MkdirTemp("", "gitedge-bin-"); binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "gitedge")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

const gitDaemonBin = "/usr/lib/git-core/git-daemon"

// gitRemote is a bare repository served by a real git daemon, and a work
// tree that commits and pushes to it.
type gitRemote struct {
	t      *testing.T
	root   string
	work   string
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
	logs   *testkit.SyncBuffer
}

func newGitRemote(t *testing.T) *gitRemote {
	t.Helper()
	if _, err := os.Stat(gitDaemonBin); err != nil {
		t.Fatalf("git daemon is required (make deps installs git): %v", err)
	}
	root := t.TempDir()
	g := &gitRemote{t: t, root: root, work: filepath.Join(root, "work"), addr: testkit.QuietPort(t)}
	gitCmd(t, root, "init", "-q", "--bare", "-b", "main", filepath.Join(root, "repo.git"))
	gitCmd(t, root, "init", "-q", "-b", "main", g.work)
	gitCmd(t, g.work, "remote", "add", "origin", filepath.Join(root, "repo.git"))
	t.Cleanup(g.stop)
	return g
}

// URL is the repository's git:// URL.
func (g *gitRemote) URL() string { return "git://" + g.addr + "/repo.git" }

// commit replaces the routes directory (edge/) with files, commits and
// pushes to branch; it returns the commit id.
func (g *gitRemote) commit(branch, msg string, files map[string]string) string {
	g.t.Helper()
	edge := filepath.Join(g.work, "edge")
	os.RemoveAll(edge)
	for name, body := range files {
		p := filepath.Join(edge, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			g.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
	gitCmd(g.t, g.work, "add", "-A")
	gitCmd(g.t, g.work, "commit", "-q", "--allow-empty", "-m", msg)
	gitCmd(g.t, g.work, "push", "-q", "-f", "origin", "HEAD:refs/heads/"+branch)
	return gitCmd(g.t, g.work, "rev-parse", "HEAD")
}

// start serves the repository on g.addr until stop.
func (g *gitRemote) start() {
	g.t.Helper()
	_, port, _ := net.SplitHostPort(g.addr)
	g.logs = &testkit.SyncBuffer{}
	g.cmd = exec.Command(gitDaemonBin, "--export-all", "--base-path="+g.root, "--port="+port,
		"--listen=127.0.0.1", "--reuseaddr", g.root)
	g.cmd.Env = []string{"HOME=" + g.root, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1"}
	g.cmd.Stdout, g.cmd.Stderr = g.logs, g.logs
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.exited = make(chan struct{})
	go func() { g.cmd.Wait(); close(g.exited) }()
	waitAccepts(g.t, g.addr, g.exited)
}

// stop kills the daemon (the server goes down).
func (g *gitRemote) stop() {
	if g.cmd == nil {
		return
	}
	g.cmd.Process.Kill()
	<-g.exited
	g.cmd = nil
}

// waitAccepts waits until addr accepts connections (bounded).
func waitAccepts(t *testing.T, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("the server for %s exited", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nothing accepts on %s", addr)
}

// routeFiles is a routes directory: one http listener on bind, backends
// one and two, and a.test routed to route.
func routeFiles(bind, one, two, route string) map[string]string {
	return map[string]string{
		"edge.yaml": fmt.Sprintf("apiVersion: gitedge/v1\nkind: Edge\nmetadata: {name: test}\nspec:\n  listeners:\n"+
			"    - {name: http, bind: %q, mode: http, defaultBackend: one, drainTimeout: 2s}\n", bind),
		"backends.yaml": fmt.Sprintf("apiVersion: gitedge/v1\nkind: Backend\nmetadata: {name: one}\nspec:\n  servers: [{name: s1, address: %q}]\n"+
			"---\napiVersion: gitedge/v1\nkind: Backend\nmetadata: {name: two}\nspec:\n  servers: [{name: s2, address: %q}]\n", one, two),
		"routes/a.yaml": fmt.Sprintf("apiVersion: gitedge/v1\nkind: Route\nmetadata: {name: a}\nspec:\n  hosts: [a.test]\n  http: {backend: %s}\n", route),
	}
}

// nodeProc is one `gitedge run` process.
type nodeProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *testkit.SyncBuffer
	admin  string
	exited chan struct{}
	code   int
}

// startNode runs the built binary with args; admin is its admin address.
func startNode(t *testing.T, admin string, args ...string) *nodeProc {
	t.Helper()
	return startNodeVia(t, admin, append([]string{gitedgeBinary(t), "run", "--no-vrrp"}, args...))
}

// startNodeVia starts argv, a gitedge command line possibly behind a
// wrapper command (setpriv), as startNode does.
func startNodeVia(t *testing.T, admin string, argv []string) *nodeProc {
	t.Helper()
	p := &nodeProc{t: t, logs: &testkit.SyncBuffer{}, admin: admin, exited: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("gitedge log:\n%s", p.logs)
		}
	})
	return p
}

// stop sends sig and waits for the exit code (bounded).
func (p *nodeProc) stop(sig syscall.Signal) int {
	p.t.Helper()
	p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return p.code
	case <-time.After(20 * time.Second):
		p.t.Fatalf("gitedge run did not stop on %v", sig)
		return -1
	}
}

// alive fails the test if the process has exited.
func (p *nodeProc) alive() {
	p.t.Helper()
	select {
	case <-p.exited:
		p.t.Fatalf("gitedge run exited (code %d)", p.code)
	default:
	}
}

// status returns the parsed /status and its raw JSON ("" when the admin
// server does not answer yet).
func (p *nodeProc) status() (nodeStatus, string) {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + p.admin + "/status")
	if err != nil {
		return nodeStatus{}, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var s nodeStatus
	if json.Unmarshal(body, &s) != nil {
		return nodeStatus{}, ""
	}
	return s, string(body)
}

// waitStatus polls /status until cond holds (bounded), and returns it.
func (p *nodeProc) waitStatus(what string, cond func(nodeStatus) bool) (nodeStatus, string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		p.alive()
		s, raw := p.status()
		if raw != "" {
			last = raw
			if cond(s) {
				return s, raw
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.t.Fatalf("waiting for %s; last /status:\n%s", what, last)
	return nodeStatus{}, ""
}

// waitLog polls the log until it holds want (bounded).
func (p *nodeProc) waitLog(want string) {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.logs.String(), want) {
		p.alive()
		if time.Now().After(deadline) {
			p.t.Fatalf("the log never said %q", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// logLine returns the first log line holding s.
func (p *nodeProc) logLine(s string) string {
	for line := range strings.Lines(p.logs.String()) {
		if strings.Contains(line, s) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}

// indentJSON makes a /status body readable in a test log.
func indentJSON(raw string) string {
	var b bytes.Buffer
	if json.Indent(&b, []byte(raw), "", "  ") != nil {
		return raw
	}
	return b.String()
}

func readFileString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
