package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestForcePush rewrites the branch under both policies.
func TestForcePush(t *testing.T) {
	t.Parallel()
	for _, policy := range []ForcePushPolicy{ForcePushFollow, ForcePushRefuse} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t)
			base := u.commit("base", map[string]string{"a.yaml": "base\n"})
			c1 := u.commit("live", map[string]string{"a.yaml": "live\n"})
			u.push("main")
			h := startHTTPGit(t, u.root, "", "")
			state := t.TempDir()
			g, _ := newSource(t, Config{URL: h.URL, ForcePush: policy, StateDir: state})
			if rev := next(t, g); rev.Commit != c1 {
				t.Fatalf("first: %s", rev.Commit)
			}
			// Rewrite: drop c1, commit something else on base.
			u.git("reset", "-q", "--hard", base)
			rewritten := u.commit("rewritten", map[string]string{"a.yaml": "rewritten\n"})
			u.push("--force", "main")
			g.Trigger(Trigger{Kind: TriggerWebhook})

			if policy == ForcePushFollow {
				rev := next(t, g)
				if rev.Commit != rewritten || !rev.ForcePushed || rev.Previous != c1 || readFS(t, rev.Files, "a.yaml") != "rewritten\n" {
					t.Fatalf("follow: %s forcePushed=%v previous=%s", short(rev.Commit), rev.ForcePushed, short(rev.Previous))
				}
				return
			}
			e := nextErr(t, g)
			if e.Step != StepVerify || e.Reason != ReasonForcePush || e.Transient() || e.Commit != rewritten ||
				!strings.Contains(e.Error(), "does not descend from the live commit "+short(c1)) {
				t.Fatalf("refuse: %+v: %v", e, e)
			}
			// The refused head is not looked at again, nor handed over.
			packs := counter(t, g.m.fetches)
			g.Trigger(Trigger{Kind: TriggerPoll})
			quiet(t, g, 500*time.Millisecond)
			if counter(t, g.m.fetches) != packs {
				t.Fatal("refused head fetched again")
			}
			// A restart does not launder the rewrite: the live commit is
			// recorded in the cache.
			g2, _ := newSource(t, Config{URL: h.URL, ForcePush: policy, StateDir: state})
			if e := nextErr(t, g2); e.Reason != ReasonForcePush {
				t.Fatalf("after restart: %v", e)
			}
			// Restoring the branch on top of the live commit is accepted.
			u.git("reset", "-q", "--hard", c1)
			c2 := u.commit("on top of live", map[string]string{"a.yaml": "fixed\n"})
			u.push("--force", "main")
			g.Trigger(Trigger{Kind: TriggerWebhook})
			if rev := next(t, g); rev.Commit != c2 || rev.ForcePushed || rev.Previous != c1 {
				t.Fatalf("restored: %s forcePushed=%v previous=%s", short(rev.Commit), rev.ForcePushed, short(rev.Previous))
			}
		})
	}
}

// TestForcePushAfterCompaction: a look that throws the cache away (to
// compact it, or because it broke) and refuses a rollback must leave the
// record of the live commit behind, or a restart would apply the rollback.
func TestForcePushAfterCompaction(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	base := u.commit("base", map[string]string{"a.yaml": "base\n"})
	c1 := u.commit("live", map[string]string{"a.yaml": "live\n"})
	u.push("main")
	h := startHTTPGit(t, u.root, "", "")
	cfg := Config{URL: h.URL, ForcePush: ForcePushRefuse, StateDir: t.TempDir()}
	g, _ := newSource(t, cfg)
	if rev := next(t, g); rev.Commit != c1 {
		t.Fatalf("first: %s", rev.Commit)
	}
	g.maxPacks = 0 // the next look compacts, as after 50 fetches of refused commits
	u.git("reset", "-q", "--hard", base)
	u.push("--force", "main")
	g.Trigger(Trigger{Kind: TriggerWebhook})
	if e := nextErr(t, g); e.Reason != ReasonForcePush {
		t.Fatalf("the rollback, before a restart: %v", e)
	}
	g.storage.Close()
	g2, _ := newSource(t, cfg)
	if rev, err := g2.Next(t.Context()); err == nil {
		t.Fatalf("after a restart the rollback to %s (live %s) was handed over", short(rev.Commit), short(c1))
	} else if !strings.Contains(err.Error(), "does not descend from the live commit "+short(c1)) {
		t.Fatalf("after a restart: %v", err)
	}
}

