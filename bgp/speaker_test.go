package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/gitedge/gitedge/internal/testkit"
)

// fakeEngine is an engine that keeps its state in memory and logs every
// call that changes it.
type fakeEngine struct {
	mu       sync.Mutex
	running  bool
	id       identity
	peerSet  map[netip.Addr]fakePeer
	routes   map[netip.Prefix]Route
	ops      []string
	onPeer   func(PeerEvent)
	failPeer netip.Addr // addPeer of this address fails
	stops    []bool     // graceful flags of stop calls
}

type fakePeer struct {
	p          Peer
	restarting bool
}

var _ engine = (*fakeEngine)(nil)

func newFakeEngine() *fakeEngine {
	return &fakeEngine{peerSet: map[netip.Addr]fakePeer{}, routes: map[netip.Prefix]Route{}}
}

func (f *fakeEngine) op(format string, args ...any) {
	f.ops = append(f.ops, fmt.Sprintf(format, args...))
}

func (f *fakeEngine) start(g identity, onPeer func(PeerEvent)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.running {
		return errors.New("already running")
	}
	f.running, f.id, f.onPeer = true, g, onPeer
	f.op("start AS%d %s", g.ASN, g.RouterID)
	return nil
}

func (f *fakeEngine) stop(graceful bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.running = false
	f.peerSet = map[netip.Addr]fakePeer{}
	f.routes = map[netip.Prefix]Route{}
	f.stops = append(f.stops, graceful)
	f.op("stop graceful=%v", graceful)
	return nil
}

func (f *fakeEngine) addPeer(p Peer, restarting bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p.Address == f.failPeer {
		return errors.New("refused")
	}
	if _, ok := f.peerSet[p.Address]; ok {
		return errors.New("exists")
	}
	f.peerSet[p.Address] = fakePeer{p, restarting}
	f.op("addPeer %s restarting=%v", p.Address, restarting)
	return nil
}

func (f *fakeEngine) deletePeer(a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.peerSet, a)
	f.op("deletePeer %s", a)
	return nil
}

func (f *fakeEngine) peerMap() map[netip.Addr]fakePeer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.peerSet)
}

func (f *fakeEngine) peers() ([]peerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []peerInfo
	for a := range f.peerSet {
		out = append(out, peerInfo{Address: a, State: StateEstablished})
	}
	return out, nil
}

func (f *fakeEngine) announce(r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.routes[r.Prefix] = r
	f.op("announce %s", routeText(r))
	return nil
}

func (f *fakeEngine) withdraw(p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.routes, p)
	f.op("withdraw %s", p)
	return nil
}

// dump renders the engine's and the host's whole state as sorted text,
// and the calls since the last dump.
func (f *fakeEngine) dump(h *fakeHost) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var lines []string
	if f.running {
		lines = append(lines, fmt.Sprintf("server AS%d %s", f.id.ASN, f.id.RouterID))
	}
	for _, a := range slices.SortedFunc(maps.Keys(f.peerSet), netip.Addr.Compare) {
		p := f.peerSet[a]
		lines = append(lines, fmt.Sprintf("peer %s AS%d hold=%s restart=%s port=%d password=%v restarting=%v",
			a, p.p.ASN, p.p.HoldTime, p.p.RestartTime, p.p.Port, p.p.Password != "", p.restarting))
	}
	for _, p := range slices.SortedFunc(maps.Keys(f.routes), comparePrefix) {
		lines = append(lines, "route "+routeText(f.routes[p]))
	}
	for _, p := range h.list() {
		lines = append(lines, "local "+p.String())
	}
	for _, o := range f.ops {
		lines = append(lines, "  did "+o)
	}
	f.ops = nil
	return strings.Join(lines, "\n")
}

func routeText(r Route) string {
	s := r.Prefix.String()
	if r.HasMED {
		s += fmt.Sprintf(" med=%d", r.MED)
	}
	if len(r.Communities) > 0 {
		s += fmt.Sprintf(" communities=%v", r.Communities)
	}
	return s
}

// fakeHost keeps the prefixes in memory.
type fakeHost struct {
	mu     sync.Mutex
	held   map[netip.Prefix]bool
	closed int
}

func (h *fakeHost) SetPrefixes(ps []netip.Prefix) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = map[netip.Prefix]bool{}
	for _, p := range ps {
		h.held[p] = true
	}
	return nil
}

