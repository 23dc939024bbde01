package gitsource

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gitedge/gitedge/internal/testkit"
)

// lineCounter is a slog handler that counts records by message and keeps
// their text.
type lineCounter struct {
	mu    sync.Mutex
	lines []string
	inner slog.Handler
	buf   *bytes.Buffer
}

func newLineCounter() *lineCounter {
	c := &lineCounter{buf: &bytes.Buffer{}}
	c.inner = slog.NewTextHandler(c.buf, &slog.HandlerOptions{Level: slog.LevelDebug})
	return c
}

func (c *lineCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *lineCounter) Handle(ctx context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Reset()
	c.inner.Handle(ctx, r)
	c.lines = append(c.lines, strings.TrimSpace(c.buf.String()))
	return nil
}
func (c *lineCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *lineCounter) WithGroup(string) slog.Handler      { return c }

// warnings returns the lines at WARN and above.
func (c *lineCounter) warnings() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, l := range c.lines {
		if strings.Contains(l, "level=WARN") || strings.Contains(l, "level=ERROR") {
			out = append(out, l)
		}
	}
	return out
}

func guardWebhook(t testing.TB, cfg WebhookConfig, notify func(Trigger), h slog.Handler) (*Webhook, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.SecretFile = testkit.TempFile(t, "secret", testSecret+"\n")
	if h == nil {
		h = testkit.Logger(t, slog.LevelDebug).Handler()
	}
	w, err := NewWebhook(cfg, notify, Options{Registry: reg, Logger: slog.New(h)})
	if err != nil {
		t.Fatal(err)
	}
	return w, reg
}

// serveWebhook serves w on a loopback port until the test ends.
func serveWebhook(t testing.TB, w *Webhook) string {
	t.Helper()
	ln := testkit.Listen(t)
	testkit.Run(t, func(ctx context.Context) error { return w.Serve(ctx, ln) })
	return ln.Addr().String()
}

// untouchable is a body the handler must not read.
type untouchable struct{ read atomic.Bool }

func (u *untouchable) Read(p []byte) (int, error) {
	u.read.Store(true)
	return 0, io.ErrUnexpectedEOF
}

// TestWebhookRefusedOnHeaders: what the headers alone can tell is refused
// before a byte of the body is read.
func TestWebhookRefusedOnHeaders(t *testing.T) {
	t.Parallel()
	push := testdataPayload(t, "github-push.json")
	for _, tc := range []struct {
		name   string
		forge  Forge
		edit   func(r *http.Request)
		code   int
		reason string
	}{
		{"github unsigned", ForgeGitHub, func(r *http.Request) { r.Header.Del(HeaderGitHubSignature) }, 401, refusedUnsigned},
		{"github not hex", ForgeGitHub, func(r *http.Request) { r.Header.Set(HeaderGitHubSignature, "sha256="+strings.Repeat("zz", 32)) }, 403, refusedBadSignature},
		{"github short", ForgeGitHub, func(r *http.Request) { r.Header.Set(HeaderGitHubSignature, "sha256=abcd") }, 403, refusedBadSignature},
		{"github sha1", ForgeGitHub, func(r *http.Request) { r.Header.Set(HeaderGitHubSignature, "sha1="+strings.Repeat("ab", 20)) }, 403, refusedBadSignature},
		{"gitea unsigned", ForgeGitea, func(r *http.Request) { r.Header.Del(HeaderGiteaSignature); r.Header.Del(HeaderGitHubSignature) }, 401, refusedUnsigned},
		{"gitlab wrong token", ForgeGitLab, func(r *http.Request) { r.Header.Set(HeaderGitLabToken, "guess") }, 403, refusedBadSignature},
		{"generic unsigned", ForgeGeneric, func(r *http.Request) { r.Header.Del(HeaderGenericSignature) }, 401, refusedUnsigned},
		{"declared too large", ForgeGitHub, func(r *http.Request) { r.ContentLength = 5 << 20 }, 413, refusedTooLarge},
		{"not POST", ForgeGitHub, func(r *http.Request) { r.Method = http.MethodPut }, 405, refusedMethod},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			w, reg := guardWebhook(t, WebhookConfig{}, rec.notify, nil)
			r := forgeRequest(t, "/hook", tc.forge, "push", push, "good")
			tc.edit(r)
			body := &untouchable{}
			r.Body = io.NopCloser(body)
			rw := httptest.NewRecorder()
			w.ServeHTTP(rw, r)
			if rw.Code != tc.code || body.read.Load() || rec.count() != 0 || rw.Header().Get("Connection") != "close" {
				t.Fatalf("status %d (%s), body read %v, connection %q; want %d, unread, closed",
					rw.Code, strings.TrimSpace(rw.Body.String()), body.read.Load(), rw.Header().Get("Connection"), tc.code)
			}
			if n := testutil.ToFloat64(w.refused.WithLabelValues(tc.reason)); n != 1 {
				t.Fatalf("refused{reason=%s} = %v", tc.reason, n)
			}
			if n, err := testutilCount(reg, MetricWebhookRefused); n != 1 || err != nil {
				t.Fatalf("%s = %d, %v", MetricWebhookRefused, n, err)
			}
		})
	}
}

