//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/frrlab"
)

// The BGP lab: the fleet's nodes run `gitedge run` with a spec.bgp
// section, FRR (zebra, bgpd) in a router namespace on the lab's bridge
// (192.0.2.1) is their upstream router with ECMP (maximum-paths 8, L4
// hashing), and a client namespace sits behind the router
// (198.51.100.2/28 via 198.51.100.1), so it reaches the VIPs only through
// the router's FIB. The nodes reach the client through the router.

const (
	bgpRouterASN = 65000
	bgpEdgeASN   = 65010
)

var (
	bgpRouter = netip.MustParseAddr("192.0.2.1")
	bgpVIP1   = netip.MustParsePrefix("198.51.100.100/32")
	bgpVIP2   = netip.MustParsePrefix("198.51.100.101/32")
)

// bgpSection renders the Edge's spec.bgp for the prefixes (track proxy).
func bgpSection(prefixes ...netip.Prefix) string {
	var b strings.Builder
	fmt.Fprintf(&b, "  bgp:\n    asn: %d\n    peers:\n      - {address: %s, asn: %d, holdTime: 3s}\n    announce:\n", bgpEdgeASN, bgpRouter, bgpRouterASN)
	for _, p := range prefixes {
		fmt.Fprintf(&b, "      - {prefix: %s, track: {proxy: true}, communities: [\"%d:100\"]}\n", p, bgpEdgeASN)
	}
	return b.String()
}

// TestBGP runs three `gitedge run` nodes announcing a VIP to FRR, on one
// lab, through the scenarios of issue 16 that need the product (the bgp
// package's own lab covers the rest with the library): (a) the router's
// FIB holds three next hops and new connections spread over the nodes;
// (c) a commit adding a prefix is announced by all three without
// resetting a session; (b) SIGTERM on a node while a client connects
// every 10 ms: withdrawn before its listeners close, no connection
// fails; (d) a node's proxy failing its track is withdrawn (target within
// 200 ms, in the figures).
func TestBGP(t *testing.T) {
	frrlab.Require(t)
	spec := webSpec()
	spec.bgp = bgpSection(bgpVIP1)
	var r *frrRouter
	f := newFleet(t, fleetOpts{nodes: 3, backends: 2, spec: spec, setup: func(f *fleet) { r = startRouter(f) }})
	all := f.nodeAddrs()
	r.WaitEstablished(t, 20*time.Second, all...)
	r.fib.WaitFor(t, bgpVIP1, 10*time.Second, frrlab.SameSet(all...))

	t.Run("a-spread", func(t *testing.T) { bgpSpread(t, f, r) })
	t.Run("c-commit-keeps-sessions", func(t *testing.T) { bgpCommitKeepsSessions(t, f, r) })
	t.Run("b-sigterm-withdraws-first", func(t *testing.T) { bgpSIGTERM(t, f, r) })
	t.Run("d-track-withdraws", func(t *testing.T) { bgpTrack(t, f, r) })
}

func (f *fleet) nodeAddrs(except ...string) []netip.Addr {
	var out []netip.Addr
	for _, n := range f.nodes {
		if !slices.Contains(except, n.name) {
			out = append(out, n.addr)
		}
	}
	return out
}

