package relay

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/internal/testkit"
)

const (
	secret  = "the-fleet's-webhook-secret"
	commit1 = "1f0e2d3c4b5a69788796a5b4c3d2e1f00112233a"
	commit2 = "2a0e2d3c4b5a69788796a5b4c3d2e1f00112233b"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// triggers records what a receiving webhook pokes.
type triggers struct {
	mu sync.Mutex
	ts []gitsource.Trigger
}

func (r *triggers) notify(t gitsource.Trigger) { r.mu.Lock(); r.ts = append(r.ts, t); r.mu.Unlock() }
func (r *triggers) list() []gitsource.Trigger {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]gitsource.Trigger(nil), r.ts...)
}

// receiver is a real gitsource webhook serving its relay endpoint on a
// loopback port, with the given secret.
func receiver(t *testing.T, key string) (port int, rec *triggers, reg *prometheus.Registry) {
	t.Helper()
	rec = &triggers{}
	reg = prometheus.NewRegistry()
	w, err := gitsource.NewWebhook(gitsource.WebhookConfig{Path: "/hook", Ref: "refs/heads/main",
		SecretFile: testkit.TempFile(t, "secret", key+"\n")}, rec.notify,
		gitsource.Options{Registry: reg, Logger: testkit.Logger(t, slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	ln := testkit.Listen(t)
	testkit.Run(t, func(ctx context.Context) error { return w.Serve(ctx, ln) })
	return ln.Addr().(*net.TCPAddr).Port, rec, reg
}

// newRelayer builds a Relayer of node "lb-0" sending to peers, run until
// the test ends; logs go to the sink.
func newRelayer(t *testing.T, cfg Config, peers []Peer, sink *testkit.LogSink) (*Relayer, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Node = "lb-0"
	if cfg.KeyFile == "" {
		cfg.KeyFile = testkit.TempFile(t, "key", secret+"\n")
	}
	var h slog.Handler = testkit.Logger(t, slog.LevelDebug).Handler()
	if sink != nil {
		h = sink
	}
	r, err := New(cfg, Options{Peers: func() []Peer { return peers }, Logger: slog.New(h), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, r.Run)
	return r, reg
}

func sent(t *testing.T, reg *prometheus.Registry, result string) int {
	t.Helper()
	return int(testkit.MetricValue(t, reg, MetricSent, map[string]string{"result": result}))
}

func waitSent(t *testing.T, reg *prometheus.Registry, n int) {
	t.Helper()
	testkit.WaitFor(t, strconv.Itoa(n)+" deliveries ended", func() bool {
		return int(testkit.MetricValue(t, reg, MetricSent, nil)) >= n
	})
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// TestAnnounce: a mixed fleet. The peer running gitedge (a real webhook,
// addressed from the nodes list and this node's port) acknowledges and
// looks; a host refusing connections and one answering 404 (keepalived
// only, another service) are skipped quietly: one info line each, no
// warning; this node is never told; a commit announced again is not
// sent again.
func TestAnnounce(t *testing.T) {
	t.Parallel()
	port, rec, rreg := receiver(t, secret)
	notFound := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(notFound.Close)
	peers := []Peer{
		{Name: "lb-0", Address: loopback}, // this node
		{Name: "lb-1", Address: loopback},
		{Name: "keepalived-only", Address: loopback},
		{Name: "other-service", Address: loopback},
	}
	sink := testkit.NewLogSink()
	r, reg := newRelayer(t, Config{Port: port, Path: "/hook/relay", Peers: map[string]string{
		"keepalived-only": "http://127.0.0.1:" + strconv.Itoa(closedPort(t)) + "/hook/relay",
		"other-service":   notFound.URL + "/hook/relay",
	}}, peers, sink)

	r.Announce("refs/heads/main", commit1)
	r.Announce("refs/heads/main", commit1) // again: nothing more
	waitSent(t, reg, 3)
	if got := sent(t, reg, SentAcknowledged); got != 1 {
		t.Errorf("acknowledged = %d, want 1", got)
	}
	if got := sent(t, reg, SentSkipped); got != 2 {
		t.Errorf("skipped = %d, want 2", got)
	}
	tr := rec.list()
	if len(tr) != 1 || tr[0].Kind != gitsource.TriggerRelay || tr[0].Commit != commit1 || !strings.Contains(tr[0].Detail, "lb-0") {
		t.Fatalf("the peer's triggers: %+v, want one relay of %s from lb-0", tr, commit1)
	}
	if n := testkit.MetricValue(t, rreg, gitsource.MetricRelaysReceived, map[string]string{"result": gitsource.RelayAccepted}); n != 1 {
		t.Errorf("the peer accepted %v relays, want 1", n)
	}
	st := r.Status()
	if len(st) != 3 {
		t.Fatalf("status lists %d peers, want 3 (not this node): %+v", len(st), st)
	}
	for _, p := range st {
		wantAck := p.Name == "lb-1"
		if p.Commit != commit1 || p.Acknowledged != wantAck || p.SentAt.IsZero() {
			t.Errorf("peer %+v: want commit %s, acknowledged %v", p, commit1, wantAck)
		}
		if p.Name == "lb-1" && p.URL != "http://127.0.0.1:"+strconv.Itoa(port)+"/hook/relay" {
			t.Errorf("lb-1's URL %s, want its address and this node's port and path", p.URL)
		}
		if !wantAck && (p.Result != SentSkipped || p.LastError == "") {
			t.Errorf("peer %s: result %q, error %q; want skipped with the reason", p.Name, p.Result, p.LastError)
		}
	}
	text := sink.Text()
	if strings.Contains(text, `"level":"WARN"`) {
		t.Errorf("absent peers warned:\n%s", text)
	}
	if n := strings.Count(text, "no relay endpoint (no gitedge there?)"); n != 2 {
		t.Errorf("%d info lines for the absent peers, want 2:\n%s", n, text)
	}

	// A second commit: the absent peers are skipped again without a line.
	r.Announce("refs/heads/main", commit2)
	waitSent(t, reg, 6)
	if n := strings.Count(sink.Text(), "no relay endpoint (no gitedge there?)"); n != 2 {
		t.Errorf("absent peers logged again for the next commit (%d lines)", n)
	}
	if tr := rec.list(); len(tr) != 2 || tr[1].Commit != commit2 {
		t.Fatalf("the peer's triggers: %+v, want commit2 second", tr)
	}
}

// TestAnnounceRefused: a peer with another key refuses (403): counted,
// shown with its reason, one warning for several commits, no retries.
func TestAnnounceRefused(t *testing.T) {
	t.Parallel()
	port, rec, rreg := receiver(t, "another-secret")
	sink := testkit.NewLogSink()
	r, reg := newRelayer(t, Config{Port: port, Path: "/hook/relay"}, []Peer{{Name: "lb-1", Address: loopback}}, sink)
	r.Announce("refs/heads/main", commit1)
	waitSent(t, reg, 1)
	r.Announce("refs/heads/main", commit2)
	waitSent(t, reg, 2)
	if got := sent(t, reg, SentRefused); got != 2 {
		t.Fatalf("refused = %d, want 2", got)
	}
	if n := testkit.MetricValue(t, rreg, gitsource.MetricRelaysReceived, map[string]string{"result": gitsource.RelayRefusedSignature}); n != 2 {
		t.Fatalf("the peer refused %v, want 2 (one try each)", n)
	}
	if len(rec.list()) != 0 {
		t.Fatal("a refused relay triggered a look")
	}
	st := r.Status()
	if len(st) != 1 || st[0].Acknowledged || !strings.Contains(st[0].LastError, "403") {
		t.Fatalf("status %+v, want not acknowledged with the 403", st)
	}
	if n := strings.Count(sink.Text(), `"level":"WARN"`); n != 1 {
		t.Fatalf("%d warnings, want 1:\n%s", n, sink.Text())
	}
}

// TestAnnounceRetriesAndSupersedes: a peer answering 503 is retried; a
// newer commit replaces the one being retried, and is delivered.
func TestAnnounceRetriesAndSupersedes(t *testing.T) {
	t.Parallel()
	var tries atomic.Int32
	got := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m, err := parseBody(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if m.Commit == commit1 { // the peer is busy for as long as it is asked about commit1
			tries.Add(1)
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		got <- m.Commit
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	r, reg := newRelayer(t, Config{Peers: map[string]string{"lb-1": srv.URL + "/hook/relay"}}, []Peer{{Name: "lb-1"}}, nil)
	r.Announce("refs/heads/main", commit1)
	testkit.WaitFor(t, "a retry", func() bool { return tries.Load() >= 2 })
	r.Announce("refs/heads/main", commit2)
	waitSent(t, reg, 2)
	if c := <-got; c != commit2 {
		t.Fatalf("the peer got %s, want the newer %s", c, commit2)
	}
	if sent(t, reg, SentSuperseded) != 1 || sent(t, reg, SentAcknowledged) != 1 {
		t.Fatalf("superseded %d, acknowledged %d; want 1, 1", sent(t, reg, SentSuperseded), sent(t, reg, SentAcknowledged))
	}
	if st := r.Status(); len(st) != 1 || st[0].Commit != commit2 || !st[0].Acknowledged {
		t.Fatalf("status %+v, want commit2 acknowledged", st)
	}
}

func parseBody(req *http.Request) (gitsource.RelayMessage, error) {
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := req.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return gitsource.ParseRelay([]byte(b.String()))
}

// TestRelays: what a node finds by a push webhook, a poll or a SIGHUP is
// relayed; what a relay, the start or a retry made it find is not.
func TestRelays(t *testing.T) {
	t.Parallel()
	for k, want := range map[gitsource.TriggerKind]bool{
		gitsource.TriggerWebhook: true, gitsource.TriggerPoll: true, gitsource.TriggerManual: true,
		gitsource.TriggerRelay: false, gitsource.TriggerStart: false, gitsource.TriggerRetry: false, gitsource.TriggerFSNotify: false,
	} {
		if got := Relays(k); got != want {
			t.Errorf("Relays(%s) = %v, want %v", k, got, want)
		}
	}
}

// TestAnnounceIgnoresNonCommits: a branch deletion (all zeros) or a
// short id is not relayed.
func TestAnnounceIgnoresNonCommits(t *testing.T) {
	t.Parallel()
	asked := 0
	r, err := New(Config{Node: "lb-0", Port: 1}, Options{Peers: func() []Peer { asked++; return nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"", strings.Repeat("0", 40), "1f0e2d3", strings.ToUpper(commit1)} {
		r.Announce("refs/heads/main", c)
	}
	if asked != 0 {
		t.Fatalf("non-commits reached the nodes list %d times", asked)
	}
}
