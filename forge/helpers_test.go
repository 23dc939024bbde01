package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Commit ids used by the tests.
const (
	commitA = "0123456789abcdef0123456789abcdef01234567"
	commitB = "89abcdef0123456789abcdef0123456789abcdef"
	commitC = "fedcba9876543210fedcba9876543210fedcba98"
)

// testToken is distinctive so a grep for it cannot match anything else.
const testToken = "tok-SECRET-3f9c2a71e0d84b5c"

// seen is one request as the fake forge received it.
type seen struct {
	Method string
	Path   string // escaped, as on the wire
	Header http.Header
	Body   []byte
	At     time.Time
}

// fakeForge answers with the handler of each request in turn (the last one
// repeats) and records every request; each one is also sent on got.
type fakeForge struct {
	mu       sync.Mutex
	reqs     []seen
	got      chan seen
	handlers []http.HandlerFunc
}

func newFakeForge(handlers ...http.HandlerFunc) *fakeForge {
	if len(handlers) == 0 {
		handlers = []http.HandlerFunc{created}
	}
	return &fakeForge{got: make(chan seen, 1024), handlers: handlers}
}

func (f *fakeForge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s := seen{Method: r.Method, Path: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body, At: time.Now()}
	f.mu.Lock()
	n := len(f.reqs)
	f.reqs = append(f.reqs, s)
	h := f.handlers[min(n, len(f.handlers)-1)]
	f.mu.Unlock()
	f.got <- s
	r.Body = io.NopCloser(bytes.NewReader(body))
	h(w, r)
}

func (f *fakeForge) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

// next waits for the next request, failing after a bounded wait.
func (f *fakeForge) next(t *testing.T) seen {
	t.Helper()
	select {
	case s := <-f.got:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the forge within 10s")
		return seen{}
	}
}

// created answers like a forge that accepted the status.
func created(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{"id":1}`)
}

// answer returns a handler that replies code with a JSON body and headers.
func answer(code int, body string, headers ...string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		for i := 0; i+1 < len(headers); i += 2 {
			w.Header().Set(headers[i], headers[i+1])
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		io.WriteString(w, body)
	}
}

// hang never answers; it returns when the client gives up.
func hang(_ http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

// memTransport serves requests with a handler in memory, so tests can run
// in a synctest bubble (no real sockets).
type memTransport struct{ h http.Handler }

func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, req)
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// logSink is a slog handler that keeps every record as text and signals
// each message on msgs.
type logSink struct {
	mu   *sync.Mutex
	buf  *bytes.Buffer
	h    slog.Handler
	msgs chan string
}

func newLogSink() *logSink {
	buf := new(bytes.Buffer)
	mu := new(sync.Mutex)
	return &logSink{mu: mu, buf: buf, msgs: make(chan string, 1024),
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

// waitLog waits for a log message starting with prefix.
func (l *logSink) waitLog(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m := <-l.msgs:
			if strings.HasPrefix(m, prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("no log %q within 10s; log:\n%s", prefix, l.text())
		}
	}
}

// rig is a Reporter under test with its registry and log.
type rig struct {
	r   *Reporter
	reg *prometheus.Registry
	log *logSink
}

// newRig starts a Reporter against h (a real server unless mem is set)
// and stops it at the end of the test, checking Run returns nil.
func newRig(t *testing.T, cfg Config, h http.Handler, mem bool) *rig {
	t.Helper()
	var client *http.Client
	if mem {
		client = &http.Client{Transport: memTransport{h}}
	} else {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		client = srv.Client()
		cfg.API = srv.URL + cfg.API
	}
	if cfg.TokenFile == "" {
		cfg.TokenFile = testkit.TempFile(t, "token", testToken+"\n")
	}
	if cfg.Node == "" {
		cfg.Node = "lb-0"
	}
	g := &rig{reg: prometheus.NewRegistry(), log: newLogSink()}
	r, err := New(cfg, Options{Logger: slog.New(g.log), Registerer: g.reg, Client: client, Jitter: func() float64 { return 0 }})
	if err != nil {
		t.Fatal(err)
	}
	g.r = r
	testkit.Run(t, r.Run)
	return g
}

// count is the value of MetricStatuses for a result.
func (g *rig) count(t *testing.T, result string) float64 {
	t.Helper()
	return counterValue(t, g.reg, MetricStatuses, map[string]string{"result": result})
}

// counterValue sums the counter or gauge samples of name whose labels
// include want.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, want map[string]string) float64 {
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
			if c := m.GetCounter(); c != nil {
				sum += c.GetValue()
			}
			if g := m.GetGauge(); g != nil {
				sum += g.GetValue()
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

// decode decodes a JSON body into a map, keeping numbers as json.Number.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, b)
	}
	return m
}

// writeTokenFile replaces a token file's content, as a rotation does.
func writeTokenFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
}