// (a) 3,000 new connections from the client (8 at a time) are spread over
// the three nodes within ±20% of a third each; none fails.
func bgpSpread(t *testing.T, f *fleet, r *frrRouter) {
	const total = 3000
	c := nsClient(r.client, 2*time.Second, false)
	counts := map[string]int{}
	failed := 0
	var mu sync.Mutex
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	start := time.Now()
	for range 8 {
		wg.Go(func() {
			for range jobs {
				e, _, err := httpGet(c, net.JoinHostPort(bgpVIP1.Addr().String(), "80"), "www.lab", "/")
				mu.Lock()
				if err != nil {
					failed++
				} else {
					counts[f.nodeByAddr(e.Via)]++
				}
				mu.Unlock()
			}
		})
	}
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < total && time.Now().Before(deadline); i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	t.Logf("spread of %d connections over 3 nodes: %v, %d failed, in %v", total, counts, failed, took.Round(time.Millisecond))
	figure("bgp a spread", "connections per node (of 3000)", "n1 %d, n2 %d, n3 %d; %d failed", counts["n1"], counts["n2"], counts["n3"], failed)
	if failed > 0 {
		t.Errorf("%d connections failed", failed)
	}
	for _, n := range f.nodes {
		if got := counts[n.name]; got < total/3*8/10 || got > total/3*12/10 {
			t.Errorf("%s got %d of %d connections, want %d±20%%", n.name, got, total, total/3)
		}
	}
	// What /status says of it.
	for _, n := range f.nodes {
		st := n.bgpStatus(t)
		if st.State != "announcing" || len(st.Peers) != 1 || st.Peers[0].State != "established" || st.Peers[0].PrefixesAnnounced != 1 ||
			len(st.Announcements) != 1 || !st.Announcements[0].Announced {
			t.Errorf("%s: /status bgp: %+v", n.name, st)
		}
	}
}

// (c) A commit adding a second prefix is announced by all three nodes
// without resetting any session: the router's sessions keep their
// establishment time and counts, and the first prefix's route never
// changes.
func bgpCommitKeepsSessions(t *testing.T, f *fleet, r *frrRouter) {
	before := r.Neighbors(t)
	spec := f.spec.clone()
	spec.bgp = bgpSection(bgpVIP1, bgpVIP2)
	t0 := time.Now()
	head, _ := f.commit(t, spec, "announce a second VIP", false)
	f.spec = spec
	at := r.fib.WaitSince(t, bgpVIP2, t0, 10*time.Second, frrlab.SameSet(f.nodeAddrs()...))
	for _, n := range f.nodes {
		n.waitLive(t, head, 10*time.Second)
	}
	t.Logf("second prefix via all three nodes %v after the push", at.Sub(t0).Round(time.Millisecond))
	figure("bgp c commit", "second prefix in the router's FIB via 3 nodes after the push", "%v", at.Sub(t0).Round(time.Millisecond))
	// A few keepalives (1 s) later, so that a reset would show.
	r.WaitUptime(t, 2*time.Second)
	after := r.Neighbors(t)
	for _, n := range f.nodes {
		b, a := before[n.addr.String()], after[n.addr.String()]
		// FRR derives the epoch from the uptime: it may move by a second.
		if a.State != "Established" || absDiff(a.UpEpoch, b.UpEpoch) > 1 || a.ConnectionsEstablished != b.ConnectionsEstablished || a.ConnectionsDropped != b.ConnectionsDropped {
			t.Errorf("the router's session with %s was reset: before %+v, after %+v", n.name, b, a)
		}
	}
	if h := r.fib.Since(bgpVIP1, t0); len(h) != 1 {
		t.Errorf("the first prefix's route changed during the commit: %v", h)
	}
	if out := r.Vtysh(t, "show bgp ipv4 unicast "+bgpVIP2.String()); !strings.Contains(out, fmt.Sprintf("%d:100", bgpEdgeASN)) {
		t.Errorf("the router has not the community on %s:\n%s", bgpVIP2, out)
	}
}

