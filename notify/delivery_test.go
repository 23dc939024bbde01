package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// Jitter is fixed at 0 in the rig: the wait before attempt n+1 is
// RetryMin<<n / 2, capped at RetryMax/2.

func TestRetryThenDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := testkit.NewReceiver(testkit.Answer(500, "boom"), testkit.Answer(429, "rate_limited", "Retry-After", "3"), testkit.Hang, ok)
		g := newRig(t, Config{Timeout: 10 * time.Second, Sinks: []SinkConfig{{Kind: Slack, URL: "/services/x"}}}, []*testkit.Receiver{rc}, true)
		g.n.Notify(ApplyFailed("0123456789abcdef0123456789abcdef01234567", &testErr{"x"}))
		a, b, c := rc.Recv(), rc.Recv(), rc.Recv()
		// The hang's timeout is shown, with its time, until the retry.
		time.Sleep(10*time.Second + time.Millisecond)
		synctest.Wait()
		if s := g.n.Snapshot().Sinks[0]; s.LastError != "no answer within 10s" || s.LastErrorAt.Sub(c.At) != 10*time.Second {
			t.Errorf("during the retry: LastError %q at +%v, want the timeout 10s after the third attempt", s.LastError, s.LastErrorAt.Sub(c.At))
		}
		d := rc.Recv()
		// 500 → backoff 0.5s; 429 → Retry-After 3s; testkit.Hang → 10s timeout, then backoff 2s.
		if b.At.Sub(a.At) != 500*time.Millisecond || c.At.Sub(b.At) != 3*time.Second || d.At.Sub(c.At) != 12*time.Second {
			t.Errorf("attempts at +0, +%v, +%v, +%v; want +0.5s, +3.5s, +15.5s", b.At.Sub(a.At), c.At.Sub(a.At), d.At.Sub(a.At))
		}
		if !bytes.Equal(a.Body, d.Body) {
			t.Errorf("the retry sent a different body")
		}
		synctest.Wait()
		if g.count(t, Slack, ResultSent) != 1 || g.count(t, Slack, ResultFailed) != 0 {
			t.Errorf("sent=%v failed=%v", g.count(t, Slack, ResultSent), g.count(t, Slack, ResultFailed))
		}
		// Delivered in the end: the failures are history.
		if s := g.n.Snapshot().Sinks[0]; s.LastError != "" || !s.LastErrorAt.IsZero() || s.Sent != 1 {
			t.Errorf("snapshot %+v, want no error after the delivery", s)
		}
	})
}

// A 4xx other than 408, 425 and 429 is given up at once, and the sink goes
// on with the next notification.
func TestRefusedIsGivenUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := testkit.NewReceiver(testkit.Answer(404, "no_service"), ok)
		g := newRig(t, Config{Sinks: []SinkConfig{{Kind: Slack, URL: "/services/T0/B0/gone"}}}, []*testkit.Receiver{rc}, true)
		g.n.Notify(ServerDown("web", "192.0.2.10:80", "", 0))
		rc.Recv()
		synctest.Wait()
		if s := g.n.Snapshot().Sinks[0]; s.LastError != "answered 404 Not Found: no_service" || s.LastErrorAt.IsZero() {
			t.Errorf("after the 404: LastError %q at %v", s.LastError, s.LastErrorAt)
		}
		g.n.Notify(ServerDown("api", "192.0.2.20:80", "", 0))
		if r := rc.Recv(); !strings.Contains(string(r.Body), "backend api") {
			t.Errorf("second request %s", r.Body)
		}
		synctest.Wait()
		if len(rc.Requests()) != 2 || g.count(t, Slack, ResultFailed) != 1 || g.count(t, Slack, ResultSent) != 1 {
			t.Errorf("requests=%d failed=%v sent=%v", len(rc.Requests()), g.count(t, Slack, ResultFailed), g.count(t, Slack, ResultSent))
		}
		if s := g.n.Snapshot().Sinks[0]; s.LastError != "" || s.Failed != 1 {
			t.Errorf("after a later delivery: LastError %q, failed %d; want none, 1", s.LastError, s.Failed)
		}
		if log := g.log.Text(); !strings.Contains(log, `"msg":"notification given up"`) || !strings.Contains(log, `"code":404`) {
			t.Errorf("no give-up log line:\n%s", log)
		}
	})
}

