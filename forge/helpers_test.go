package forge

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

// Commit ids used by the tests.
const (
	commitA = "0123456789abcdef0123456789abcdef01234567"
	commitB = "89abcdef0123456789abcdef0123456789abcdef"
	commitC = "fedcba9876543210fedcba9876543210fedcba98"
)

// testToken is distinctive so a grep for it cannot match anything else.
const testToken = "tok-SECRET-3f9c2a71e0d84b5c"

// created answers like a forge that accepted the status.
func created(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, `{"id":1}`)
}

// newFakeForge is a receiver that answers with handlers in turn, by
// default as a forge that accepted the status.
func newFakeForge(handlers ...http.HandlerFunc) *testkit.Receiver {
	if len(handlers) == 0 {
		handlers = []http.HandlerFunc{created}
	}
	return testkit.NewReceiver(handlers...)
}

// answer returns a handler that replies code with a JSON body and headers.
func answer(code int, body string, headers ...string) http.HandlerFunc {
	return testkit.Answer(code, body, append(headers, "Content-Type", "application/json")...)
}

// waitLog waits for a log message starting with prefix.
func waitLog(t *testing.T, l *testkit.LogSink, prefix string) {
	t.Helper()
	l.Wait(t, 1, func(m string) bool { return strings.HasPrefix(m, prefix) })
}

// rig is a Reporter under test with its registry and log.
type rig struct {
	r   *Reporter
	reg *prometheus.Registry
	log *testkit.LogSink
}

// newRig starts a Reporter against h (a real server unless mem is set)
// and stops it at the end of the test, checking Run returns nil.
func newRig(t *testing.T, cfg Config, h http.Handler, mem bool) *rig {
	t.Helper()
	var client *http.Client
	if mem {
		client = &http.Client{Transport: testkit.MemTransport{"": h}}
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
	g := &rig{reg: prometheus.NewRegistry(), log: testkit.NewLogSink()}
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
	return testkit.MetricValue(t, g.reg, MetricStatuses, map[string]string{"result": result})
}

// decode decodes a JSON body into a map, keeping numbers as json.Number.
func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	testkit.DecodeJSON(t, b, &m)
	return m
}

// writeTokenFile replaces a token file's content, as a rotation does.
func writeTokenFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o600)
}
