package testkit

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// SyncBuffer is a bytes.Buffer safe for concurrent use: a log or a
// command's stderr written by goroutines and read by the test.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset forgets what was written.
func (s *SyncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// Logger logs at level into the test's log, one line per record, so a
// failing test shows what the code under test said.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Run runs task on its own goroutine until the test ends, then cancels
// it and fails the test unless it returned nil: the Task contract (nil on
// cancellation) checked on every run.
func Run(t testing.TB, task func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- task(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v on cancellation, want nil", err)
		}
	})
}

// Deadline bounds every wait of WaitFor: 10s, 30s under the race
// detector (make test runs -race on CI's two cores, shared by two test
// binaries). It only costs time when a test fails, so it is generous.
const Deadline = slowdown * 10 * time.Second

// WaitFor polls cond until it holds, failing the test after Deadline with
// what it waited for. For conditions no signal reports (a file, a
// status seen from outside); prefer waiting on a channel where there is
// one.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %s waiting for %s", Deadline, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Listen binds a loopback TCP port and closes it when the test ends.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// FreePort returns a loopback address that was free a moment ago, for a
// server that cannot be handed a listener (another process). It lies in
// the kernel's ephemeral range: for a process started later, prefer
// QuietPort.
func FreePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// QuietPort returns a loopback address on a port below the kernel's
// ephemeral range that was free a moment ago: a process the test starts
// later must be told its port, and a port picked by binding :0 lies in
// the ephemeral range, where another test's outgoing connection may take
// it meanwhile. It never returns a port twice in one test binary: ports
// picked one after another are bound later, so a free-a-moment-ago check
// alone let a test's git server and its proxy get the same port.
func QuietPort(t testing.TB) string {
	t.Helper()
	quietPorts.Lock()
	defer quietPorts.Unlock()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		if quietPorts.given[port] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			ln.Close()
			quietPorts.given[port] = true
			return ln.Addr().String()
		}
	}
	t.Fatal("no free port in 20000..32000")
	return ""
}

// quietPorts are the ports QuietPort handed out.
var quietPorts = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

// WriteFile writes content at path (mode 0644), creating its directory.
func WriteFile(t testing.TB, path, content string) {
	t.Helper()
	writeFile(t, path, content, 0o644)
}

// TempFile writes content to a new file named name in a fresh directory
// removed with the test, readable by its owner only (a secret), and
// returns its path.
func TempFile(t testing.TB, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	writeFile(t, p, content, 0o600)
	return p
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// update is -update: rewrite golden files instead of comparing.
var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// Golden compares got with the file at path, or writes it there with
// -update.
func Golden(t testing.TB, path, got string) {
	t.Helper()
	if *update {
		WriteFile(t, path, got)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -update writes it)", err)
	}
	if d := cmp.Diff(string(want), got); d != "" {
		t.Errorf("%s differs (-want +got; go test -update rewrites it after review):\n%s", path, d)
	}
}

// Updating reports whether -update was given.
func Updating() bool { return *update }

// SeedFiles adds the content of every file matching the patterns to the
// fuzzer's corpus; a pattern that matches nothing fails, so a moved
// testdata directory cannot silently empty the seeds.
func SeedFiles(f *testing.F, patterns ...string) {
	f.Helper()
	for _, pat := range patterns {
		files, err := filepath.Glob(pat)
		if err != nil || len(files) == 0 {
			f.Fatalf("no seed file matches %s", pat)
		}
		for _, name := range files {
			data, err := os.ReadFile(name)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
}

// Seeds adds each string to the fuzzer's corpus as bytes.
func Seeds(f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
}

// Poll calls f until it returns "" or within has passed, then fails the
// test with f's last answer: for waits whose failure message says what
// was last seen.
func Poll(t testing.TB, within time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// CopyTree copies the directory tree src to dst (created as needed) and
// returns dst, applying the edits of each file (its slash-separated path
// below src → old, new pairs): each old text must occur in the file
// exactly once.
func CopyTree(t testing.TB, src, dst string, edits map[string][][2]string) string {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, e := range edits[filepath.ToSlash(rel)] {
			if bytes.Count(data, []byte(e[0])) != 1 {
				t.Fatalf("%s: %q must occur exactly once", rel, e[0])
			}
			data = bytes.Replace(data, []byte(e[0]), []byte(e[1]), 1)
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// Missing skips t when something the test needs (root, a tool) is absent
// on a developer's machine, and fails it under `make test`, which sets
// GITEDGE_TEST_ALL=1 after installing everything: there a skip would let
// CI pass without running the real component.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("GITEDGE_TEST_ALL") != "" {
		t.Fatalf(format+" (make test runs every test: GITEDGE_TEST_ALL is set)", args...)
	}
	t.Skipf(format, args...)
}