func TestMaxAttempts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := testkit.NewReceiver(testkit.Answer(503, ""))
		g := newRig(t, Config{MaxAttempts: 4, Sinks: []SinkConfig{{Kind: Alertmanager, URL: ""}}}, []*testkit.Receiver{rc}, true)
		g.n.Notify(VRRPTransition("vi_1", "MASTER", "FAULT"))
		time.Sleep(time.Hour)
		synctest.Wait()
		if n := len(rc.Requests()); n != 4 {
			t.Errorf("%d attempts, want 4", n)
		}
		if g.count(t, Alertmanager, ResultFailed) != 1 {
			t.Errorf("failed=%v", g.count(t, Alertmanager, ResultFailed))
		}
		if s := g.n.Snapshot().Sinks[0].LastError; s != "answered 503 Service Unavailable; giving up after 4 attempts" {
			t.Errorf("LastError %q", s)
		}
	})
}

// Notify returns at once while a receiver hangs and the queue is full: the
// oldest are dropped and counted. Real sockets and real time, bounded.
func TestNotifyNeverBlocks(t *testing.T) {
	t.Parallel()
	rc := testkit.NewReceiver(testkit.Hang)
	g := newRig(t, Config{Timeout: time.Hour, Sinks: []SinkConfig{{Kind: Webhook, URL: "/"}}}, []*testkit.Receiver{rc}, false)
	g.n.Notify(DriftCorrected("lb-1", 101, "first"))
	rc.Next(t) // the sink is now stuck in a request that never ends
	const n = 10000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			g.n.Notify(DriftCorrected("lb-1", 101, fmt.Sprintf("change %d", i))) // distinct: not rate-limited
		}
	}()
	select {
	case <-done:
	case <-time.After(testkit.Deadline): // blocked: a slow machine under -race takes seconds, not forever
		t.Fatalf("Notify blocked: 10,000 calls did not return within %s", testkit.Deadline)
	}
	s := g.n.Snapshot().Sinks[0]
	if s.QueueLength != 100 || s.Dropped != n-100 || g.count(t, Webhook, ResultDropped) != n-100 {
		t.Errorf("queue %d dropped %d (metric %v); want 100 and %d", s.QueueLength, s.Dropped, g.count(t, Webhook, ResultDropped), n-100)
	}
	if v := testkit.MetricValue(t, g.reg, MetricQueueLength, map[string]string{"sink": "webhook"}); v != 100 {
		t.Errorf("%s = %v", MetricQueueLength, v)
	}
}

// Secrets never show: not the Slack URL's path, not the webhook's HMAC key
// nor Alertmanager's token, in any log line, error or snapshot, even when
// the receiver echoes them back.
func TestSecretsNeverShown(t *testing.T) {
	t.Parallel()
	const path = "/services/T0SECRET/B0SECRET/XXXXSECRETXXXX"
	const key, tok = "hmac-SECRET-key-19ab", "am-SECRET-token-c3"
	echo := func(code int) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			testkit.Answer(code, "bad "+r.URL.String()+" "+r.Header.Get("Authorization"))(w, r)
		}
	}
	slack, hook, am := testkit.NewReceiver(echo(500), echo(400)), testkit.NewReceiver(echo(500), echo(403)), testkit.NewReceiver(echo(500), echo(401))
	cfg := Config{RetryMin: time.Millisecond, RetryMax: time.Millisecond, Sinks: []SinkConfig{
		{Kind: Slack, URL: path},
		{Kind: Webhook, URL: path, SecretFile: testkit.TempFile(t, "key", key)},
		{Kind: Alertmanager, URL: "/?x=SECRET", SecretFile: testkit.TempFile(t, "tok", tok)}, // an Alertmanager path is shown, a query never
	}}
	g := newRig(t, cfg, []*testkit.Receiver{slack, hook, am}, false)
	g.n.Notify(ApplyFailed("0123456789abcdef0123456789abcdef01234567", &testErr{"x"}))
	for _, rc := range []*testkit.Receiver{slack, hook, am} {
		rc.Next(t)
		rc.Next(t)
	}
	waitLogs(t, g.log, "notification given up", 3)
	snap, _ := json.Marshal(g.n.Snapshot())
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("x", "notifier", g.n, "secret", g.n.sinks[1].secret)
	outputs := map[string]string{
		"log":      g.log.Text(),
		"snapshot": string(snap),
		"fmt":      fmt.Sprintf("%v %+v %#v %s", g.n, g.n.sinks[1].secret, g.n.sinks[2].secret, g.n.sinks[1].secret),
		"slog":     b.String(),
	}
	for name, out := range outputs {
		if strings.Contains(out, "SECRET") {
			t.Errorf("%s shows a secret:\n%s", name, out)
		}
	}
	if !strings.Contains(outputs["log"], "answered 400 Bad Request: bad ") || !strings.Contains(outputs["snapshot"], "/…") {
		t.Errorf("the echoed errors did not reach the log and snapshot (the check proves nothing):\n%s\n%s", outputs["log"], outputs["snapshot"])
	}
}

