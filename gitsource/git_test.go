package gitsource

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestTransports follows one repository through each kind of remote: the
// first look clones, a pushed commit is handed over, and a look with the
// head unchanged hands nothing over and fetches nothing.
func TestTransports(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		setup func(t *testing.T, u *upstream) (url string, auth Auth)
	}{
		{"plain path", func(t *testing.T, u *upstream) (string, Auth) { return u.bare, Auth{} }},
		{"file url", func(t *testing.T, u *upstream) (string, Auth) { return "file://" + u.bare, Auth{} }},
		{"git daemon", func(t *testing.T, u *upstream) (string, Auth) { return startGitDaemon(t, u.root), Auth{} }},
		{"http-backend", func(t *testing.T, u *upstream) (string, Auth) {
			return startHTTPGit(t, u.root, "", "").URL, Auth{}
		}},
		{"http-backend basic auth", func(t *testing.T, u *upstream) (string, Auth) {
			h := startHTTPGit(t, u.root, "deploy", "s3cret-pass")
			return h.URL, Auth{Username: "deploy", PasswordFile: testkit.TempFile(t, "pass", "s3cret-pass\n")}
		}},
		{"http-backend token", func(t *testing.T, u *upstream) (string, Auth) {
			h := startHTTPGit(t, u.root, "git", "tok-123")
			return h.URL, Auth{TokenFile: testkit.TempFile(t, "token", "tok-123")}
		}},
		{"ssh", func(t *testing.T, u *upstream) (string, Auth) {
			s := startSSHD(t)
			return fmt.Sprintf("ssh://%s@%s%s", s.user, s.addr, u.bare), Auth{SSHKeyFile: s.clientKey, KnownHostsFile: s.knownHosts}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := newUpstream(t)
			c1 := u.commit("first routes", map[string]string{"edge/routes/blog.yaml": "kind: Route # v1\n", "README.md": "not routes\n"})
			u.push("main")
			url, auth := tc.setup(t, u)
			g, _ := newSource(t, Config{URL: url, Branch: "main", Path: "edge", Auth: auth})

			rev := nextPatient(t, g)
			if rev.Commit != c1 || rev.Trigger.Kind != TriggerStart {
				t.Fatalf("first revision %s (%s), want %s on start", rev.Commit, rev.Trigger.Kind, c1)
			}
			if got := readFS(t, rev.Files, "routes/blog.yaml"); got != "kind: Route # v1\n" {
				t.Fatalf("routes/blog.yaml = %q", got)
			}
			if _, err := rev.Files.Open("README.md"); err == nil {
				t.Fatal("README.md outside source.path was handed over")
			}
			if rev.Author.Name != "Route Author" || rev.Committer.Email != "committer@example.org" || strings.TrimSpace(rev.Message) != "first routes" {
				t.Fatalf("commit metadata: %+v %+v %q", rev.Author, rev.Committer, rev.Message)
			}
			if rev.Ref != "refs/heads/main" || rev.Previous != "" || rev.Signer != nil {
				t.Fatalf("ref %q previous %q signer %v", rev.Ref, rev.Previous, rev.Signer)
			}

			// No change: the trigger is absorbed, nothing fetched. Next
			// hands nothing over for an unchanged head and waits on; it is
			// cut short here once the look is counted as skipped. The look
			// may take seconds on a loaded machine (an ssh handshake took
			// 5–8 s), or fail there (sshd dropping a connection), which the
			// source retries once Next has returned the error.
			fetches := counter(t, g.m.fetches)
			g.Trigger(Trigger{Kind: TriggerPoll})
			deadline := time.Now().Add(30 * time.Second)
			for counter(t, g.m.skipped) == 0 {
				ctx, cancel := context.WithDeadline(context.Background(), deadline)
				go func() {
					for ctx.Err() == nil && counter(t, g.m.skipped) == 0 {
						time.Sleep(20 * time.Millisecond)
					}
					cancel()
				}()
				rev, err := g.Next(ctx)
				cancel()
				var e *Error
				switch {
				case err == nil:
					t.Fatalf("Next handed over %s (trigger %s) on an unchanged head", short(rev.Commit), rev.Trigger.Kind)
				case errors.As(err, &e) && e.Transient():
					t.Logf("transient, the source retries: %v", err)
				case errors.Is(err, context.DeadlineExceeded):
					t.Fatal("no look at the remote within 30 s of the poll trigger")
				case !errors.Is(err, context.Canceled):
					t.Fatalf("Next: %v", err)
				}
			}
			if got := counter(t, g.m.skipped); got != 1 {
				t.Fatalf("skipped fetches = %d, want 1", got)
			}
			if got := counter(t, g.m.fetches); got != fetches {
				t.Fatalf("fetches went from %d to %d on an unchanged head", fetches, got)
			}

			// New commit.
			c2 := u.commit("second", map[string]string{"edge/routes/blog.yaml": "kind: Route # v2\n", "edge/routes/new.yaml": "kind: Backend\n"})
			u.push("main")
			g.Trigger(Trigger{Kind: TriggerWebhook, Detail: "test"})
			rev = next(t, g)
			if rev.Commit != c2 || rev.Previous != c1 || rev.ForcePushed || rev.Trigger.Kind != TriggerWebhook {
				t.Fatalf("second revision %+v, want %s after %s from the webhook", rev, c2, c1)
			}
			if got := readFS(t, rev.Files, "routes/blog.yaml"); got != "kind: Route # v2\n" {
				t.Fatalf("routes/blog.yaml = %q", got)
			}
			readFS(t, rev.Files, "routes/new.yaml")
			if got := counter(t, g.m.revisions); got != 2 {
				t.Fatalf("revisions = %d, want 2", got)
			}
		})
	}
}

