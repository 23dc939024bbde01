package notify

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// Repeats of an event inside the window are held back and counted; when
// the window ends the newest is sent with the count, and a new window
// starts. Fake clock: every time below is exact.
func TestRateLimitRepeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := testkit.NewReceiver()
		g := newRig(t, Config{Window: 5 * time.Minute, Sinks: []SinkConfig{{Kind: Webhook, URL: "/"}}}, []*testkit.Receiver{rc}, true)
		start := time.Now()
		down := func(reason string) Event { return ServerDown("web", "192.0.2.10:80", reason, 1) }
		at := func(r testkit.Request) time.Duration { return r.At.Sub(start) }

		g.n.Notify(down("timeout"))
		if r := rc.Recv(); at(r) != 0 || event(t, r.Body).Repeats != 0 {
			t.Errorf("first notice at +%v: %s", at(r), r.Body)
		}
		for range 9 { // nine repeats within 3m45s
			time.Sleep(25 * time.Second)
			g.n.Notify(down("timeout"))
		}
		synctest.Wait()
		if n := len(rc.Requests()); n != 1 {
			t.Fatalf("%d notices inside the window, want 1", n)
		}
		r := rc.Recv() // when the window ends
		e := event(t, r.Body)
		if at(r) != 5*time.Minute || e.Repeats != 9 || e.Message != "timeout; 1 healthy left" || !e.Time.Equal(start.Add(225*time.Second)) {
			t.Errorf("held-back notice at +%v %+v; want at +5m the newest of the 9 (at +3m45s), Repeats 9", at(r), e)
		}
		synctest.Wait()
		if g.count(t, Webhook, ResultSuppressed) != 9 || g.count(t, Webhook, ResultSent) != 2 {
			t.Errorf("suppressed=%v sent=%v", g.count(t, Webhook, ResultSuppressed), g.count(t, Webhook, ResultSent))
		}

		// A different message is a different event: sent at once.
		time.Sleep(time.Minute)
		g.n.Notify(down("connection refused"))
		if r := rc.Recv(); at(r) != 6*time.Minute || event(t, r.Body).Repeats != 0 {
			t.Errorf("different message at +%v: %s", at(r), r.Body)
		}
		// Both are now inside their windows. The server says "refused"
		// again, then "timeout": the newest state is "timeout", so when the
		// windows end only that is sent; the older "refused" is not.
		time.Sleep(10 * time.Second)
		g.n.Notify(down("connection refused"))
		time.Sleep(10 * time.Second)
		g.n.Notify(down("timeout"))
		time.Sleep(30 * time.Minute)
		synctest.Wait()
		if n := len(rc.Requests()); n != 4 {
			t.Fatalf("%d notices, want 4", n)
		}
		r = rc.Recv()
		if last := event(t, r.Body); at(r) != 10*time.Minute || last.Message != "timeout; 1 healthy left" || last.Repeats != 1 {
			t.Errorf("last notice at +%v %+v; want at +10m the timeout, Repeats 1", at(r), last)
		}

		// After a quiet window the same event goes out at once.
		g.n.Notify(down("timeout"))
		if r := rc.Recv(); at(r) != 36*time.Minute+20*time.Second || event(t, r.Body).Repeats != 0 {
			t.Errorf("after the window: +%v %s", at(r), r.Body)
		}
		synctest.Wait()
		if s := g.n.Snapshot().Sinks[0]; s.Suppressed != 11 || s.Sent != 5 || s.OpenAlerts != 1 {
			t.Errorf("snapshot %+v", s)
		}
	})
}

// A flapping server: down and up alternate inside the window. Whatever
// the order, the last notice about the server tells its current state.
func TestRateLimitFlapEndsWithCurrentState(t *testing.T) {
	for _, tt := range []struct {
		name string
		seq  []Kind
	}{
		{"ends down", []Kind{KindServerDown, KindServerUp, KindServerDown, KindServerUp, KindServerDown}},
		{"ends up", []Kind{KindServerDown, KindServerUp, KindServerDown, KindServerUp, KindServerDown, KindServerUp}},
		{"ends up after a down held back", []Kind{KindServerDown, KindServerUp, KindServerDown, KindServerUp}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rc := testkit.NewReceiver()
				g := newRig(t, Config{Window: 5 * time.Minute, Sinks: []SinkConfig{{Kind: Webhook, URL: "/", MinSeverity: Info}}},
					[]*testkit.Receiver{rc}, true)
				for _, k := range tt.seq {
					e := ServerUp("web", "192.0.2.10:80")
					if k == KindServerDown {
						e = ServerDown("web", "192.0.2.10:80", "timeout", 0)
					}
					g.n.Notify(e)
					time.Sleep(10 * time.Second)
				}
				time.Sleep(20 * time.Minute)
				synctest.Wait()
				reqs := rc.Requests()
				last := event(t, reqs[len(reqs)-1].Body)
				if want := tt.seq[len(tt.seq)-1]; last.Kind != want {
					var kinds []Kind
					for _, r := range reqs {
						kinds = append(kinds, event(t, r.Body).Kind)
					}
					t.Errorf("notices %v: the last is %s, want %s", kinds, last.Kind, want)
				}
				if len(reqs) > 3 {
					t.Errorf("%d notices for a flap in one window, want at most 3", len(reqs))
				}
			})
		})
	}
}

// Rate limiting is per sink: a sink that filters an event by severity
// does not count it.
func TestRateLimitPerSink(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		all, crit := testkit.NewReceiver(), testkit.NewReceiver()
		g := newRig(t, Config{Sinks: []SinkConfig{
			{Kind: Webhook, URL: "/", MinSeverity: Info},
			{Kind: Slack, URL: "/", MinSeverity: Critical},
		}}, []*testkit.Receiver{all, crit}, true)
		for range 3 {
			g.n.Notify(VRRPTransition("vi_1", "BACKUP", "MASTER"))
		}
		synctest.Wait()
		if g.count(t, Webhook, ResultSuppressed) != 2 || g.count(t, Slack, ResultSuppressed) != 0 || len(crit.Requests()) != 0 {
			t.Errorf("webhook suppressed=%v slack suppressed=%v slack got %d",
				g.count(t, Webhook, ResultSuppressed), g.count(t, Slack, ResultSuppressed), len(crit.Requests()))
		}
	})
}
