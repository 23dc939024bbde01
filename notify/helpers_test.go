package notify

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

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// got is one request as a receiver saw it.
type got struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// receiver answers with its handlers in turn (the last one repeats) and
// records every request, also sending it on ch.
type receiver struct {
	mu       sync.Mutex
	reqs     []got
	ch       chan got
	handlers []http.HandlerFunc
}

func newReceiver(handlers ...http.HandlerFunc) *receiver {
	if len(handlers) == 0 {
		handlers = []http.HandlerFunc{ok}
	}
	return &receiver{ch: make(chan got, 20000), handlers: handlers}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	g := got{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body, At: time.Now()}
	rc.mu.Lock()
	n := len(rc.reqs)
	rc.reqs = append(rc.reqs, g)
	h := rc.handlers[min(n, len(rc.handlers)-1)]
	rc.mu.Unlock()
	rc.ch <- g
	h(w, r)
}

func (rc *receiver) requests() []got {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]got(nil), rc.reqs...)
}

// next waits for the next request with a bounded real-time wait.
func (rc *receiver) next(t *testing.T) got {
	t.Helper()
	select {
	case g := <-rc.ch:
		return g
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the receiver within 10s")
		return got{}
	}
}

// recv takes the next request inside a synctest bubble.
func (rc *receiver) recv() got { return <-rc.ch }

func ok(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

// answer replies code with body and headers (name, value, …).
func answer(code int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

func hang(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// memTransport routes requests by host to in-memory handlers, for
// synctest bubbles (no real sockets).
type memTransport map[string]http.Handler

func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	m[req.URL.Host].ServeHTTP(rec, req)
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// logSink keeps every record as JSON lines and signals each message.
type logSink struct {
	mu   *sync.Mutex
	buf  *bytes.Buffer
	h    slog.Handler
	msgs chan string
}

func newLogSink() *logSink {
	buf := new(bytes.Buffer)
	return &logSink{mu: new(sync.Mutex), buf: buf, msgs: make(chan string, 1024),
		h: slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})}
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(ctx context.Context, r slog.Record) error {
	l.mu.Lock()
	err := l.h.Handle(ctx, r)
	l.mu.Unlock()
	select {
	case l.msgs <- r.Message:
	default:
	}
	return err
}

// waitLogs waits for n log messages equal to msg, with a bounded real-time
// wait.
func (l *logSink) waitLogs(t *testing.T, msg string, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for n > 0 {
		select {
		case m := <-l.msgs:
			if m == msg {
				n--
			}
		case <-deadline:
			t.Fatalf("%d more %q log lines did not come within 10s; log:\n%s", n, msg, l.text())
		}
	}
}
func (l *logSink) WithAttrs(as []slog.Attr) slog.Handler {
	c := *l
	c.h = l.h.WithAttrs(as)
	return &c
}
func (l *logSink) WithGroup(g string) slog.Handler {
	c := *l
	c.h = l.h.WithGroup(g)
	return &c
}
func (l *logSink) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// rig is a Notifier under test, its receivers, registry and log.
type rig struct {
	n   *Notifier
	reg *prometheus.Registry
	log *logSink
}

// newRig points sink i at receiver rcv[i]: its URL in cfg is only a path
// (or ""), prefixed here with the receiver's base URL, a real httptest
// server unless mem is set.
func newRig(t *testing.T, cfg Config, rcv []*receiver, mem bool) *rig {
	t.Helper()
	var client *http.Client
	routes := memTransport{}
	for i := range cfg.Sinks {
		if mem {
			host := "receiver" + string(rune('0'+i)) + ".example"
			routes[host] = rcv[i]
			cfg.Sinks[i].URL = "http://" + host + cfg.Sinks[i].URL
			continue
		}
		srv := httptest.NewServer(rcv[i])
		t.Cleanup(srv.Close)
		cfg.Sinks[i].URL = srv.URL + cfg.Sinks[i].URL
	}
	if mem {
		client = &http.Client{Transport: routes}
	}
	if cfg.Node == "" {
		cfg.Node = "lb-0"
	}
	g := &rig{reg: prometheus.NewRegistry(), log: newLogSink()}
	n, err := New(cfg, Options{Logger: slog.New(g.log), Registerer: g.reg, Client: client, Jitter: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	g.n = n
	testkit.Run(t, n.Run)
	return g
}

// count is MetricEvents for a sink kind and result.
func (g *rig) count(t *testing.T, sink SinkKind, result string) float64 {
	t.Helper()
	return metricValue(t, g.reg, MetricEvents, map[string]string{"sink": string(sink), "result": result})
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
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
			if !hasLabels(m, want) {
				continue
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
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

// decodeJSON decodes b keeping numbers as json.Number.
func decodeJSON(t *testing.T, b []byte, v any) {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, b)
	}
}

// event decodes a webhook body.
func event(t *testing.T, b []byte) Event {
	t.Helper()
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("webhook body: %v: %s", err, b)
	}
	return e
}