func (h *fakeHost) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = nil
	h.closed++
	return nil
}

func (h *fakeHost) list() []netip.Prefix {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.SortedFunc(maps.Keys(h.held), comparePrefix)
}

var (
	peerA = netip.MustParseAddr("192.0.2.1")
	peerB = netip.MustParseAddr("192.0.2.2")
	peer6 = netip.MustParseAddr("2001:db8::1")
	pfx1  = netip.MustParsePrefix("198.51.100.10/32")
	pfx2  = netip.MustParsePrefix("198.51.100.16/28")
	pfx6  = netip.MustParsePrefix("2001:db8:100::10/128")
)

func baseConfig() Config {
	return Config{
		ASN: 65010, Node: "lb-0", NodeAddress: netip.MustParseAddr("192.0.2.11"),
		Peers: []Peer{{Address: peerA, ASN: 65000, HoldTime: 3 * time.Second}},
		Announce: []Announcement{
			{Prefix: pfx1, TrackProxy: true, Communities: []Community{65010<<16 | 100}, MED: map[string]uint32{"lb-0": 10, "lb-1": 20}},
			{Prefix: pfx2},
		},
	}
}

// rig runs a Speaker on a fake engine and host inside a synctest
// bubble: after each step synctest.Wait lets Run's goroutine finish
// reacting, so every dump is of a settled state.
type rig struct {
	t      *testing.T
	s      *Speaker
	eng    *fakeEngine
	host   *fakeHost
	ready  chan struct{}
	cancel context.CancelFunc
	done   chan error
	reg    *prometheus.Registry
	golden strings.Builder
}

func newRig(t *testing.T, restarting bool) *rig {
	r := &rig{t: t, eng: newFakeEngine(), host: &fakeHost{}, ready: make(chan struct{}), done: make(chan error, 1), reg: prometheus.NewRegistry()}
	s, err := New(Options{Ready: r.ready, Restarting: restarting, Host: r.host, engine: r.eng, Registerer: r.reg})
	if err != nil {
		t.Fatal(err)
	}
	r.s = s
	ctx, cancel := context.WithCancel(t.Context())
	r.cancel = cancel
	go func() { r.done <- s.Run(ctx) }()
	return r
}

func (r *rig) step(name string, f func()) {
	r.t.Helper()
	f()
	synctest.Wait()
	fmt.Fprintf(&r.golden, "## %s\n%s\n\n", name, r.eng.dump(r.host))
}

func (r *rig) apply(c Config) {
	r.t.Helper()
	if err := r.s.Apply(r.t.Context(), c); err != nil {
		r.t.Fatalf("Apply: %v", err)
	}
}

func (r *rig) stop() error {
	r.cancel()
	return <-r.done
}