// Alertmanager expects open alerts to be sent again while they last: a
// server still down is resent every ResendInterval until it is up.
func TestAlertmanagerResendsOpenAlerts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rc := testkit.NewReceiver()
		g := newRig(t, Config{ResendInterval: time.Minute, Sinks: []SinkConfig{{Kind: Alertmanager, URL: ""}}}, []*testkit.Receiver{rc}, true)
		start := time.Now()
		g.n.Notify(ServerDown("web", "192.0.2.10:80", "timeout", 0))
		g.n.Notify(ServerDown("api", "192.0.2.20:80", "timeout", 3))
		g.n.Notify(VRRPTransition("vi_1", "BACKUP", "MASTER")) // one-off: never resent
		for range 3 {
			rc.Recv()
		}
		alerts := func(r testkit.Request) []amAlert {
			var a []amAlert
			if err := json.Unmarshal(r.Body, &a); err != nil {
				t.Fatal(err)
			}
			return a
		}
		r := rc.Recv()
		if a := alerts(r); r.At.Sub(start) != time.Minute || len(a) != 2 || a[0].Labels["backend"] != "api" ||
			a[1].Labels["backend"] != "web" || !a[1].StartsAt.Equal(start) || !a[1].EndsAt.IsZero() ||
			a[1].Labels["severity"] != "critical" || a[0].Labels["severity"] != "warning" {
			t.Errorf("resend at +%v: %s", r.At.Sub(start), r.Body)
		}
		time.Sleep(30 * time.Second)
		g.n.Notify(ServerUp("web", "192.0.2.10:80"))
		if a := alerts(rc.Recv()); len(a) != 1 || a[0].Labels["severity"] != "critical" || !a[0].EndsAt.Equal(start.Add(90*time.Second)) {
			t.Errorf("resolve %+v", a)
		}
		r = rc.Recv()
		if a := alerts(r); r.At.Sub(start) != 2*time.Minute || len(a) != 1 || a[0].Labels["backend"] != "api" {
			t.Errorf("resend at +%v: %s", r.At.Sub(start), r.Body)
		}
		g.n.Notify(ServerUp("api", "192.0.2.20:80"))
		rc.Recv()
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := len(rc.Requests()); n != 7 {
			t.Errorf("%d requests; nothing is resent once every alert is resolved", n)
		}
		if s := g.n.Snapshot().Sinks[0]; s.OpenAlerts != 0 {
			t.Errorf("open alerts %d", s.OpenAlerts)
		}
	})
}

func TestRunOnceAndNil(t *testing.T) {
	t.Parallel()
	n, err := New(Config{Node: "lb-0", Sinks: []SinkConfig{{Kind: Webhook, URL: "https://h.example/"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if err := n.Run(stopped); err != nil {
		t.Errorf("Run on a cancelled context: %v", err)
	}
	if err := n.Run(stopped); err == nil || err.Error() != "notify [webhook]: Run called twice" {
		t.Errorf("second Run: %v", err)
	}
	var none *Notifier
	none.Notify(ServerUp("web", "x"))
	if s := none.Snapshot(); s.Sinks != nil {
		t.Errorf("nil snapshot %+v", s)
	}
	if err := none.Run(stopped); err != nil {
		t.Errorf("nil Run: %v", err)
	}
	n.Notify(Event{Kind: "reboot", Severity: Critical}) // a caller's bug: logged, not queued
	n.Notify(Event{Kind: KindServerUp, Severity: "loud"})
	if q := n.Snapshot().Sinks[0].QueueLength; q != 0 {
		t.Errorf("queued %d bad events", q)
	}
}

// Redirects are not followed: a secret header or signature must not
// travel to another host.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	elsewhere := testkit.NewReceiver()
	rc := testkit.NewReceiver(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://elsewhere.example/x", http.StatusTemporaryRedirect)
	})
	g := newRig(t, Config{Sinks: []SinkConfig{{Kind: Alertmanager, URL: ""}}}, []*testkit.Receiver{rc}, false)
	g.n.Notify(ServerDown("web", "192.0.2.10:80", "", 0))
	rc.Next(t)
	waitLogs(t, g.log, "notification given up", 1)
	if len(elsewhere.Requests()) != 0 || !strings.Contains(g.n.Snapshot().Sinks[0].LastError, "redirects are not followed") {
		t.Errorf("LastError %q", g.n.Snapshot().Sinks[0].LastError)
	}
}