// TestWebhookReplay: a delivery sent again (same id) is answered and not
// handed on; an unsigned or forged request with a known id is refused as
// any other; the memory of ids is bounded.
func TestWebhookReplay(t *testing.T) {
	t.Parallel()
	for _, f := range pushes {
		t.Run(string(f.forge), func(t *testing.T) {
			t.Parallel()
			var rec recorder
			w, _ := guardWebhook(t, WebhookConfig{Ref: "refs/heads/main", Deliveries: 2}, rec.notify, nil)
			body := testdataPayload(t, f.payload)
			deliver := func(r *http.Request) (int, string) {
				rw := httptest.NewRecorder()
				w.ServeHTTP(rw, r)
				return rw.Code, strings.TrimSpace(rw.Body.String())
			}
			first := forgeRequest(t, "/hook", f.forge, f.event, body, "good")
			again := func(sig string) *http.Request {
				r := forgeRequest(t, "/hook", f.forge, f.event, body, sig)
				for _, h := range []string{HeaderGitHubDelivery, HeaderGiteaDelivery, HeaderGitLabUUID, HeaderIdempotencyKey, HeaderGenericDelivery} {
					if v := first.Header.Get(h); v != "" {
						r.Header.Set(h, v)
					}
				}
				return r
			}
			if DeliveryID(f.forge, first.Header) == "" {
				t.Fatalf("no delivery id in %v", first.Header)
			}
			if code, msg := deliver(first); code != http.StatusAccepted || rec.count() != 1 {
				t.Fatalf("first: %d %s", code, msg)
			}
			if code, msg := deliver(again("good")); code != http.StatusOK || !strings.Contains(msg, "duplicate delivery") || rec.count() != 1 {
				t.Fatalf("replay: %d %s, %d triggers", code, msg, rec.count())
			}
			if code, _ := deliver(again("bad")); code != http.StatusForbidden {
				t.Fatalf("forged replay: %d", code)
			}
			// Two other deliveries push the first id out of memory.
			deliver(forgeRequest(t, "/hook", f.forge, f.event, body, "good"))
			deliver(forgeRequest(t, "/hook", f.forge, f.event, body, "good"))
			if code, _ := deliver(again("good")); code != http.StatusAccepted || rec.count() != 4 {
				t.Fatalf("forgotten id: %d, %d triggers", code, rec.count())
			}
		})
	}
}