// A sequence of configs, health changes and stops through one Speaker,
// the whole state of the BGP server and the host compared after each
// step (testdata/states.golden): what each change touches, and what it
// leaves alone.
func TestSpeakerStates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, false)
		c := baseConfig()
		r.step("apply before the proxy is ready: sessions and local prefixes, no route", func() { r.apply(c) })
		r.step("the proxy is ready: routes announced", func() { close(r.ready) })
		r.step("the same config again: nothing", func() { r.apply(c) })
		r.step("proxy unhealthy: the tracked route withdrawn", func() { r.s.SetProxyHealthy(false) })
		r.step("unhealthy again: nothing", func() { r.s.SetProxyHealthy(false) })
		r.step("proxy healthy: announced again", func() { r.s.SetProxyHealthy(true) })
		c.Announce[0].MED["lb-0"] = 5
		r.step("a new MED: the route replaced, sessions untouched", func() { r.apply(c) })
		c.Peers = append(c.Peers, Peer{Address: peerB, ASN: 65001, Password: "s3cret"}, Peer{Address: peer6, ASN: 65000})
		c.Announce = append(c.Announce, Announcement{Prefix: pfx6})
		r.step("two peers and an IPv6 prefix added: only they", func() { r.apply(c) })
		c.Peers[0].HoldTime = 9 * time.Second
		r.step("a peer's hold time changed: that session alone re-opened", func() { r.apply(c) })
		r.step("a session lost by the server: the next Apply restores it", func() {
			_ = r.eng.deletePeer(peerB)
			r.eng.ops = nil
			r.apply(c)
		})
		c.Announce = c.Announce[1:]
		c.Peers = []Peer{c.Peers[0], c.Peers[2]}
		r.step("a prefix and a peer removed", func() { r.apply(c) })
		c.RouterID = map[string]netip.Addr{"lb-0": netip.MustParseAddr("192.0.2.99")}
		r.step("a new router ID: every session restarts", func() { r.apply(c) })
		r.step("the bgp section removed: sessions closed with a Cease, prefixes gone", func() {
			r.apply(Config{Node: "lb-0", NodeAddress: c.NodeAddress})
		})
		r.step("the section back: a new server", func() { r.apply(c) })
		r.step("withdraw for a clean stop: routes gone, sessions kept", func() {
			if err := r.s.Withdraw(t.Context(), 2*time.Second); err != nil {
				t.Fatal(err)
			}
		})
		r.step("withdrawn stays withdrawn: health and Apply announce nothing", func() {
			r.s.SetProxyHealthy(false)
			synctest.Wait()
			r.s.SetProxyHealthy(true)
			r.apply(c)
		})
		r.step("Run ends: sessions closed with a Cease, prefixes removed", func() {
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
		})
		testkit.Golden(t, "testdata/states.golden", r.golden.String())
		if err := r.s.Apply(t.Context(), c); !errors.Is(err, ErrStopped) {
			t.Errorf("Apply after Run: %v, want ErrStopped", err)
		}
		if st := r.s.Status(); st.State != "stopped" {
			t.Errorf("status after Run: %+v", st)
		}
	})
}

// A node without BGP: the zero Config is accepted, Ready closes, nothing
// runs.
func TestZeroConfig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, false)
		r.step("no bgp section", func() { r.apply(Config{Node: "lb-0"}) })
		select {
		case <-r.s.Ready():
		default:
			t.Error("not ready after the zero config")
		}
		if got := r.eng.dump(r.host); got != "" {
			t.Errorf("the zero config started something:\n%s", got)
		}
		if st := r.s.Status(); st.State != "idle" || len(st.Peers) != 0 {
			t.Errorf("status: %+v", st)
		}
		r.stop()
	})
}

// Withdraw waits the propagation delay only when something was
// announced, and the wait ends with ctx.
func TestWithdrawWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, false)
		r.apply(baseConfig())
		start := time.Now()
		if err := r.s.Withdraw(t.Context(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("Withdraw with nothing announced waited %v", d)
		}
		r2 := newRig(t, false)
		close(r2.ready)
		synctest.Wait()
		r2.apply(baseConfig())
		start = time.Now()
		if err := r2.s.Withdraw(t.Context(), 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 5*time.Second {
			t.Errorf("Withdraw waited %v, want the 5s propagation", d)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		r3 := newRig(t, false)
		close(r3.ready)
		synctest.Wait()
		r3.apply(baseConfig())
		if err := r3.s.Withdraw(ctx, 5*time.Second); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Withdraw past its context: %v", err)
		}
		for _, r := range []*rig{r, r2, r3} {
			r.stop()
		}
	})
}

// The upgrade: the old process hands over (no NOTIFICATION, prefixes
// left on the node, nothing applied afterwards); the new one, started
// Restarting, opens its sessions only once its routes are in, with the
// Restart State bit, and later sessions without it.
func TestHandOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		old := newRig(t, false)
		close(old.ready)
		synctest.Wait()
		c := baseConfig()
		old.step("the old process announces", func() { old.apply(c) })
		old.step("hand-over: closed without a NOTIFICATION, prefixes kept", func() {
			if err := old.s.HandOver(t.Context()); err != nil {
				t.Fatal(err)
			}
		})
		if err := old.s.Apply(t.Context(), c); err == nil || !strings.Contains(err.Error(), "handed over") {
			t.Errorf("Apply after HandOver: %v", err)
		}
		old.step("Run ends: the prefixes stay for the new process", func() { old.stop() })
		if old.host.closed != 0 {
			t.Error("the old process removed the prefixes")
		}

		next := newRig(t, true)
		next.step("the new process applies before its proxy is ready: no session yet", func() { next.apply(c) })
		if st := next.s.Status(); !st.Restarting {
			t.Errorf("status of a restarting speaker: %+v", st)
		}
		next.step("ready: routes in, then the sessions with the Restart State bit", func() { close(next.ready) })
		c.Peers = append(c.Peers, Peer{Address: peerB, ASN: 65001})
		next.step("a peer added later: no Restart State bit", func() { next.apply(c) })
		next.stop()
		testkit.Golden(t, "testdata/handover.golden", old.golden.String()+next.golden.String())
	})
}

