package forge

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// The retry tests run in synctest bubbles over an in-memory transport, so
// every wait is exact on the fake clock. Jitter is fixed at 0: the backoff
// before attempt n+1 is RetryMin<<n / 2, capped at RetryMax/2.

// recv takes the next request inside a bubble (a missing one is a
// deadlock synctest reports).

func TestRetryServerErrorsThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeForge(answer(503, `{"message":"Service Unavailable"}`), answer(502, ``), created)
		g := newRig(t, Config{Kind: GitHub, Repository: "infra/edge"}, f, true)
		start := time.Now()
		g.r.Report(commitA, Success, "")
		a, b, c := f.Recv(), f.Recv(), f.Recv()
		if a.At.Sub(start) != 0 || b.At.Sub(a.At) != 500*time.Millisecond || c.At.Sub(b.At) != time.Second {
			t.Errorf("attempts at +%v, +%v, +%v; want +0, +500ms, +1.5s", a.At.Sub(start), b.At.Sub(start), c.At.Sub(start))
		}
		synctest.Wait()
		if g.count(t, ResultRetry) != 2 || g.count(t, ResultPosted) != 1 || g.count(t, ResultFailed) != 0 {
			t.Errorf("retry=%v posted=%v failed=%v, want 2 1 0", g.count(t, ResultRetry), g.count(t, ResultPosted), g.count(t, ResultFailed))
		}
		// Posted in the end: the earlier 502 is no longer shown.
		if s := g.r.Snapshot().LastError; s != "" {
			t.Errorf("LastError %q after the success, want none", s)
		}
	})
}

// The forge's requested wait replaces the backoff: Retry-After in seconds
// or as a date, and GitHub's x-ratelimit-reset when a 403 or 429 says the
// primary rate limit is spent.
func TestRetryHonoursServerWait(t *testing.T) {
	tests := []struct {
		name    string
		handler func(now time.Time) http.HandlerFunc
		want    time.Duration
	}{
		{"429 Retry-After seconds", func(time.Time) http.HandlerFunc {
			return answer(429, `{"message":"slow down"}`, "Retry-After", "7")
		}, 7 * time.Second},
		{"503 Retry-After date", func(now time.Time) http.HandlerFunc {
			return answer(503, ``, "Retry-After", now.Add(2*time.Minute).UTC().Format(http.TimeFormat))
		}, 2 * time.Minute},
		{"403 secondary rate limit", func(time.Time) http.HandlerFunc {
			return answer(403, `{"message":"You have exceeded a secondary rate limit"}`, "Retry-After", "60")
		}, time.Minute},
		{"403 primary rate limit reset", func(now time.Time) http.HandlerFunc {
			return answer(403, `{"message":"API rate limit exceeded"}`,
				"X-RateLimit-Remaining", "0", "X-RateLimit-Reset", strconv.FormatInt(now.Add(30*time.Second).Unix(), 10))
		}, 31 * time.Second},
		{"409 GitLab lock conflict uses backoff", func(time.Time) http.HandlerFunc {
			return answer(409, `{"message":"Another update to this commit status is in progress"}`)
		}, 500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFakeForge(tt.handler(time.Now()), created)
				g := newRig(t, Config{Kind: GitHub, Repository: "infra/edge"}, f, true)
				g.r.Report(commitA, Pending, "")
				a, b := f.Recv(), f.Recv()
				if got := b.At.Sub(a.At); got != tt.want {
					t.Errorf("retried after %v, want %v", got, tt.want)
				}
				synctest.Wait()
				if g.count(t, ResultPosted) != 1 || g.count(t, ResultRetry) != 1 {
					t.Errorf("posted=%v retry=%v", g.count(t, ResultPosted), g.count(t, ResultRetry))
				}
			})
		})
	}
}

