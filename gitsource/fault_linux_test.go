package gitsource

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// needRoot fails a test that needs root (mounting a tmpfs), except under
// -short where it is skipped: `make test` runs as root and must not pass
// by skipping.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if testing.Short() {
		t.Skip("needs root to mount a tmpfs (skipped under -short)")
	}
	t.Fatal("this test needs root to mount a tmpfs: run it as root, or with -short to skip it")
}

// tmpfs mounts a tmpfs of size bytes on a fresh directory and unmounts it
// when the test ends.
func tmpfs(t *testing.T, size int) string {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			unix.Unmount(dir, unix.MNT_DETACH) // a process of the test may still hold a file
		}
	})
	return dir
}

// fill writes a file in dir until its filesystem is full and returns the
// file: removing it frees the space again.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	// Then the last crumbs, byte by byte.
	for {
		if _, err := f.Write(buf[:1]); err != nil {
			break
		}
	}
	return p
}

// bigFiles returns n files of incompressible content, so that the pack
// holding them cannot fit in what a filled tmpfs has left.
func bigFiles(n, size int) map[string]string {
	m := map[string]string{}
	for i := range n {
		b := make([]byte, size/2)
		rand.Read(b)
		m[fmt.Sprintf("big/f%02d.yaml", i)] = fmt.Sprintf("# %x\n", b)
	}
	return m
}

// TestStateDirFull restarts a source on a state directory that is full:
// the first look cannot fetch the new commit (ENOSPC), so the cached last
// good commit is handed over at once, reported as "disk full", and the
// cache is kept; once space is freed the scheduled retry fetches the new
// commit. Over git daemon and over a local path (go-git's file transport
// used to hang for good there: it waited for git-upload-pack, blocked
// writing a pack nobody read).
func TestStateDirFull(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		url  func(t *testing.T, u *upstream) string
	}{
		{"git daemon", func(t *testing.T, u *upstream) string { return startGitDaemon(t, u.root) }},
		{"local path", func(t *testing.T, u *upstream) string { return u.bare }},
		{"file url", func(t *testing.T, u *upstream) string { return "file://" + u.bare }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, c1 := upstreamOne(t)
			url := tc.url(t, u)
			state := tmpfs(t, 8<<20)
			cfg := Config{URL: url, StateDir: state, Timeout: 10 * time.Second, RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond}
			g1, _ := newSource(t, cfg)
			if rev := next(t, g1); rev.Commit != c1 {
				t.Fatalf("warm-up: %s", short(rev.Commit))
			}
			g1.storage.Close() // the node stops

			files := bigFiles(8, 64<<10)
			files["a.yaml"] = "two\n"
			c2 := u.commit("two", files)
			u.push("main")
			filler := fill(t, state)

			g2, reg := newSource(t, cfg) // the node starts again
			start := time.Now()
			rev := next(t, g2)
			stale := servedFromCache(t, "restart on a full disk", rev, c1, ReasonDiskFull, "from cache: disk full")
			if !stale.Transient() {
				t.Fatalf("restart on a full disk: %v is not transient", stale)
			}
			t.Logf("cached commit handed over %s after start: %v", time.Since(start).Round(time.Millisecond), rev.Stale)
			if !strings.Contains(stale.Error(), "state directory "+state+" is full") || strings.Contains(stale.Error(), "unreachable") {
				t.Fatalf("error does not say the disk is full: %v", stale)
			}
			if readFS(t, rev.Files, "a.yaml") != "one\n" {
				t.Fatal("cached files wrong")
			}
			if n, _ := testutilCount(reg, MetricReclones); n != 0 {
				t.Fatalf("the cache was thrown away %d times on a full disk", n)
			}
			// Still full: the scheduled retry fails the same way.
			if e := nextErr(t, g2); e.Reason != ReasonDiskFull || !e.Transient() {
				t.Fatalf("retry on a full disk: %+v: %v", e, e)
			}
			if tmp, _ := filepath.Glob(filepath.Join(g2.CacheDir(), "objects", "pack", "tmp_*")); len(tmp) != 0 {
				t.Fatalf("partial packs left behind: %v", tmp)
			}

			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			rev = next(t, g2) // woken by the scheduled retry alone
			if rev.Commit != c2 || rev.Trigger.Kind != TriggerRetry || rev.Stale != nil || readFS(t, rev.Files, "a.yaml") != "two\n" {
				t.Fatalf("after freeing space: %s by %s, stale %v", short(rev.Commit), rev.Trigger.Kind, rev.Stale)
			}
		})
	}
}

// TestStateDirFullSameHead: with the disk full and the remote's head still
// the cached commit, the restart serves it without writing anything.
func TestStateDirFullSameHead(t *testing.T) {
	t.Parallel()
	u, c1 := upstreamOne(t)
	state := tmpfs(t, 4<<20)
	primeCache(t, Config{URL: u.bare, StateDir: state})
	fill(t, state)
	g2, _ := newSource(t, Config{URL: u.bare, StateDir: state})
	if rev := next(t, g2); rev.Commit != c1 || rev.Stale != nil {
		t.Fatalf("restart, head unchanged, disk full: %s stale %v", short(rev.Commit), rev.Stale)
	}
}