// TestUnreachableThenBack: with the server down a look fails as transient,
// a retry is scheduled by itself, and once the server is back the new
// commit arrives without any other trigger. A restart while the server is
// down hands over the cached last good commit.
func TestUnreachableThenBack(t *testing.T) {
	t.Parallel()
	u, h, c1 := servedUpstream(t, "one", map[string]string{"a.yaml": "one\n"})
	state := t.TempDir()
	g, _ := newSource(t, Config{URL: h.URL, StateDir: state, RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	next(t, g)

	h.down()
	c2 := u.commit("two", map[string]string{"a.yaml": "two\n"})
	u.push("main")
	g.Trigger(Trigger{Kind: TriggerPoll})
	e := nextErr(t, g)
	if e.Step != StepFetch || e.Reason != ReasonUnreachable || !e.Transient() || !e.Transient() {
		t.Fatalf("server down: %+v: %v", e, e)
	}
	// Still down: the scheduled retries fail again, on their own.
	e = nextErr(t, g)
	if !e.Transient() {
		t.Fatalf("retry: %+v", e)
	}

	// A restart meanwhile serves the last good commit from the cache.
	g2, _ := newSource(t, Config{URL: h.URL, StateDir: state})
	rev := next(t, g2)
	if rev.Commit != c1 || !transient(rev.Stale) || !strings.Contains(rev.Trigger.Detail, "from cache") {
		t.Fatalf("restart while down: %s %q, stale: %v", short(rev.Commit), rev.Trigger.Detail, rev.Stale)
	}
	if readFS(t, rev.Files, "a.yaml") != "one\n" {
		t.Fatal("cached files wrong")
	}

	h.up(t)
	rev = next(t, g) // woken by the scheduled retry alone
	if rev.Commit != c2 || rev.Trigger.Kind != TriggerRetry {
		t.Fatalf("back: %s by %s, want %s by retry", short(rev.Commit), rev.Trigger.Kind, short(c2))
	}
	if rev := next(t, g2); rev.Commit != c2 || rev.Previous != c1 {
		t.Fatalf("restarted source once back: %s previous %s", short(rev.Commit), short(rev.Previous))
	}
}

// TestNothingListening: a first start with the remote down and no cache
// fails as transient and schedules its own retry.
func TestNothingListening(t *testing.T) {
	t.Parallel()
	g, _ := newSource(t, Config{URL: "http://" + testkit.FreePort(t) + "/git/repo.git"})
	e := nextErr(t, g)
	if e.Step != StepFetch || e.Reason != ReasonUnreachable || !e.Transient() {
		t.Fatalf("%+v: %v", e, e)
	}
	if e := nextErr(t, g); !e.Transient() { // woken by the retry alone
		t.Fatalf("retry: %+v", e)
	}
}

// TestSlowRemote: a remote that does not answer is given up on after the
// timeout, as a transient failure, and followed again once it answers.
func TestSlowRemote(t *testing.T) {
	t.Parallel()
	u, h, _ := servedUpstream(t, "one", map[string]string{"a.yaml": "one\n"})
	g, _ := newSource(t, Config{URL: h.URL, Timeout: 300 * time.Millisecond, RetryMin: 50 * time.Millisecond, RetryMax: 100 * time.Millisecond})
	nextPastTimeouts(t, g)
	h.stall.Store(true)
	c2 := u.commit("two", map[string]string{"a.yaml": "two\n"})
	u.push("main")
	g.Trigger(Trigger{Kind: TriggerPoll})
	start := time.Now()
	e := nextErr(t, g)
	if e.Step != StepFetch || e.Reason != ReasonUnreachable || !e.Transient() || time.Since(start) > 10*time.Second {
		t.Fatalf("stalled remote: %+v after %s: %v", e, time.Since(start), e)
	}
	h.stall.Store(false)
	// A retry that began while the remote stalled may still time out
	// after it answers again: the source retries that by itself too.
	if rev := nextPastTimeouts(t, g); rev.Commit != c2 {
		t.Fatalf("after the stall: %s", short(rev.Commit))
	}
}

// nextPastTimeouts is next for a source whose timeout is short enough
// that a loaded machine makes a look time out: transient errors are
// skipped (the source retries them by itself), for at most 10s.
func nextPastTimeouts(t *testing.T, g *Git) Revision {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		rev, err := g.Next(ctx)
		cancel()
		if err == nil {
			return rev
		}
		if e, ok := errors.AsType[*Error](err); !ok || !e.Transient() || time.Now().After(deadline) {
			t.Fatalf("Next: %v", err)
		}
	}
}

// TestWrongPassword: refused credentials are a terminal auth error that
// never shows the secret; the right password works.
func TestWrongPassword(t *testing.T) {
	t.Parallel()
	u, c1 := upstreamOne(t)
	h := startHTTPGit(t, u.root, "deploy", "right-horse-battery")
	for _, tc := range []struct {
		name string
		auth Auth
	}{
		{"wrong password", Auth{Username: "deploy", PasswordFile: testkit.TempFile(t, "p", "wrong-staple-9911\n")}},
		{"no credentials", Auth{}},
		{"unreadable file", Auth{PasswordFile: filepath.Join(t.TempDir(), "missing")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			g, err := New(Config{URL: h.URL, Auth: tc.auth, StateDir: t.TempDir()},
				Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatal(err)
			}
			e := nextErr(t, g)
			if e.Step != StepFetch || e.Reason != ReasonAuth || e.Transient() {
				t.Fatalf("%+v: %v", e, e)
			}
			for what, text := range map[string]string{"error": e.Error(), "log": logs.String()} {
				if strings.Contains(text, "wrong-staple") || strings.Contains(text, "right-horse") {
					t.Fatalf("%s shows a password: %s", what, text)
				}
			}
			if !strings.Contains(logs.String(), "reason=Auth") {
				t.Fatalf("failure not logged: %s", logs.String())
			}
		})
	}
	g, _ := newSource(t, Config{URL: h.URL, Auth: Auth{Username: "deploy", PasswordFile: testkit.TempFile(t, "p", "right-horse-battery")}})
	if rev := next(t, g); rev.Commit != c1 {
		t.Fatal(rev.Commit)
	}
}

// TestCorruptedCache damages the cache in several ways; each time the
// source fetches it again and hands over the new commit.
func TestCorruptedCache(t *testing.T) {
	t.Parallel()
	damage := map[string]func(t *testing.T, dir string){
		"garbage packs": func(t *testing.T, dir string) {
			packs, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", "*.pack"))
			if len(packs) == 0 {
				t.Fatal("no pack in the cache")
			}
			for _, p := range packs {
				st, _ := os.Stat(p)
				if err := os.WriteFile(p, make([]byte, st.Size()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		},
		"objects removed": func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "objects")); err != nil {
				t.Fatal(err)
			}
		},
		"config garbage": func(t *testing.T, dir string) {
			if err := os.WriteFile(filepath.Join(dir, "config"), []byte("[[[not a config"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"cache deleted": func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, fn := range damage {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			u, h, _ := servedUpstream(t, "one", map[string]string{"a.yaml": "one\n", "b.yaml": "b\n"})
			state := t.TempDir()
			fn(t, primeCache(t, Config{URL: h.URL, StateDir: state}).CacheDir())
			c2 := u.commit("two", map[string]string{"a.yaml": "two\n"})
			u.push("main")
			// A restarted node finds its cache broken.
			g2, _ := newSource(t, Config{URL: h.URL, StateDir: state})
			rev := next(t, g2)
			if rev.Commit != c2 || readFS(t, rev.Files, "a.yaml") != "two\n" || readFS(t, rev.Files, "b.yaml") != "b\n" {
				t.Fatalf("after damage: %s", short(rev.Commit))
			}
			if (name == "garbage packs" || name == "config garbage") && counter(t, g2.m.reclones) != 1 {
				t.Fatalf("reclones = %d, want 1", counter(t, g2.m.reclones))
			}
		})
	}
}

// TestCacheDeletedInProcess removes the cache under a running source.
func TestCacheDeletedInProcess(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	u.commit("one", map[string]string{"a.yaml": "one\n", "b.yaml": "b\n"})
	u.push("main")
	g, _ := newSource(t, Config{URL: u.bare})
	next(t, g)
	if err := os.RemoveAll(g.CacheDir()); err != nil {
		t.Fatal(err)
	}
	c2 := u.commit("two", map[string]string{"a.yaml": "two\n"})
	u.push("main")
	g.Trigger(Trigger{Kind: TriggerPoll})
	rev := next(t, g)
	if rev.Commit != c2 || readFS(t, rev.Files, "a.yaml") != "two\n" || readFS(t, rev.Files, "b.yaml") != "b\n" {
		t.Fatalf("got %s", short(rev.Commit))
	}
	// And the cache is usable again by a restarted node.
	g2, _ := newSource(t, Config{URL: u.bare, StateDir: filepath.Dir(filepath.Dir(g.CacheDir()))})
	if rev := next(t, g2); rev.Commit != c2 || rev.Previous != c2 {
		t.Fatalf("restart: %s previous %s", short(rev.Commit), short(rev.Previous))
	}
}

func TestErrorUnwrap(t *testing.T) {
	base := errors.New("boom")
	var err error = &Error{Step: StepFetch, Source: "https://h/r.git", Commit: strings.Repeat("a", 40), Err: base}
	if !errors.Is(err, base) {
		t.Fatal("errors.Is through *Error")
	}
	if err.(*Error).Transient() {
		t.Fatal("a fetch error without a reason is not transient")
	}
	if got := err.Error(); got != "gitsource fetch https://h/r.git at aaaaaaaaaaaa: boom" {
		t.Fatal(got)
	}
}

// TestCompaction: once the cache holds more packs than allowed it is
// fetched afresh into one (depth 1 under follow, the whole history under
// refuse), and following goes on; under refuse a force-push after the
// compaction is still refused.
func TestCompaction(t *testing.T) {
	t.Parallel()
	for _, policy := range []ForcePushPolicy{ForcePushFollow, ForcePushRefuse} {
		t.Run(string(policy), func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t)
			u.commit("c0", map[string]string{"a.yaml": "0\n", "b.yaml": "b\n"})
			u.push("main")
			g, _ := newSource(t, Config{URL: u.bare, ForcePush: policy})
			g.maxPacks = 3
			next(t, g)
			var prev string
			for i := 1; i <= 6; i++ {
				c := u.commit(fmt.Sprint("c", i), map[string]string{"a.yaml": fmt.Sprint(i, "\n")})
				u.push("main")
				g.Trigger(Trigger{Kind: TriggerPoll})
				rev := next(t, g)
				if rev.Commit != c || readFS(t, rev.Files, "a.yaml") != fmt.Sprint(i, "\n") || readFS(t, rev.Files, "b.yaml") != "b\n" || rev.ForcePushed {
					t.Fatalf("commit %d: %s forcePushed=%v", i, short(rev.Commit), rev.ForcePushed)
				}
				if n := g.packCount(); n > 4 {
					t.Fatalf("%d packs after commit %d", n, i)
				}
				prev = c
			}
			if counter(t, g.m.reclones) != 1 {
				t.Fatalf("compactions = %d, want 1", counter(t, g.m.reclones))
			}
			_, err := os.Stat(filepath.Join(g.CacheDir(), "shallow"))
			if shallow := err == nil; shallow != (policy == ForcePushFollow) {
				t.Fatalf("cache shallow = %v under %s", shallow, policy)
			}
			u.git("reset", "-q", "--hard", "HEAD~2")
			rewritten := u.commit("rewritten", map[string]string{"a.yaml": "rewritten\n"})
			u.push("--force", "main")
			g.Trigger(Trigger{Kind: TriggerPoll})
			if policy == ForcePushRefuse {
				if e := nextErr(t, g); e.Reason != ReasonForcePush {
					t.Fatalf("force-push after compaction: %v", e)
				}
				return
			}
			if rev := next(t, g); rev.Commit != rewritten || rev.Previous != prev {
				t.Fatalf("follow after compaction: %s", short(rev.Commit))
			}
		})
	}
}

// TestErrorTransientMethod: reconcile's loop tells retryable errors by a
// Transient() bool method anywhere in the chain.
func TestErrorTransientMethod(t *testing.T) {
	var err error = fmt.Errorf("pass: %w", &Error{Step: StepFetch, Reason: ReasonUnreachable, Err: errors.New("refused")})
	var tr interface{ Transient() bool }
	if !errors.As(err, &tr) || !tr.Transient() {
		t.Fatal("Transient() not found through wrapping")
	}
}

// TestShallowCacheRevert: after a compaction the cache is shallow, and the
// server, not told so, does not resend a blob that only older history
// holds. A commit reverting a file to such a blob is still read right: the
// missing object sends the source back for a fresh fetch.
func TestShallowCacheRevert(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	u.commit("old", map[string]string{"a.yaml": "old content\n"})
	u.push("main")
	g, _ := newSource(t, Config{URL: u.bare})
	g.maxPacks = 1
	next(t, g)
	for i := range 3 { // pass maxPacks: the cache is rebuilt shallow
		u.commit(fmt.Sprint("c", i), map[string]string{"a.yaml": fmt.Sprint("v", i, "\n")})
		u.push("main")
		g.Trigger(Trigger{Kind: TriggerPoll})
		next(t, g)
	}
	if _, err := os.Stat(filepath.Join(g.CacheDir(), "shallow")); err != nil {
		t.Fatalf("cache not shallow after compaction: %v", err)
	}
	g.maxPacks = 100 // from here on, any rebuild is a repair
	reclones := counter(t, g.m.reclones)
	c := u.commit("revert", map[string]string{"a.yaml": "old content\n"})
	u.push("main")
	g.Trigger(Trigger{Kind: TriggerPoll})
	rev := next(t, g)
	if rev.Commit != c || readFS(t, rev.Files, "a.yaml") != "old content\n" {
		t.Fatalf("revert: %s", short(rev.Commit))
	}
	t.Logf("cache rebuilt %d time(s) for the revert", counter(t, g.m.reclones)-reclones)
}

// TestCredentialsRefusedAtStart: a restart whose credentials the remote
// now refuses serves the cached commit, with the auth error as the cause.
func TestCredentialsRefusedAtStart(t *testing.T) {
	t.Parallel()
	u, c1 := upstreamOne(t)
	h := startHTTPGit(t, u.root, "deploy", "right-horse-battery")
	state := t.TempDir()
	primeCache(t, Config{URL: h.URL, StateDir: state, Auth: Auth{Username: "deploy", PasswordFile: testkit.TempFile(t, "p", "right-horse-battery")}})
	g2, _ := newSource(t, Config{URL: h.URL, StateDir: state, Auth: Auth{Username: "deploy", PasswordFile: testkit.TempFile(t, "p", "rotated-wrongly")}})
	rev := next(t, g2)
	servedFromCache(t, "restart with refused credentials", rev, c1, ReasonAuth, "credentials refused")
}

// TestBounded: an operation that ignores its deadline is left behind
// stuckGrace after it, with a channel that says when it returns.
func TestBounded(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	start := time.Now()
	stuck, err := bounded(ctx, func() error { <-release; return nil })
	if took := time.Since(start); !errors.Is(err, errStuck) || !errors.Is(err, context.DeadlineExceeded) || stuck == nil ||
		took < stuckGrace || took > stuckGrace+10*time.Second {
		t.Fatalf("stuck op: %v after %s", err, took)
	}
	close(release)
	<-stuck
	if stuck, err := bounded(context.Background(), func() error { return io.EOF }); stuck != nil || err != io.EOF {
		t.Fatalf("prompt op: %v, %v", stuck, err)
	}
}

// TestStuckFetchLeavesCacheAlone: while a fetch left behind still runs,
// looks fail without touching the cache, and a restart meanwhile serves
// the cached commit through a storage of its own.
func TestStuckFetchLeavesCacheAlone(t *testing.T) {
	t.Parallel()
	u, c1 := upstreamOne(t)
	state := t.TempDir()
	g, _ := newSource(t, Config{URL: u.bare, StateDir: state, RetryMin: time.Hour, RetryMax: time.Hour})
	next(t, g)
	c2 := u.commit("two", map[string]string{"a.yaml": "two\n"})
	u.push("main")

	stuck := make(chan struct{})
	g.busy, g.busySince = stuck, time.Now()
	g.Trigger(Trigger{Kind: TriggerPoll})
	if e := nextErr(t, g); e.Reason != ReasonUnreachable || !e.Transient() || !strings.Contains(e.Error(), "still stuck") {
		t.Fatalf("look while a fetch is stuck: %+v: %v", e, e)
	}

	g2, _ := newSource(t, Config{URL: u.bare, StateDir: state, RetryMin: time.Hour, RetryMax: time.Hour})
	g2.busy, g2.busySince = stuck, time.Now()
	rev := next(t, g2)
	if rev.Commit != c1 || rev.Stale == nil || readFS(t, rev.Files, "a.yaml") != "one\n" || g2.repo != nil {
		t.Fatalf("restart while a fetch is stuck: %s, stale %v, cache storage opened: %v", short(rev.Commit), rev.Stale, g2.repo != nil)
	}

	close(stuck) // the fetch returns at last
	g.Trigger(Trigger{Kind: TriggerPoll})
	if rev := next(t, g); rev.Commit != c2 {
		t.Fatalf("once the fetch returned: %s", short(rev.Commit))
	}
}

// transient asks an error's Transient method, as the reconcile loop does.
func transient(err error) bool {
	t, ok := errors.AsType[interface {
		error
		Transient() bool
	}](err)
	return ok && t.Transient()
}