// (b) SIGTERM on a node while the client opens a connection every 10 ms:
// its next hop leaves the router's FIB before its listeners close (the
// proxy's "stopping: draining connections"), and no connection fails but
// one still in flight to the node when the router moved its flows: with
// plain ECMP its next packets (the request, sent after the handshake) go
// to another node, which resets it, as for any connection established to
// a node that leaves (docs/bgp.md). Those are counted apart.
func bgpSIGTERM(t *testing.T, f *fleet, r *frrRouter) {
	const inFlight = 50 * time.Millisecond
	pr := probeFrom(t, r.client, net.JoinHostPort(bgpVIP1.Addr().String(), "80"), "www.lab", f, 10*time.Millisecond)
	pr.waitCount(t, 50)
	n := f.node("n2")
	mark := n.d.mark()
	t0 := time.Now()
	n.stopWithin(t, 15*time.Second)
	at := r.fib.WaitSince(t, bgpVIP1, t0, 5*time.Second, frrlab.SameSet(f.nodeAddrs("n2")...))
	closed := n.d.logTime(t, mark, `"msg":"stopping: draining connections"`)
	pr.waitCount(t, pr.count()+50)
	res := pr.stop()
	var failed []probeResult
	late, moving := 0, 0
	for _, p := range res {
		if p.at.Before(t0.Add(-time.Second)) {
			continue
		}
		if p.who == "" {
			// In flight when the route moved: started up to inFlight
			// before the sample that saw it.
			if !p.at.After(at) && at.Sub(p.at) < inFlight {
				moving++
				continue
			}
			failed = append(failed, p)
		}
		if p.who == n.name && p.at.After(at.Add(50*time.Millisecond)) {
			late++
		}
	}
	t.Logf("SIGTERM of %s: next hop gone from the router's FIB %v after the signal, listeners closed %v after that; %d probes, %d failed, and %d in flight when the route moved",
		n.name, at.Sub(t0).Round(time.Millisecond), closed.Sub(at).Round(time.Millisecond), len(res), len(failed), moving)
	figure("bgp b SIGTERM", "next hop withdrawn after SIGTERM; listeners closed after that", "%v; %v", at.Sub(t0).Round(time.Millisecond), closed.Sub(at).Round(time.Millisecond))
	figure("bgp b SIGTERM", "failed connections (one every 10 ms); in flight when the route moved", "%d of %d; %d", len(failed), len(res), moving)
	if !at.Before(closed) {
		t.Errorf("the listeners closed at %s, before the next hop left the FIB at %s", closed.Format("15:04:05.000"), at.Format("15:04:05.000"))
	}
	if len(failed) > 0 {
		t.Errorf("%d connections failed, the first %v after SIGTERM", len(failed), failed[0].at.Sub(t0))
	}
	if late > 0 {
		t.Errorf("%s answered %d connections opened after its next hop left", n.name, late)
	}
}

// (d) The proxy of a node fails its track (its listener's socket is shut
// down under it): its next hop leaves the router's FIB (target within
// 200 ms, in the figures).
func bgpTrack(t *testing.T, f *fleet, r *frrRouter) {
	n := f.node("n3")
	want := f.nodeAddrs("n2", "n3")
	t0 := n.breakListener(t, 80)
	at := r.fib.WaitSince(t, bgpVIP1, t0, 5*time.Second, frrlab.SameSet(want...))
	d := at.Sub(t0)
	t.Logf("track failed on %s → next hop gone from the router's FIB after %v", n.name, d.Round(time.Millisecond))
	figure("bgp d track", "next hop withdrawn after the proxy's listener failed", "%v (target within 200ms)", d.Round(time.Millisecond))
	st := n.bgpStatus(t)
	for _, a := range st.Announcements {
		if a.Announced || a.Reason != "the proxy is unhealthy" {
			t.Errorf("%s: /status while unhealthy: %+v", n.name, a)
		}
	}
}

// bgpNodeStatus is the bgp part of GET /status, as far as the tests read it.
type bgpNodeStatus struct {
	State string `json:"state"`
	Peers []struct {
		Address           string `json:"address"`
		State             string `json:"state"`
		PrefixesAnnounced int    `json:"prefixesAnnounced"`
		Flaps             int    `json:"flaps"`
	} `json:"peers"`
	Announcements []struct {
		Prefix    string `json:"prefix"`
		Announced bool   `json:"announced"`
		Reason    string `json:"reason"`
	} `json:"announcements"`
}

func (n *edgeNode) bgpStatus(t testing.TB) bgpNodeStatus {
	t.Helper()
	s, err := n.status()
	if err != nil {
		t.Fatalf("%s: /status: %v", n.name, err)
	}
	var doc struct {
		BGP *bgpNodeStatus `json:"bgp"`
	}
	if err := json.Unmarshal([]byte(s.raw), &doc); err != nil || doc.BGP == nil {
		t.Fatalf("%s: no bgp in /status (%v):\n%s", n.name, err, s.raw)
	}
	return *doc.BGP
}