// TestStateDirReadOnly: a state directory remounted read-only is reported
// as such and the cached commit is served.
func TestStateDirReadOnly(t *testing.T) {
	t.Parallel()
	u, c1 := upstreamOne(t)
	state := tmpfs(t, 8<<20)
	primeCache(t, Config{URL: u.bare, StateDir: state})
	u.commit("two", map[string]string{"a.yaml": "two\n"})
	u.push("main")
	if err := unix.Mount("", state, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remounting read-only: %v", err)
	}
	g2, _ := newSource(t, Config{URL: u.bare, StateDir: state})
	rev := next(t, g2)
	servedFromCache(t, "read-only state directory", rev, c1, ReasonReadOnly, "read-only")
}

// TestRepositoryGone: a remote that answers "repository not found" (moved,
// deleted, renamed) at start falls back to the cached commit like an
// unreachable one, with its own reason.
func TestRepositoryGone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		url  func(t *testing.T, u *upstream) string
	}{
		{"git daemon", func(t *testing.T, u *upstream) string { return startGitDaemon(t, u.root) }},
		{"http-backend", func(t *testing.T, u *upstream) string { return startHTTPGit(t, u.root, "", "").URL }},
		{"local path", func(t *testing.T, u *upstream) string { return u.bare }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u, c1 := upstreamOne(t)
			url := tc.url(t, u)
			state := t.TempDir()
			primeCache(t, Config{URL: url, StateDir: state})
			if err := os.Rename(u.bare, u.bare+".moved"); err != nil {
				t.Fatal(err)
			}
			g2, _ := newSource(t, Config{URL: url, StateDir: state})
			rev := next(t, g2)
			servedFromCache(t, "restart with the repository gone", rev, c1, ReasonNotFound, "from cache: repository or ref not found")
		})
	}
}

// TestLocalFetchStalls: a local repository whose git-upload-pack blocks
// (an object that is a FIFO stands for a hung disk) fails at the fetch's
// deadline instead of hanging, and a restart meanwhile serves the cache.
func TestLocalFetchStalls(t *testing.T) {
	t.Parallel()
	u, c1 := upstreamOne(t)
	state := t.TempDir()
	cfg := Config{URL: u.bare, StateDir: state, Timeout: time.Second, RetryMin: time.Minute, RetryMax: time.Minute}
	g, _ := newSource(t, cfg)
	next(t, g)
	u.commit("two", map[string]string{"a.yaml": "two, stuck\n"})
	u.push("main")
	blob := run(t, u.bare, u.env, "git", "rev-parse", "main:a.yaml")
	obj := filepath.Join(u.bare, "objects", blob[:2], blob[2:])
	if err := os.Remove(obj); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mkfifo(obj, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // let whatever still waits on the FIFO go
		if f, err := os.OpenFile(obj, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})

	// The fetch's own bound, plus room for a loaded machine under -race;
	// a fetch that hangs meets nextErr's 30s bound instead.
	bound := cfg.Timeout + stuckGrace + 10*time.Second
	g.Trigger(Trigger{Kind: TriggerPoll})
	start := time.Now()
	e := nextErr(t, g)
	if took := time.Since(start); e.Reason != ReasonUnreachable || !e.Transient() || took > bound {
		t.Fatalf("stalled fetch: %+v after %s (bound %s): %v", e, took, bound, e)
	}
	g.storage.Close()
	g2, _ := newSource(t, cfg)
	start = time.Now()
	rev := next(t, g2)
	if took := time.Since(start); rev.Commit != c1 || rev.Stale == nil || took > bound {
		t.Fatalf("restart while the fetch stalls: %s after %s, stale %v", short(rev.Commit), took, rev.Stale)
	}
}

// TestStateDirFirstStart: with nothing cached and the state directory
// full or read-only, the source still starts and its look says why it has
// nothing.
func TestStateDirFirstStart(t *testing.T) {
	t.Parallel()
	u, _ := upstreamOne(t)
	for _, tc := range []struct {
		name   string
		spoil  func(t *testing.T, dir string)
		reason string
	}{
		{"full", func(t *testing.T, dir string) { fill(t, dir) }, ReasonDiskFull},
		{"read-only", func(t *testing.T, dir string) {
			if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				t.Fatal(err)
			}
		}, ReasonReadOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			state := tmpfs(t, 1<<20)
			tc.spoil(t, state)
			g, _ := newSource(t, Config{URL: u.bare, StateDir: state})
			if e := nextErr(t, g); e.Reason != tc.reason || !e.Transient() {
				t.Fatalf("first start: %+v: %v", e, e)
			}
		})
	}
}