// A forge that never answers costs one Timeout per attempt, then the
// status is retried.
func TestHangTimesOutAndRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeForge(testkit.Hang, created)
		g := newRig(t, Config{Kind: GitLab, API: "https://gitlab.example.org/api/v4", Repository: "infra/edge", Timeout: 10 * time.Second}, f, true)
		start := time.Now()
		g.r.Report(commitA, Success, "")
		a := f.Recv()
		// Between the timeout and the retry the failure is shown, with
		// its time, and names no node-config field that does not exist.
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		s := g.r.Snapshot()
		if want := "no answer within 10s"; !strings.Contains(s.LastError, want) || strings.Contains(s.LastError, "forge.") {
			t.Errorf("LastError %q, want %q and no field name", s.LastError, want)
		}
		if s.LastErrorAt.Sub(start) != 10*time.Second {
			t.Errorf("LastErrorAt +%v, want +10s", s.LastErrorAt.Sub(start))
		}
		b := f.Recv()
		if got := b.At.Sub(a.At); got != 10*time.Second+500*time.Millisecond {
			t.Errorf("second attempt after %v, want the 10s timeout plus 500ms backoff", got)
		}
		synctest.Wait()
		if g.count(t, ResultPosted) != 1 || g.count(t, ResultRetry) != 1 {
			t.Errorf("posted=%v retry=%v", g.count(t, ResultPosted), g.count(t, ResultRetry))
		}
		// The status was posted in the end: the forge works, nothing to show.
		if s := g.r.Snapshot(); s.LastError != "" || !s.LastErrorAt.IsZero() {
			t.Errorf("after the success: LastError %q at %v, want none", s.LastError, s.LastErrorAt)
		}
	})
}

// Past GiveUpAfter a status is dropped with a log line and a metric.
func TestGiveUpAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeForge(answer(500, `{"message":"boom"}`))
		cfg := Config{Kind: GitHub, Repository: "infra/edge", RetryMin: time.Second, RetryMax: 10 * time.Second, GiveUpAfter: time.Minute}
		g := newRig(t, cfg, f, true)
		start := time.Now()
		g.r.Report(commitA, Success, "")
		synctest.Wait() // the first attempt is done; the rest follow the fake clock
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		reqs := f.Requests()
		// Waits 0.5, 1, 2, 4, then 5s each (RetryMax/2): attempts at 0,
		// 0.5, 1.5, 3.5, 7.5, 12.5 … 57.5; the next would start at 62.5s.
		if len(reqs) != 15 || reqs[len(reqs)-1].At.Sub(start) != 57500*time.Millisecond {
			t.Errorf("%d attempts, last at +%v; want 15, last at +57.5s", len(reqs), reqs[len(reqs)-1].At.Sub(start))
		}
		if g.count(t, ResultFailed) != 1 || g.count(t, ResultRetry) != 15 {
			t.Errorf("failed=%v retry=%v, want 1 15", g.count(t, ResultFailed), g.count(t, ResultRetry))
		}
		if s := g.r.Snapshot().LastError; !strings.HasSuffix(s, "giving up after 15 attempts in 58s") {
			t.Errorf("LastError %q", s)
		}
		if !strings.Contains(g.log.Text(), `"msg":"forge status given up"`) {
			t.Errorf("no give-up log line")
		}
	})
}

// While a status waits for its retry, a newer state of the same commit
// replaces it: the retry posts the latest state.
func TestNewerStateReplacesRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeForge(answer(503, ``), created)
		g := newRig(t, Config{Kind: Gitea, API: "https://git.example.org/api/v1", Repository: "infra/edge"}, f, true)
		g.r.Report(commitA, Pending, "")
		if s := decode(t, f.Recv().Body)["state"]; s != "pending" {
			t.Fatalf("first state %v", s)
		}
		synctest.Wait() // waiting for the retry
		g.r.Report(commitA, Success, "applied in 2s")
		b := decode(t, f.Recv().Body)
		if b["state"] != "success" || b["description"] != "applied in 2s" {
			t.Errorf("retry posted %v, want the newer success", b)
		}
		synctest.Wait()
		if n := len(f.Requests()); n != 2 {
			t.Errorf("%d requests, want 2", n)
		}
		if g.count(t, ResultCoalesced) != 1 || g.count(t, ResultPosted) != 1 {
			t.Errorf("coalesced=%v posted=%v", g.count(t, ResultCoalesced), g.count(t, ResultPosted))
		}
	})
}

// A burst for a queued commit posts only its latest state; commits keep
// their order.
func TestQueuedStatesCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		f := newFakeForge(func(w http.ResponseWriter, r *http.Request) { <-release; created(w, r) }, created)
		g := newRig(t, Config{Kind: GitHub, Repository: "infra/edge"}, f, true)
		g.r.Report(commitA, Pending, "")
		f.Recv() // in flight, held
		g.r.Report(commitB, Pending, "")
		g.r.Report(commitB, Success, "")
		g.r.Report(commitC, Failure, "bad")
		g.r.Report(commitB, Error, "vm 101 failed")
		if q := g.r.Snapshot().QueueLength; q != 2 {
			t.Errorf("queue length %d, want 2", q)
		}
		close(release)
		b, c := f.Recv(), f.Recv()
		if !strings.Contains(b.Path, commitB) || decode(t, b.Body)["state"] != "error" || !strings.Contains(c.Path, commitC) {
			t.Errorf("posted %s %s then %s", b.Path, b.Body, c.Path)
		}
		synctest.Wait()
		if n := len(f.Requests()); n != 3 {
			t.Errorf("%d requests, want 3", n)
		}
		if g.count(t, ResultCoalesced) != 2 {
			t.Errorf("coalesced=%v, want 2", g.count(t, ResultCoalesced))
		}
		snap := g.r.Snapshot()
		if len(snap.Statuses) != 3 || snap.Statuses[0].Commit != commitC || snap.Statuses[2].Commit != commitA {
			t.Errorf("snapshot statuses (newest first) %+v", snap.Statuses)
		}
	})
}

