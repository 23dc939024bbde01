package gitsource

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

func startDir(t *testing.T, dir string) *Dir {
	t.Helper()
	d, err := NewDir(DirConfig{Dir: dir, Debounce: 100 * time.Millisecond}, Options{Logger: testkit.Logger(t, slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, d.Run)
	return d
}

func write(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDirEdit: an edit (several writes in a burst) causes one reload with
// the file as it is on disk.
func TestDirEdit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "routes", "blog.yaml"), "v1\n")
	write(t, filepath.Join(dir, ".git", "HEAD"), "ref: refs/heads/main\n")
	d := startDir(t, dir)
	rev := next(t, d)
	if rev.Trigger.Kind != TriggerStart || readFS(t, rev.Files, "routes/blog.yaml") != "v1\n" {
		t.Fatalf("first: %+v", rev)
	}
	if _, err := rev.Files.Open(".git/HEAD"); err == nil {
		t.Fatal(".git was read")
	}
	first := rev.Commit

	// An editor's save: truncate, write in pieces, then a new file in a new
	// directory.
	p := filepath.Join(dir, "routes", "blog.yaml")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("v2")
	f.Sync()
	f.WriteString("\n")
	f.Close()
	write(t, filepath.Join(dir, "backends", "web.yaml"), "backend\n")

	rev = next(t, d)
	if rev.Trigger.Kind != TriggerFSNotify || rev.Previous != first ||
		readFS(t, rev.Files, "routes/blog.yaml") != "v2\n" || readFS(t, rev.Files, "backends/web.yaml") != "backend\n" {
		t.Fatalf("after the edit: trigger %s, files %v", rev.Trigger.Kind, rev.Files)
	}
	quiet(t, d, 600*time.Millisecond) // one reload, not one per write
	if n := counter(t, d.m.revisions); n != 2 {
		t.Fatalf("revisions = %d, want 2", n)
	}

	// A write under a dot directory, or of identical content, hands
	// nothing over.
	write(t, filepath.Join(dir, ".git", "index"), "x")
	write(t, p, "v2\n")
	quiet(t, d, 600*time.Millisecond)

	// A file in the directory created after start is watched too.
	write(t, filepath.Join(dir, "backends", "web.yaml"), "backend v2\n")
	if rev := next(t, d); readFS(t, rev.Files, "backends/web.yaml") != "backend v2\n" {
		t.Fatal("edit in a new directory missed")
	}
}

func TestDirContentHash(t *testing.T) {
	a := map[string][]byte{"ab": []byte("c")}
	b := map[string][]byte{"a": []byte("bc")}
	if contentHash(a, nil) == contentHash(b, nil) {
		t.Fatal("moving bytes between name and content keeps the hash")
	}
	if contentHash(map[string][]byte{"x": []byte("1"), "y": []byte("2")}, nil) != contentHash(map[string][]byte{"y": []byte("2"), "x": []byte("1")}, nil) {
		t.Fatal("hash depends on map order")
	}
	if contentHash(map[string][]byte{"x": []byte("y")}, nil) == contentHash(nil, map[string]string{"x": "y"}) {
		t.Fatal("a link hashes like a file holding its target")
	}
	if _, err := NewDir(DirConfig{Dir: filepath.Join(t.TempDir(), "missing")}, Options{}); err == nil {
		t.Fatal("missing directory accepted")
	}
}