// TestPollNoChangeCostsOneRefAdvertisement proves at the server that a look
// with the head unchanged is one GET of info/refs and no upload-pack POST.
func TestPollNoChangeCostsOneRefAdvertisement(t *testing.T) {
	t.Parallel()
	_, h, _ := servedUpstream(t, "routes", map[string]string{"a.yaml": "a\n"})
	g, _ := newSource(t, Config{URL: h.URL})
	next(t, g)
	ads0, packs0 := h.counts()
	if packs0 != 1 {
		t.Fatalf("first clone made %d upload-pack POSTs, want 1", packs0)
	}
	for range 3 {
		g.Trigger(Trigger{Kind: TriggerPoll})
		quiet(t, g, 500*time.Millisecond)
	}
	ads, packs := h.counts()
	if ads-ads0 != 3 || packs != packs0 || h.other.Load() != 0 {
		t.Fatalf("3 polls with no change cost %d ref advertisements, %d upload-pack POSTs, %d other requests; want 3, 0, 0",
			ads-ads0, packs-packs0, h.other.Load())
	}
}

// TestRestartUsesCache: a second process with the same state directory and
// an unchanged head fetches nothing.
func TestRestartUsesCache(t *testing.T) {
	t.Parallel()
	_, h, c1 := servedUpstream(t, "routes", map[string]string{"a.yaml": "a\n"})
	state := t.TempDir()
	g1, _ := newSource(t, Config{URL: h.URL, StateDir: state})
	next(t, g1)
	_, packs := h.counts()
	g2, _ := newSource(t, Config{URL: h.URL, StateDir: state})
	if rev := next(t, g2); rev.Commit != c1 || rev.Previous != c1 {
		t.Fatalf("after restart: %s (previous %s), want %s from the cache", rev.Commit, rev.Previous, c1)
	}
	if _, p := h.counts(); p != packs {
		t.Fatalf("restart with an unchanged head fetched (%d upload-pack POSTs)", p-packs)
	}
}

func TestPathMissingIsTerminal(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	c1 := u.commit("routes", map[string]string{"a.yaml": "a\n"})
	u.push("main")
	g, _ := newSource(t, Config{URL: u.bare, Path: "edge/"})
	e := nextErr(t, g)
	if e.Step != StepRead || e.Reason != ReasonPath || e.Transient() || e.Commit != c1 || !strings.Contains(e.Error(), `no directory "edge"`) {
		t.Fatalf("error %+v: %v", e, e)
	}
	// Not retried until the head moves.
	g.Trigger(Trigger{Kind: TriggerPoll})
	quiet(t, g, 500*time.Millisecond)
	c2 := u.commit("add edge", map[string]string{"edge/a.yaml": "a\n"})
	u.push("main")
	g.Trigger(Trigger{Kind: TriggerPoll})
	if rev := next(t, g); rev.Commit != c2 {
		t.Fatalf("got %s, want %s", rev.Commit, c2)
	}
}

