package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Request is one request as a Receiver saw it.
type Request struct {
	Method string
	Path   string // escaped, as on the wire
	Header http.Header
	Body   []byte
	At     time.Time
}

// Receiver is a fake of a service gitedge posts to (a forge, a webhook,
// Alertmanager): it answers with its handlers in turn (the last one
// repeats), records every request and sends each on a channel.
type Receiver struct {
	mu       sync.Mutex
	reqs     []Request
	ch       chan Request
	handlers []http.HandlerFunc
}

// NewReceiver answers with handlers in turn; none answers 200 "ok".
func NewReceiver(handlers ...http.HandlerFunc) *Receiver {
	if len(handlers) == 0 {
		handlers = []http.HandlerFunc{Answer(http.StatusOK, "ok")}
	}
	return &Receiver{ch: make(chan Request, 20000), handlers: handlers}
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := Request{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body, At: time.Now()}
	rc.mu.Lock()
	n := len(rc.reqs)
	rc.reqs = append(rc.reqs, q)
	h := rc.handlers[min(n, len(rc.handlers)-1)]
	rc.mu.Unlock()
	rc.ch <- q
	r.Body = io.NopCloser(bytes.NewReader(body))
	h(w, r)
}

// Requests returns every request so far.
func (rc *Receiver) Requests() []Request {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Request(nil), rc.reqs...)
}

// Next waits for the next request, failing the test after Deadline.
func (rc *Receiver) Next(t testing.TB) Request {
	t.Helper()
	select {
	case q := <-rc.ch:
		return q
	case <-time.After(Deadline):
		t.Fatalf("no request came within %s", Deadline)
		return Request{}
	}
}

// Recv waits for the next request without a deadline, for a synctest
// bubble, where a missing one is a deadlock the bubble reports.
func (rc *Receiver) Recv() Request { return <-rc.ch }

// Answer replies code with body and headers (name, value, …).
func Answer(code int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// Hang never answers; it returns when the client gives up.
func Hang(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// MemTransport serves requests in memory with the handler of their host
// ("" for any other host), so tests can run in a synctest bubble, where
// real sockets are not allowed.
type MemTransport map[string]http.Handler

func (m MemTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h, ok := m[req.URL.Host]
	if !ok {
		h = m[""]
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// LogSink is a slog handler that keeps every record as a JSON line and
// signals each message, so a test waits for a log line instead of
// polling.
type LogSink struct {
	mu   *sync.Mutex
	buf  *bytes.Buffer
	h    slog.Handler
	msgs chan string
}

// NewLogSink records every level.
func NewLogSink() *LogSink {
	buf := new(bytes.Buffer)
	return &LogSink{mu: new(sync.Mutex), buf: buf, msgs: make(chan string, 1024),
		h: slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})}
}

func (l *LogSink) Enabled(context.Context, slog.Level) bool { return true }

func (l *LogSink) Handle(ctx context.Context, r slog.Record) error {
	l.mu.Lock()
	err := l.h.Handle(ctx, r)
	l.mu.Unlock()
	select {
	case l.msgs <- r.Message:
	default:
	}
	return err
}

func (l *LogSink) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.h = l.h.WithAttrs(as)
	return &c
}

func (l *LogSink) WithGroup(g string) slog.Handler {
	c := *l
	c.h = l.h.WithGroup(g)
	return &c
}

// Text is every record so far, one JSON line each.
func (l *LogSink) Text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// Wait waits for n messages that match, failing the test after Deadline.
func (l *LogSink) Wait(t testing.TB, n int, match func(msg string) bool) {
	t.Helper()
	deadline := time.After(Deadline)
	for n > 0 {
		select {
		case m := <-l.msgs:
			if match(m) {
				n--
			}
		case <-deadline:
			t.Fatalf("%d more log lines did not come within %s; log:\n%s", n, Deadline, l.Text())
		}
	}
}

// MetricValue sums the counter and gauge samples of the metric name whose
// labels include want.
func MetricValue(t testing.TB, reg prometheus.Gatherer, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, want) {
				sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
			n++
		}
	}
	return n == len(want)
}

// DecodeJSON decodes b into v keeping numbers as json.Number, failing the
// test when b is not JSON.
func DecodeJSON(t testing.TB, b []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, b)
	}
}
