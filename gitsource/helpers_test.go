package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gitedge/gitedge/internal/testkit"
)

// The real git servers and tools the tests drive. They must be installed
// (make deps does it); a missing one fails the test, never skips it.
const (
	gitDaemonBin   = "/usr/lib/git-core/git-daemon"
	httpBackendBin = "/usr/lib/git-core/git-http-backend"
	sshdBin        = "/usr/sbin/sshd"
)

func need(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s is required by this test and is missing (run `make deps`): %v", b, err)
		}
	}
}

// gitEnv is an environment for the git CLI isolated from the machine's
// configuration.
func gitEnv(t testing.TB) []string {
	t.Helper()
	need(t, "git")
	home := t.TempDir()
	env := []string{
		"HOME=" + home,
		"PATH=" + os.Getenv("PATH"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Route Author", "GIT_AUTHOR_EMAIL=author@example.org",
		"GIT_COMMITTER_NAME=Route Committer", "GIT_COMMITTER_EMAIL=committer@example.org",
		"GIT_TERMINAL_PROMPT=0",
	}
	if gh := os.Getenv("GNUPGHOME"); gh != "" {
		env = append(env, "GNUPGHOME="+gh)
	}
	return env
}

func run(t testing.TB, dir string, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return strings.TrimSpace(out.String())
}

// upstream is a bare repository served by the test's git servers, and a
// working clone the test commits in and pushes from with the git CLI.
type upstream struct {
	t    testing.TB
	root string // holds repo.git: the base path of the servers
	bare string
	work string
	env  []string
}

func newUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{t: t, root: t.TempDir(), env: gitEnv(t)}
	u.bare = filepath.Join(u.root, "repo.git")
	u.work = filepath.Join(t.TempDir(), "work")
	run(t, u.root, u.env, "git", "init", "-q", "--bare", "-b", "main", u.bare)
	run(t, u.root, u.env, "git", "init", "-q", "-b", "main", u.work)
	u.git("remote", "add", "origin", u.bare)
	return u
}

func (u *upstream) git(args ...string) string {
	u.t.Helper()
	return run(u.t, u.work, u.env, "git", args...)
}

// commit writes files (content "" deletes), commits with extra git
// arguments (e.g. -S<key>) and returns the new commit id.
func (u *upstream) commit(msg string, files map[string]string, extra ...string) string {
	u.t.Helper()
	for name, content := range files {
		p := filepath.Join(u.work, filepath.FromSlash(name))
		if content == "" {
			if err := os.Remove(p); err != nil {
				u.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			u.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			u.t.Fatal(err)
		}
	}
	u.git("add", "-A")
	u.git(append([]string{"commit", "-q", "--allow-empty", "-m", msg}, extra...)...)
	return u.git("rev-parse", "HEAD")
}

func (u *upstream) push(args ...string) {
	u.t.Helper()
	u.git(append([]string{"push", "-q", "origin"}, args...)...)
}

// waitListening waits until something accepts on addr or the process
// exits; bounded by testkit.Deadline.
func waitListening(t testing.TB, addr string, exited <-chan struct{}) {
	t.Helper()
	deadline := time.Now().Add(testkit.Deadline)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("server for %s exited before listening", addr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("nothing listens on %s after %s", addr, testkit.Deadline)
}

// upstreamOne is an upstream whose main holds one commit (a.yaml "one\n"),
// returned too.
func upstreamOne(t testing.TB) (*upstream, string) {
	t.Helper()
	u := newUpstream(t)
	c := u.commit("one", map[string]string{"a.yaml": "one\n"})
	u.push("main")
	return u, c
}

// primeCache fetches once with cfg and closes the source's storage, as a
// node that stops: its state directory holds the commit for a restart.
func primeCache(t testing.TB, cfg Config) *Git {
	t.Helper()
	g, _ := newSource(t, cfg)
	next(t, g)
	g.storage.Close()
	return g
}

// servedFromCache checks that rev, after a restart, is the cached commit
// c marked stale for reason, with detail in its trigger's detail; it
// returns the stale error.
func servedFromCache(t testing.TB, what string, rev Revision, c, reason, detail string) *Error {
	t.Helper()
	var stale *Error
	if rev.Commit != c || !errors.As(rev.Stale, &stale) || stale.Reason != reason || !strings.Contains(rev.Trigger.Detail, detail) {
		t.Fatalf("%s: %s %q, stale: %v", what, short(rev.Commit), rev.Trigger.Detail, rev.Stale)
	}
	return stale
}

// startProcess runs a server process until the test ends.
func startProcess(t testing.TB, addr string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = env
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() && logs.Len() > 0 {
			t.Logf("%s output:\n%s", filepath.Base(name), logs.String())
		}
	})
	waitListening(t, addr, exited)
}

// startGitDaemon serves root with git daemon and returns the URL of
// repo.git.
func startGitDaemon(t testing.TB, root string) string {
	t.Helper()
	need(t, gitDaemonBin)
	addr := testkit.QuietPort(t)
	_, port, _ := net.SplitHostPort(addr)
	startProcess(t, addr, gitEnv(t), gitDaemonBin, "--export-all", "--base-path="+root,
		"--port="+port, "--listen=127.0.0.1", "--reuseaddr", root)
	return fmt.Sprintf("git://%s/repo.git", addr)
}