// TestWebhookLargeBody: a signed body over what is kept for the parser is
// hashed whole and parsed from its beginning; past MaxBody it is refused.
func TestWebhookLargeBody(t *testing.T) {
	t.Parallel()
	commits := strings.Repeat(`{"id":"0000000000000000000000000000000000000000","message":"padding","added":["a.yaml"]},`, 3000)
	pushTo := func(ref string) []byte {
		return []byte(`{"ref":"` + ref + `","before":"0000000000000000000000000000000000000000","after":"1f0e2d3c4b5a69788796a5b4c3d2e1f0a1b2c3d4","commits":[` + commits + `{}]}`)
	}
	refLast := []byte(`{"commits":[` + commits + `{}],"ref":"refs/heads/other"}`)
	form := func(b []byte) []byte { return []byte("payload=" + url.QueryEscape(string(b))) }
	if len(pushTo("refs/heads/main")) < 4*keepBytes {
		t.Fatal("test body too small")
	}
	for _, tc := range []struct {
		name     string
		body     []byte
		form     bool
		sig      string
		code     int
		triggers int
	}{
		{"followed branch", pushTo("refs/heads/main"), false, "good", 202, 1},
		{"other branch", pushTo("refs/heads/other"), false, "good", 200, 0},
		{"form, followed branch", form(pushTo("refs/heads/main")), true, "good", 202, 1},
		{"form, other branch", form(pushTo("refs/heads/other")), true, "good", 200, 0},
		{"ref past what is kept: look again", refLast, false, "good", 202, 1},
		{"bad signature", pushTo("refs/heads/main"), false, "bad", 403, 0},
		{"over MaxBody", append(pushTo("refs/heads/main"), bytes.Repeat([]byte(" "), 2<<20)...), false, "good", 413, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			w, _ := guardWebhook(t, WebhookConfig{Ref: "refs/heads/main"}, rec.notify, nil)
			r := forgeRequest(t, "/hook", ForgeGitHub, "push", tc.body, tc.sig)
			if tc.form {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			r.ContentLength = -1 // as chunked: found over MaxBody while reading
			rw := httptest.NewRecorder()
			w.ServeHTTP(rw, r)
			if rw.Code != tc.code || rec.count() != tc.triggers {
				t.Fatalf("status %d (%s), %d triggers; want %d, %d", rw.Code, strings.TrimSpace(rw.Body.String()), rec.count(), tc.code, tc.triggers)
			}
		})
	}
}

// TestAdmission pins the body slots: a per-source share, a bounded queue
// that makes room for a new source, the wait, a freed slot going to the
// source reading the fewest, and a slow body cut for a waiter.
func TestAdmission(t *testing.T) {
	t.Parallel()
	var inflight atomic.Int64
	queued := func(a *admission, n int) func() bool {
		return func() bool { a.mu.Lock(); defer a.mu.Unlock(); return len(a.queue) == n }
	}
	a := newAdmission(2, 1, time.Hour, time.Hour, func(d float64) { inflight.Add(int64(d)) })
	slA, why := a.acquire("a")
	if why != "" {
		t.Fatal(why)
	}
	// a's share is taken: a second body from a waits, as does c's later.
	gotA := make(chan *slot, 1)
	go func() { sl, _ := a.acquire("a"); gotA <- sl }()
	testkit.WaitFor(t, "1 waiting", queued(a, 1))
	slB, why := a.acquire("b")
	if why != "" || inflight.Load() != 2 {
		t.Fatalf("b: %q, in flight %d", why, inflight.Load())
	}
	gotC := make(chan *slot, 1)
	go func() { sl, _ := a.acquire("c"); gotC <- sl }()
	testkit.WaitFor(t, "2 waiting", queued(a, 2))
	// b's slot goes to c, which reads nothing, not to a, which waited
	// first but already reads its share.
	slB.release()
	slC := <-gotC
	select {
	case <-gotA:
		t.Fatal("a's second body got b's slot")
	default:
	}
	slA.release()
	slA2 := <-gotA // now a reads nothing: its waiter goes
	slC.release()
	slA2.release()
	slA2.release() // twice is harmless
	if inflight.Load() != 0 || a.free != 2 || len(a.slots) != 0 || len(a.reading) != 0 || len(a.waiting) != 0 {
		t.Fatalf("in flight %d, free %d, %d slots, %v reading, %v waiting after all released",
			inflight.Load(), a.free, len(a.slots), a.reading, a.waiting)
	}

	// A source waits with at most max others of its own; the wait is
	// bounded.
	b := newAdmission(1, 1, 50*time.Millisecond, time.Hour, func(float64) {})
	sl, _ := b.acquire("x")
	var wg sync.WaitGroup
	results := make(chan string, 10)
	for range 3 {
		wg.Go(func() { _, why := b.acquire("y"); results <- why })
	}
	wg.Wait()
	close(results)
	var busy, source int
	for r := range results {
		switch r {
		case refusedBusy:
			busy++
		case refusedSourceBusy:
			source++
		}
	}
	if busy != 1 || source != 2 {
		t.Fatalf("3 waiters from one source, share 1: %d timed out, %d refused at once; want 1, 2", busy, source)
	}
	sl.release()

	// A full queue of one greedy source makes room for a new source.
	c := newAdmission(2, 4, time.Hour, time.Hour, func(float64) {})
	c.maxQueue, c.maxWaiting = 2, 2
	held, _ := c.acquire("greedy")
	c.acquire("greedy") // it reads two bodies
	evicted := make(chan string, 8)
	for range 2 {
		go func() { _, why := c.acquire("greedy"); evicted <- why }()
	}
	testkit.WaitFor(t, "2 waiting", queued(c, 2))
	if _, why := c.acquire("greedy"); why != refusedSourceBusy {
		t.Fatalf("a third greedy waiter: %q", why)
	}
	newcomer := make(chan *slot, 1)
	go func() { sl, _ := c.acquire("new"); newcomer <- sl }()
	if why := <-evicted; why != refusedBusy {
		t.Fatalf("evicted waiter: %q", why)
	}
	testkit.WaitFor(t, "2 waiting", queued(c, 2))
	held.release()
	if sl := <-newcomer; sl == nil || sl.src != "new" {
		t.Fatal("the newcomer did not get the freed slot")
	}

	// Among sources reading nothing, the one never served goes first,
	// though it came last.
	e := newAdmission(1, 1, time.Hour, time.Hour, func(float64) {})
	first, _ := e.acquire("flood")
	first.release() // flood has been served
	hold, _ := e.acquire("other")
	gotFlood, gotForge := make(chan *slot, 1), make(chan *slot, 1)
	go func() { sl, _ := e.acquire("flood"); gotFlood <- sl }()
	testkit.WaitFor(t, "1 waiting", queued(e, 1))
	go func() { sl, _ := e.acquire("forge"); gotForge <- sl }()
	testkit.WaitFor(t, "2 waiting", queued(e, 2))
	hold.release()
	select {
	case sl := <-gotForge:
		sl.release()
	case <-gotFlood:
		t.Fatal("the waiter of a source served before went first")
	}
	(<-gotFlood).release()

	// A waiter cuts the oldest body once it has lasted preemptAfter.
	d := newAdmission(1, 1, time.Hour, 10*time.Millisecond, func(float64) {})
	slow, _ := d.acquire("slow")
	cut := make(chan struct{})
	slow.setCut(func() { close(cut) })
	time.Sleep(20 * time.Millisecond) // let the slow body age past preemptAfter
	got := make(chan *slot, 1)
	go func() { sl, _ := d.acquire("forge"); got <- sl }()
	<-cut
	if !slow.wasPreempted() {
		t.Fatal("cut, but not marked preempted")
	}
	slow.release() // what the cut read leads to
	if sl := <-got; sl == nil || sl.src != "forge" {
		t.Fatal("the waiter did not get the cut slot")
	}
}