// Report returns at once even while the forge hangs and the queue is
// full: the oldest commits are dropped and counted. Real sockets and real
// time, bounded by a deadline.
func TestReportNeverBlocks(t *testing.T) {
	t.Parallel()
	f := newFakeForge(testkit.Hang)
	g := newRig(t, Config{Kind: GitHub, API: "/api/v3", Repository: "infra/edge", Timeout: time.Hour}, f, false)
	g.r.Report(commitA, Pending, "")
	f.Next(t) // the worker is now stuck in a request that never ends
	const n = 10000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			g.r.Report(fmt.Sprintf("%040x", i+1), Pending, "")
		}
	}()
	select {
	case <-done:
	case <-time.After(testkit.Deadline): // blocked: a slow machine under -race takes seconds, not forever
		t.Fatalf("Report blocked: 10,000 calls did not return within %s", testkit.Deadline)
	}
	if q := g.r.Snapshot().QueueLength; q != 64 {
		t.Errorf("queue length %d, want the default QueueSize 64", q)
	}
	if d := g.count(t, ResultDropped); d != n-64 {
		t.Errorf("dropped %v, want %d", d, n-64)
	}
	if v := testkit.MetricValue(t, g.reg, MetricQueueLength, nil); v != 64 {
		t.Errorf("%s = %v, want 64", MetricQueueLength, v)
	}
}

func TestRunOnceAndNil(t *testing.T) {
	t.Parallel()
	g := newRig(t, Config{Kind: GitHub, API: "/", Repository: "infra/edge"}, newFakeForge(), false)
	once, err := New(Config{Kind: GitHub, Repository: "infra/edge", Node: "lb-0", TokenFile: testkit.TempFile(t, "t", testToken)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if err := once.Run(stopped); err != nil {
		t.Errorf("Run on a cancelled context: %v, want nil", err)
	}
	if err := once.Run(stopped); err == nil || err.Error() != "forge github infra/edge (gitedge/lb-0): Run called twice" {
		t.Errorf("second Run: %v", err)
	}
	var r *Reporter
	r.Report(commitA, Success, "") // no forge configured: nothing happens
	if s := r.Snapshot(); s.Forge != "" || s.Statuses != nil {
		t.Errorf("nil Snapshot %+v", s)
	}
	if err := r.Run(context.Background()); err != nil {
		t.Errorf("nil Run: %v", err)
	}
	// Bad input from the caller is logged, never posted.
	g.r.Report("main", Success, "")
	g.r.Report(commitA, "done", "")
	if q := g.r.Snapshot().QueueLength; q != 0 {
		t.Errorf("queued %d bad reports", q)
	}
}

// A wait the forge asks for holds every status, not only the one that got
// it: a status given up because the wait is past GiveUpAfter does not let
// the next one hammer a rate-limited forge.
func TestRateLimitHoldsEveryStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeForge(answer(429, `{"message":"slow down"}`, "Retry-After", "60"), created)
		g := newRig(t, Config{Kind: GitHub, Repository: "infra/edge", GiveUpAfter: 10 * time.Second}, f, true)
		start := time.Now()
		g.r.Report(commitA, Success, "")
		g.r.Report(commitB, Success, "")
		a, b := f.Recv(), f.Recv()
		if !strings.Contains(a.Path, commitA) || !strings.Contains(b.Path, commitB) || b.At.Sub(start) != time.Minute {
			t.Errorf("%s at +0, then %s at +%v; want %s after the 60s asked for", a.Path, b.Path, b.At.Sub(start), commitB)
		}
		synctest.Wait()
		if g.count(t, ResultFailed) != 1 || g.count(t, ResultPosted) != 1 {
			t.Errorf("failed=%v posted=%v", g.count(t, ResultFailed), g.count(t, ResultPosted))
		}
	})
}