// logTime is the time (the JSON log's "time") of the first line after
// mark containing substr.
func (d *daemon) logTime(t testing.TB, mark int, substr string) time.Time {
	t.Helper()
	lines := d.linesSince(mark, substr)
	if len(lines) == 0 {
		t.Fatalf("%s: no log line with %s:\n%s", d.node.name, substr, d.logTail(30))
	}
	var e struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("%s: %v: %s", d.node.name, err, lines[0])
	}
	return e.Time
}

// frrRouter is FRR in the router namespace, and the client behind it.
type frrRouter struct {
	*frrlab.Router
	ns, client string
	fib        *frrlab.FIB
}

// startRouter builds the router and client namespaces and starts FRR.
func startRouter(f *fleet) *frrRouter {
	t := f.t
	t.Helper()
	r := &frrRouter{}
	r.ns = f.addHost("rt", bgpRouter.String())
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"} {
		run(t, "ip", "netns", "exec", r.ns, "sysctl", "-q", "-w", s)
	}
	r.client = f.prefix + "bc"
	f.addNS(r.client)
	run(t, "ip", "link", "add", "eth0", "netns", r.client, "type", "veth", "peer", "name", "eth1", "netns", r.ns)
	run(t, "ip", "-n", r.client, "addr", "add", "198.51.100.2/28", "dev", "eth0")
	run(t, "ip", "-n", r.ns, "addr", "add", "198.51.100.1/28", "dev", "eth1")
	run(t, "ip", "-n", r.client, "link", "set", "eth0", "up")
	run(t, "ip", "-n", r.ns, "link", "set", "eth1", "up")
	run(t, "ip", "-n", r.client, "route", "add", "default", "via", "198.51.100.1")
	cfg := frrlab.Config{NS: r.ns, RouterASN: bgpRouterASN, EdgeASN: bgpEdgeASN, RouterID: bgpRouter}
	for _, n := range f.lab.nodes {
		run(t, "ip", "-n", n.ns, "route", "add", "198.51.100.0/28", "via", bgpRouter.String())
		cfg.Nodes = append(cfg.Nodes, n.addr)
	}
	r.Router = frrlab.Start(t, cfg)
	t.Cleanup(func() {
		if t.Failed() {
			r.Dump(t)
		}
	})
	r.fib = frrlab.WatchFIB(t, r.ns, bgpVIP1, bgpVIP2)
	return r
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// vipProbe has a client in namespace ns GET host on addr every `every`,
// each on a new connection with a 500 ms deadline, recording the node
// that proxied it ("" on failure), until stopped (or 2 minutes).
type vipProbe struct {
	mu   sync.Mutex
	got  []probeResult
	stop func() []probeResult
}

func probeFrom(t testing.TB, ns, addr, host string, f *fleet, every time.Duration) *vipProbe {
	p := &vipProbe{}
	c := nsClient(ns, 500*time.Millisecond, false)
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(every)
		defer tick.Stop()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			select {
			case <-quit:
				return
			case now := <-tick.C:
				if now.After(deadline) {
					return
				}
				wg.Go(func() {
					r := probeResult{at: now}
					if e, _, err := httpGet(c, addr, host, "/"); err == nil {
						r.who = f.nodeByAddr(e.Via)
					}
					p.mu.Lock()
					p.got = append(p.got, r)
					p.mu.Unlock()
				})
			}
		}
	}()
	var once sync.Once
	p.stop = func() []probeResult {
		once.Do(func() { close(quit) })
		<-done
		p.mu.Lock()
		defer p.mu.Unlock()
		out := slices.Clone(p.got)
		slices.SortFunc(out, func(a, b probeResult) int { return a.at.Compare(b.at) })
		return out
	}
	t.Cleanup(func() { p.stop() })
	return p
}

func (p *vipProbe) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.got)
}

func (p *vipProbe) waitCount(t testing.TB, n int) {
	t.Helper()
	frrlab.Poll(t, 10*time.Second, func() string {
		if c := p.count(); c < n {
			return fmt.Sprintf("%d probes, want %d", c, n)
		}
		return ""
	})
}
