package notify

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
)

func ok(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }

// waitLogs waits for n log messages equal to msg.
func waitLogs(t *testing.T, l *testkit.LogSink, msg string, n int) {
	t.Helper()
	l.Wait(t, n, func(m string) bool { return m == msg })
}

// rig is a Notifier under test, its receivers, registry and log.
type rig struct {
	n   *Notifier
	reg *prometheus.Registry
	log *testkit.LogSink
}

// newRig points sink i at receiver rcv[i]: its URL in cfg is only a path
// (or ""), prefixed here with the receiver's base URL, a real httptest
// server unless mem is set.
func newRig(t *testing.T, cfg Config, rcv []*testkit.Receiver, mem bool) *rig {
	t.Helper()
	var client *http.Client
	routes := testkit.MemTransport{}
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
	g := &rig{reg: prometheus.NewRegistry(), log: testkit.NewLogSink()}
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
	return testkit.MetricValue(t, g.reg, MetricEvents, map[string]string{"sink": string(sink), "result": result})
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