// Apply tries every item and joins the errors, each naming its peer; an
// invalid config changes nothing.
func TestApplyErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, false)
		close(r.ready)
		synctest.Wait()
		r.eng.failPeer = peerA
		c := baseConfig()
		c.Peers = append(c.Peers, Peer{Address: peerB, ASN: 65001})
		err := r.s.Apply(t.Context(), c)
		if err == nil || err.Error() != "peer 192.0.2.1 (AS 65000): refused" {
			t.Errorf("Apply: %v", err)
		}
		synctest.Wait()
		if _, ok := r.eng.peerMap()[peerB]; !ok {
			t.Error("the second peer was not added after the first failed")
		}
		bad := c
		bad.ASN = 0
		before := r.eng.dump(r.host)
		err = r.s.Apply(t.Context(), bad)
		if err == nil || !strings.HasPrefix(err.Error(), "config not applied: spec.bgp.asn: missing") {
			t.Errorf("invalid Apply: %v", err)
		}
		if after := r.eng.dump(r.host); after != strings.Split(before, "\n  did")[0] {
			t.Errorf("an invalid config changed the state:\n%s\nwas\n%s", after, before)
		}
		r.stop()
	})
}

// The metrics follow sessions and routes.
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		r := newRig(t, false)
		close(r.ready)
		synctest.Wait()
		r.apply(baseConfig())
		synctest.Wait()
		r.eng.onPeer(PeerEvent{Peer: peerA, To: StateEstablished, At: time.Now()})
		want := `
# HELP gitedge_bgp_prefix_announced 1 while this node announces the prefix, 0 while it is withdrawn.
# TYPE gitedge_bgp_prefix_announced gauge
gitedge_bgp_prefix_announced{prefix="198.51.100.10/32"} 1
gitedge_bgp_prefix_announced{prefix="198.51.100.16/28"} 1
# HELP gitedge_bgp_session_state BGP session state per peer: 0 idle, 1 connect, 2 active, 3 openSent, 4 openConfirm, 5 established.
# TYPE gitedge_bgp_session_state gauge
gitedge_bgp_session_state{peer="192.0.2.1"} 5
`
		if err := testutil.GatherAndCompare(r.reg, strings.NewReader(want), MetricPrefixAnnounced, MetricSessionState); err != nil {
			t.Error(err)
		}
		r.s.SetProxyHealthy(false)
		synctest.Wait()
		r.eng.onPeer(PeerEvent{Peer: peerA, To: StateIdle, Reason: "hold-timer-expired", At: time.Now()})
		if v := testutil.ToFloat64(r.s.met.prefixes.WithLabelValues(pfx1.String())); v != 0 {
			t.Errorf("%s of a withdrawn prefix: %v", MetricPrefixAnnounced, v)
		}
		if v := testutil.ToFloat64(r.s.met.updates.WithLabelValues(pfx1.String(), "withdraw")); v != 1 {
			t.Errorf("%s withdraw: %v", MetricRouteUpdates, v)
		}
		if v := testutil.ToFloat64(r.s.met.transitions.WithLabelValues(peerA.String(), "idle")); v != 1 {
			t.Errorf("%s to idle: %v", MetricSessionTransitions, v)
		}
		st := r.s.Status()
		if p := st.Peers[0]; p.State != StateIdle || p.Flaps != 1 || p.LastError != "hold-timer-expired" {
			t.Errorf("peer status after the session dropped: %+v", p)
		}
		// A prefix that leaves the config leaves the metrics.
		c := baseConfig()
		c.Announce = c.Announce[:1]
		r.apply(c)
		if n := testutil.CollectAndCount(r.s.met.prefixes); n != 1 {
			t.Errorf("%d %s series after removing a prefix, want 1", n, MetricPrefixAnnounced)
		}
		r.stop()
	})
}