// TestWebhookRefusalLog: 2,000 refused requests in a burst make at most
// two log lines (the first in full, one summary), and the summary counts
// them all.
func TestWebhookRefusalLog(t *testing.T) {
	t.Parallel()
	lines := newLineCounter()
	w, _ := guardWebhook(t, WebhookConfig{}, func(Trigger) {}, lines)
	push := testdataPayload(t, "github-push.json")
	const n = 2000
	for i := range n {
		sig := "missing"
		if i%2 == 1 {
			sig = "bad"
		}
		r := forgeRequest(t, "/hook", ForgeGitHub, "push", push, sig)
		r.RemoteAddr = fmt.Sprintf("192.0.2.%d:4000", i%200)
		w.ServeHTTP(httptest.NewRecorder(), r)
	}
	w.refusals.flush() // the end of the interval
	warn := lines.warnings()
	if len(warn) != 2 {
		t.Fatalf("%d refusals made %d log lines, want 2:\n%s", n, len(warn), strings.Join(warn, "\n"))
	}
	if !strings.Contains(warn[1], "count=1999") || !strings.Contains(warn[1], "BadSignature=1000") ||
		!strings.Contains(warn[1], "Unsigned=999") || !strings.Contains(warn[1], "sources=64+") {
		t.Fatalf("summary: %s", warn[1])
	}
	if got := testutil.ToFloat64(w.refused.WithLabelValues(refusedUnsigned)) + testutil.ToFloat64(w.refused.WithLabelValues(refusedBadSignature)); got != n {
		t.Fatalf("refused metric counts %v, want %d", got, n)
	}
}

