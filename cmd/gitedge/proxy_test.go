package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// namedServer answers every request with its name.
func namedServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// writeRoutes writes a routes directory: one listener, backends one and
// two, and a.test routed to route.
func writeRoutes(t *testing.T, dir, bind, one, two, route string) {
	t.Helper()
	files := map[string]string{
		"edge.yaml": fmt.Sprintf(`apiVersion: gitedge/v1
kind: Edge
metadata: {name: test}
spec:
  listeners:
    - {name: http, bind: "%s", mode: http, defaultBackend: one, drainTimeout: 5s}
`, bind),
		"backends.yaml": fmt.Sprintf(`apiVersion: gitedge/v1
kind: Backend
metadata: {name: one}
spec:
  servers: [{name: s1, address: "%s"}]
---
apiVersion: gitedge/v1
kind: Backend
metadata: {name: two}
spec:
  servers: [{name: s2, address: "%s"}]
`, one, two),
		"routes/a.yaml": fmt.Sprintf(`apiVersion: gitedge/v1
kind: Route
metadata: {name: a}
spec:
  hosts: [a.test]
  http: {backend: %s}
`, route),
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		// Write then rename, as an editor or git checkout does.
		tmp := filepath.Join(filepath.Dir(p), "."+filepath.Base(p)+".tmp")
		if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
}

// askUntil polls the proxy until a.test answers want (bounded): the only
// way to see from outside that a reload took effect.
func askUntil(t *testing.T, bind, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	last := ""
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest("GET", "http://"+bind+"/", nil)
		req.Host = "a.test"
		resp, err := (&http.Client{Timeout: time.Second}).Do(req)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = string(b)
			if last == want {
				return
			}
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("a.test answered %q, want %q", last, want)
}

// exited carries a command's exit code; closed when it has returned.
type exited struct {
	ch   chan struct{}
	code int
}

func startProxyCommand(t *testing.T, args ...string) (*testkit.SyncBuffer, context.CancelFunc, *exited) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stderr := &testkit.SyncBuffer{}
	env := &cliEnv{stdout: io.Discard, stderr: stderr}
	done := &exited{ch: make(chan struct{})}
	go func() {
		done.code = dispatch(ctx, env, append([]string{"proxy"}, args...))
		close(done.ch)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done.ch:
		case <-time.After(15 * time.Second):
			t.Error("gitedge proxy did not stop")
		}
	})
	return stderr, cancel, done
}

func TestProxyCommandReloadsOnFileChange(t *testing.T) {
	one, two := namedServer(t, "one"), namedServer(t, "two")
	dir := t.TempDir()
	bind := testkit.QuietPort(t) // bound later by the proxy: not in the ephemeral range
	writeRoutes(t, dir, bind, one, two, "one")
	stderr, cancel, done := startProxyCommand(t, "--debounce", "50ms", dir)
	askUntil(t, bind, "one")
	writeRoutes(t, dir, bind, one, two, "two")
	askUntil(t, bind, "two")
	// A broken change keeps the last good config serving.
	if err := os.WriteFile(filepath.Join(dir, "routes", "a.yaml"), []byte("apiVersion: gitedge/v1\nkind: Route\nmetadata: {name: a}\nspec:\n  hosts: [a.test]\n  http: {backend: nope}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(stderr.String(), "reconcile pass failed") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), `no Backend named \"nope\"`) {
		t.Fatalf("no reload error logged:\n%s", stderr)
	}
	askUntil(t, bind, "two")
	cancel()
	select {
	case <-done.ch:
		if done.code != 0 {
			t.Fatalf("exit %d after SIGTERM-equivalent cancel:\n%s", done.code, stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop")
	}
}

func TestProxyCommandReloadsOnSIGHUP(t *testing.T) {
	one, two := namedServer(t, "one"), namedServer(t, "two")
	dir := t.TempDir()
	bind := testkit.QuietPort(t) // bound later by the proxy: not in the ephemeral range
	writeRoutes(t, dir, bind, one, two, "one")
	stderr, _, _ := startProxyCommand(t, "--watch=false", dir)
	askUntil(t, bind, "one")
	writeRoutes(t, dir, bind, one, two, "two")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	askUntil(t, bind, "two")
	if !strings.Contains(stderr.String(), `trigger="manual: SIGHUP"`) {
		t.Errorf("no SIGHUP reload logged:\n%s", stderr)
	}
}

func TestProxyCommandRefusesBadDir(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "x.yaml"), []byte("apiVersion: gitedge/v1\nkind: Route\nmetadata: {name: a}\nspec: {hosts: [a.test], http: {backend: nope}}\n"), 0o644)
	stderr := &testkit.SyncBuffer{}
	code := dispatch(context.Background(), &cliEnv{stdout: io.Discard, stderr: stderr}, []string{"proxy", dir})
	if code != 1 || !strings.Contains(stderr.String(), "nope") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
}