// httpGit serves root with git http-backend through net/http/cgi and
// counts what it is asked.
type httpGit struct {
	URL        string // of repo.git
	addr       string
	handler    http.Handler
	srv        *http.Server
	refAds     atomic.Int64 // GET …/info/refs?service=git-upload-pack
	uploadPack atomic.Int64 // POST …/git-upload-pack (a pack negotiation)
	other      atomic.Int64
	stall      atomic.Bool // hold every request until the client gives up
	mu         sync.Mutex
	user, pass string
}

func startHTTPGit(t testing.TB, root, user, pass string) *httpGit {
	t.Helper()
	need(t, httpBackendBin)
	h := &httpGit{user: user, pass: pass}
	backend := &cgi.Handler{
		Path: httpBackendBin,
		Root: "/git",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + t.TempDir()},
	}
	h.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != h.user || p != h.pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		if h.stall.Load() {
			<-r.Context().Done()
			return
		}
		switch {
		case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs"):
			h.refAds.Add(1)
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
			h.uploadPack.Add(1)
		default:
			h.other.Add(1)
		}
		backend.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.URL = "http://" + h.addr + "/git/repo.git"
	h.serve(t, ln)
	return h
}

func (h *httpGit) serve(t testing.TB, ln net.Listener) {
	h.mu.Lock()
	defer h.mu.Unlock()
	srv := &http.Server{Handler: h.handler, ReadHeaderTimeout: 10 * time.Second}
	h.srv = srv
	done := make(chan struct{})
	go func() { srv.Serve(ln); close(done) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// down stops the server: connections are refused until up.
func (h *httpGit) down() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.srv.Close()
}

// up listens again on the same address.
func (h *httpGit) up(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", h.addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", h.addr, err)
	}
	h.serve(t, ln)
}

func (h *httpGit) counts() (refAds, packs int64) { return h.refAds.Load(), h.uploadPack.Load() }

// newSource builds a Git source with a fresh registry and fast retries.
func newSource(t testing.TB, cfg Config) (*Git, *prometheus.Registry) {
	t.Helper()
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.RetryMin = cmpDur(cfg.RetryMin, 20*time.Millisecond)
	cfg.RetryMax = cmpDur(cfg.RetryMax, 200*time.Millisecond)
	cfg.Timeout = cmpDur(cfg.Timeout, 20*time.Second)
	reg := prometheus.NewRegistry()
	g, err := New(cfg, Options{Registry: reg, Logger: testkit.Logger(t, slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	return g, reg
}

func cmpDur(a, b time.Duration) time.Duration {
	if a != 0 {
		return a
	}
	return b
}

// next calls Next with a bound, failing the test on an error.
func next(t testing.TB, s interface {
	Next(context.Context) (Revision, error)
}) Revision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return rev
}

// nextPatient is next for a first fetch over a real network server on a
// loaded machine: a transient failure (sshd dropping a connection under
// load) is retried by the source anyway, so it is skipped, bounded.
func nextPatient(t testing.TB, s interface {
	Next(context.Context) (Revision, error)
}) Revision {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		rev, err := s.Next(ctx)
		if err == nil {
			return rev
		}
		var e *Error
		if !errors.As(err, &e) || !e.Transient() || ctx.Err() != nil {
			t.Fatalf("Next: %v", err)
		}
		t.Logf("transient, the source retries: %v", err)
	}
}

// nextErr calls Next and returns its *Error, failing when there is none.
func nextErr(t testing.TB, s interface {
	Next(context.Context) (Revision, error)
}) *Error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rev, err := s.Next(ctx)
	if err == nil {
		t.Fatalf("Next: got revision %s, want an error", short(rev.Commit))
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Next: error %T %v is not a *gitsource.Error", err, err)
	}
	// The failed look still says what it looked at and why, for the
	// loop's log and /status (they used to get an empty commit and
	// trigger).
	if rev.Commit != e.Commit || rev.Trigger.Kind == "" || rev.Files != nil {
		t.Errorf("Next: with error %v, revision commit %q trigger %q files %v; want commit %q (the error's), a trigger, no files",
			err, rev.Commit, rev.Trigger.Kind, rev.Files != nil, e.Commit)
	}
	return e
}

// quiet checks that Next hands nothing over within d (the triggers it
// consumes find nothing new).
func quiet(t testing.TB, s interface {
	Next(context.Context) (Revision, error)
}, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	rev, err := s.Next(ctx)
	if err == nil {
		t.Fatalf("Next handed over %s (trigger %s %s), want nothing", short(rev.Commit), rev.Trigger.Kind, rev.Trigger.Detail)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next: %v, want nothing until the deadline", err)
	}
}

func counter(t testing.TB, c prometheus.Collector) int {
	t.Helper()
	return int(testutil.ToFloat64(c))
}

func readFS(t testing.TB, fsys fs.FS, name string) string {
	t.Helper()
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		t.Fatalf("reading %s from the revision: %v", name, err)
	}
	return string(b)
}

func TestMain(m *testing.M) {
	if os.Getenv(followerEnv) != "" {
		runFollower() // the benchmark's follower process; exits
	}
	code := m.Run()
	cleanupGPG()
	os.Exit(code)
}

// servedUpstream is an upstream with one commit of files on main, served
// by git http-backend; it returns the commit too.
func servedUpstream(t *testing.T, msg string, files map[string]string) (*upstream, *httpGit, string) {
	t.Helper()
	u := newUpstream(t)
	c := u.commit(msg, files)
	u.push("main")
	return u, startHTTPGit(t, u.root, "", ""), c
}