// TestWebhookSlowBody: a body that does not arrive within BodyTimeout is
// cut off with 408 and its slot freed for the next delivery.
func TestWebhookSlowBody(t *testing.T) {
	t.Parallel()
	var rec recorder
	w, _ := guardWebhook(t, WebhookConfig{BodyTimeout: 300 * time.Millisecond, MaxBodies: 1}, rec.notify, nil)
	addr := serveWebhook(t, w)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n%s: push\r\n%s: sha256=%s\r\n\r\n{\"ref\":", HeaderGitHubEvent, HeaderGitHubSignature, strings.Repeat("00", 32))
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(testkit.Deadline))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Cut by BodyTimeout (300ms), not by this side's deadline; the bound
	// is loose for a loaded machine under -race.
	if resp.StatusCode != http.StatusRequestTimeout || time.Since(start) > testkit.Deadline/2 {
		t.Fatalf("slow body: %d after %s", resp.StatusCode, time.Since(start))
	}
	// The one slot is free again: a signed delivery goes through.
	body := testdataPayload(t, "github-push.json")
	r2, err := http.DefaultClient.Do(forgeRequest(t, "http://"+addr+"/hook", ForgeGitHub, "push", body, "good"))
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != http.StatusAccepted || rec.count() != 1 {
		t.Fatalf("after the slow body: %d, %d triggers", r2.StatusCode, rec.count())
	}
}

var allRefusals = []string{refusedMethod, refusedUnsigned, refusedBadSignature, refusedTooLarge, refusedBusy,
	refusedSourceBusy, refusedPreempted, refusedTimeout, refusedBadRequest, refusedConnections, refusedPath}

// slowBody opens a connection that sends a delivery's headers (with a
// made-up signature) and the first byte of its body, then nothing.
func slowBody(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST /hook HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n%s: push\r\n%s: sha256=%s\r\n\r\n{",
		HeaderGitHubEvent, HeaderGitHubSignature, strings.Repeat("00", 32))
	return c
}

// TestWebhookWaitsAndPreempts goes through the server: with the only body
// slot held by a slow body, a GitLab delivery (authenticated by its
// header) goes at once, and a GitHub one waits until the slow body has
// had its second (min(1s, BodyTimeout/2)) and is cut for it. BodyTimeout
// is long so that a slow machine cannot let the slow body time out by
// itself before the GitHub delivery comes to cut it.
func TestWebhookWaitsAndPreempts(t *testing.T) {
	t.Parallel()
	var rec recorder
	w, _ := guardWebhook(t, WebhookConfig{BodyTimeout: 20 * time.Second, MaxBodies: 1}, rec.notify, nil)
	addr := serveWebhook(t, w)
	held := time.Now()
	slow := slowBody(t, addr)
	testkit.WaitFor(t, "one body in flight", func() bool { return testutil.ToFloat64(w.inflight) == 1 })

	gitlab := forgeRequest(t, "http://"+addr+"/hook", ForgeGitLab, "Push Hook", testdataPayload(t, "gitlab-push.json"), "good")
	resp, err := http.DefaultClient.Do(gitlab)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	// At once: answered while the slow body still holds the slot, uncut
	// (a wait for the slot would have cut it).
	if resp.StatusCode != http.StatusAccepted || testutil.ToFloat64(w.inflight) != 1 || testutil.ToFloat64(w.refused.WithLabelValues(refusedPreempted)) != 0 {
		t.Fatalf("gitlab delivery while the slot is held: %d after %s, %v bodies in flight, %v preempted; want 202 without waiting for the slot",
			resp.StatusCode, time.Since(held), testutil.ToFloat64(w.inflight), testutil.ToFloat64(w.refused.WithLabelValues(refusedPreempted)))
	}

	github := forgeRequest(t, "http://"+addr+"/hook", ForgeGitHub, "push", testdataPayload(t, "github-push.json"), "good")
	resp, err = http.DefaultClient.Do(github)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	took := time.Since(held)
	if resp.StatusCode != http.StatusAccepted || took < time.Second || rec.count() != 2 {
		t.Fatalf("github delivery: %d after %s, %d triggers; want 202 once the slow body had its second", resp.StatusCode, took, rec.count())
	}
	slow.SetReadDeadline(time.Now().Add(testkit.Deadline))
	r, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil || r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("the slow body: %v, %v; want 503", r, err)
	}
	if n := testutil.ToFloat64(w.refused.WithLabelValues(refusedPreempted)); n != 1 {
		t.Fatalf("preempted = %v", n)
	}
}