func TestTagAndCommitPins(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	c1 := u.commit("v1", map[string]string{"a.yaml": "v1\n"})
	u.git("tag", "-a", "-m", "release 1", "v1")
	c2 := u.commit("v2", map[string]string{"a.yaml": "v2\n"})
	u.push("main", "v1")
	h := startHTTPGit(t, u.root, "", "")

	t.Run("annotated tag", func(t *testing.T) {
		g, _ := newSource(t, Config{URL: h.URL, Tag: "v1"})
		rev := next(t, g)
		if rev.Commit != c1 || rev.Ref != "refs/tags/v1" || readFS(t, rev.Files, "a.yaml") != "v1\n" {
			t.Fatalf("tag v1: %s %s", rev.Commit, rev.Ref)
		}
		g.Trigger(Trigger{Kind: TriggerPoll})
		quiet(t, g, 500*time.Millisecond)
	})
	t.Run("commit", func(t *testing.T) {
		g, _ := newSource(t, Config{URL: h.URL, Commit: c1})
		ads0, _ := h.counts()
		rev := next(t, g)
		if rev.Commit != c1 || readFS(t, rev.Files, "a.yaml") != "v1\n" {
			t.Fatalf("commit pin: %s", rev.Commit)
		}
		// A pinned commit never changes: later looks touch no network.
		ads1, _ := h.counts()
		g.Trigger(Trigger{Kind: TriggerPoll})
		quiet(t, g, 300*time.Millisecond)
		if ads, _ := h.counts(); ads != ads1 || ads1-ads0 != 1 {
			t.Fatalf("ref advertisements: %d for the first look, %d for the second; want 1 and 0", ads1-ads0, ads-ads1)
		}
		_ = c2
	})
	t.Run("missing commit", func(t *testing.T) {
		g, _ := newSource(t, Config{URL: h.URL, Commit: strings.Repeat("ab", 20)})
		if e := nextErr(t, g); e.Step != StepFetch || e.Reason != ReasonNotFound || e.Transient() {
			t.Fatalf("error %+v", e)
		}
	})
	t.Run("missing branch", func(t *testing.T) {
		g, _ := newSource(t, Config{URL: h.URL, Branch: "nope"})
		if e := nextErr(t, g); e.Step != StepFetch || e.Reason != ReasonNotFound || !strings.Contains(e.Error(), "refs/heads/nope") {
			t.Fatalf("error %+v: %v", e, e)
		}
	})
}

// TestShallow follows a branch with depth 1 through several pushes.
func TestShallow(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	for i := range 5 {
		u.commit(fmt.Sprint("c", i), map[string]string{"a.yaml": fmt.Sprint(i, "\n")})
	}
	u.push("main")
	h := startHTTPGit(t, u.root, "", "")
	g, _ := newSource(t, Config{URL: h.URL, Depth: 1})
	rev := next(t, g)
	if readFS(t, rev.Files, "a.yaml") != "4\n" {
		t.Fatal("wrong content")
	}
	shallow, err := os.ReadFile(filepath.Join(g.CacheDir(), "shallow"))
	if err != nil || strings.TrimSpace(string(shallow)) != rev.Commit {
		t.Fatalf("cache is not shallow at the head: %q %v", shallow, err)
	}
	for i := 5; i < 8; i++ {
		c := u.commit(fmt.Sprint("c", i), map[string]string{"a.yaml": fmt.Sprint(i, "\n")})
		u.push("main")
		g.Trigger(Trigger{Kind: TriggerPoll})
		rev := next(t, g)
		if rev.Commit != c || readFS(t, rev.Files, "a.yaml") != fmt.Sprint(i, "\n") || rev.ForcePushed {
			t.Fatalf("push %d: %s forcePushed=%v", i, short(rev.Commit), rev.ForcePushed)
		}
	}
}