// TestWebhookOtherPath: another path is 404, its body unread, the
// connection closed.
func TestWebhookOtherPath(t *testing.T) {
	t.Parallel()
	w, _ := guardWebhook(t, WebhookConfig{}, func(Trigger) {}, nil)
	addr := serveWebhook(t, w)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /hook/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusNotFound || !resp.Close {
		t.Fatalf("other path: %v, %v", resp, err)
	}
	io.Copy(io.Discard, resp.Body)
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("connection kept: %v", err)
	}
}

// TestWebhookConnLimits: connections over the per-source cap are closed
// at once; over the global cap they wait to be accepted.
func TestWebhookConnLimits(t *testing.T) {
	t.Parallel()
	var rec recorder
	w, _ := guardWebhook(t, WebhookConfig{MaxConns: 3, MaxConnsPerSource: 2}, rec.notify, nil)
	addr := serveWebhook(t, w)
	dial := func(src int) net.Conn {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(src))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a1, a2 := dial(2), dial(2)
	a3 := dial(2) // over the per-source cap: closed by the server
	a3.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := a3.Read(make([]byte, 1)); err == nil {
		t.Fatal("a third connection from one source was kept")
	}
	testkit.WaitFor(t, "the connection refused", func() bool { return testutil.ToFloat64(w.refused.WithLabelValues(refusedConnections)) == 1 })
	b1 := dial(3) // the third of three: accepted
	_ = b1
	// A fourth waits in the accept queue until one closes, then is served.
	done := make(chan int, 1)
	go func() {
		resp, err := clientFrom(2).Do(forgeRequest(t, "http://"+addr+"/hook", ForgeGitHub, "push", testdataPayload(t, "github-push.json"), "good"))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	select {
	case code := <-done:
		t.Fatalf("served (%d) while every connection was taken", code)
	case <-time.After(300 * time.Millisecond):
	}
	a1.Close()
	a2.Close()
	if code := <-done; code != http.StatusAccepted {
		t.Fatalf("the waiting connection got %d", code)
	}
}

// heapInuse is the heap in use.
func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// attacker keeps one hostile connection going until ctx ends, from source
// address 127.0.0.(src+2): it sends headers of kind (0: unsigned, 1: a
// made-up signature and a chunked body, 2: a made-up signature and a 5 MiB
// Content-Length), then ~5 MiB of body, 4 KiB every 50 ms, and connects
// again whenever the server gives up on it.
func attacker(ctx context.Context, addr string, src, kind int, chunk []byte, conns *atomic.Int64) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(src+2))}}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			continue
		}
		conns.Add(1)
		var hdr strings.Builder
		fmt.Fprintf(&hdr, "POST /hook HTTP/1.1\r\nHost: edge\r\nContent-Type: application/json\r\n%s: push\r\n", HeaderGitHubEvent)
		if kind != 0 {
			fmt.Fprintf(&hdr, "%s: sha256=%s\r\n", HeaderGitHubSignature, strings.Repeat("5a", 32))
		}
		if kind == 1 {
			hdr.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		} else {
			fmt.Fprintf(&hdr, "Content-Length: %d\r\n\r\n", 5<<20-1)
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		_, err = io.WriteString(c, hdr.String())
		for sent := 0; err == nil && sent < 5<<20 && ctx.Err() == nil; sent += len(chunk) {
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
			c.SetWriteDeadline(time.Now().Add(time.Second))
			if kind == 1 {
				_, err = fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk)
			} else {
				_, err = c.Write(chunk)
			}
		}
		c.Close()
	}
}

// TestWebhookFlood is the attack of issue 10: 300 connections that each
// try to send ~5 MiB slowly, unsigned or with made-up signatures, from 20
// addresses. Once the flood holds every body slot, the forge delivers a
// correctly signed push; the flood goes on until it is answered, and 1s
// more. The heap the server holds stays bounded (the figures are in the
// log), the delivery is accepted and triggers, and the refusals make a
// handful of log lines. It measures the process's heap, so it does not run
// in parallel.
func TestWebhookFlood(t *testing.T) {
	const (
		attackers = 300
		sources   = 20
		// heapBound is what the server may hold over its idle heap,
		// with the defaults (WebhookConfig, used here): connections and bodies, plus
		// the attackers' own side of the connections, which live in this
		// process too.
		heapBound = 24 << 20
		// maxFlood bounds the test, however slow the machine.
		maxFlood = 60 * time.Second
	)
	lines := newLineCounter()
	got := make(chan Trigger, 10)
	w, _ := guardWebhook(t, WebhookConfig{Ref: "refs/heads/main"}, func(tr Trigger) { got <- tr }, lines)
	addr := serveWebhook(t, w)
	runtime.GC()
	base := heapInuse()

	ctx, stop := context.WithTimeout(context.Background(), maxFlood)
	defer stop()
	floodStart := time.Now()
	chunk := bytes.Repeat([]byte("A"), 4<<10)
	var conns atomic.Int64
	var wg sync.WaitGroup
	for i := range attackers {
		wg.Go(func() { attacker(ctx, addr, i%sources, i%3, chunk, &conns) })
	}
	var peak atomic.Uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				if h := heapInuse(); h > peak.Load() {
					peak.Store(h)
				}
			}
		}
	}()

	// Once the flood holds every body slot, the forge delivers.
	refused := func() float64 {
		n := 0.0
		for _, r := range allRefusals {
			n += testutil.ToFloat64(w.refused.WithLabelValues(r))
		}
		return n
	}
	testkit.WaitFor(t, "the attackers refused and 16 bodies in flight", func() bool { return refused() >= attackers && testutil.ToFloat64(w.inflight) >= 16 })
	body := testdataPayload(t, "github-push.json")
	start := time.Now()
	resp, err := (&http.Client{Timeout: maxFlood}).Do(forgeRequest(t, "http://"+addr+"/hook", ForgeGitHub, "push", body, "good"))
	latency := time.Since(start)
	if err != nil {
		t.Fatalf("the signed delivery during the flood: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if ctx.Err() != nil {
		t.Fatalf("the signed delivery was answered only after %s of flood", maxFlood)
	}
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("the signed delivery during the flood: %d after %s", resp.StatusCode, latency)
	}
	select {
	case tr := <-got:
		if tr.Kind != TriggerWebhook || !strings.Contains(tr.Detail, "refs/heads/main") {
			t.Fatalf("trigger %+v", tr)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("accepted, but no trigger")
	}
	select { // the flood goes on a little after the delivery
	case <-ctx.Done():
	case <-time.After(time.Second):
	}
	stop()
	flood := time.Since(floodStart)
	wg.Wait()
	<-sampled
	growth := int64(peak.Load()) - int64(base)
	byReason := map[string]float64{}
	for _, r := range allRefusals {
		byReason[r] = testutil.ToFloat64(w.refused.WithLabelValues(r))
	}
	t.Logf("flood: %d attackers from %d addresses, %d connections in %s; refused %v", attackers, sources, conns.Load(), flood.Round(time.Millisecond), byReason)
	t.Logf("signed delivery accepted in %s; heap in use %.1f MiB before, peak growth %.1f MiB (bound %d MiB)",
		latency.Round(time.Millisecond), float64(base)/(1<<20), float64(growth)/(1<<20), heapBound>>20)
	if growth > heapBound {
		t.Errorf("heap grew by %.1f MiB under the flood, bound %d MiB", float64(growth)/(1<<20), heapBound>>20)
	}
	if byReason[refusedUnsigned] == 0 || byReason[refusedTimeout]+byReason[refusedPreempted] == 0 {
		t.Errorf("the flood did not reach the body stage: %v", byReason)
	}
	w.refusals.flush()
	// One line in full, then a summary per refusalLogInterval.
	if warn, max := lines.warnings(), 2+int(flood/refusalLogInterval); len(warn) > max {
		t.Errorf("%d warning lines for the flood, want at most %d:\n%s", len(warn), max, strings.Join(warn, "\n"))
	} else {
		t.Logf("log:\n%s", strings.Join(warn, "\n"))
	}
}
