package bgp

import (
	"fmt"
	"github.com/gitedge/gitedge/internal/testkit"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Scenarios against FRR in network namespaces (lab_test.go). Each quotes
// its figures in the test log (go test -v -run TestFRR ./bgp/).

func (l *lab) addrs() []netip.Addr {
	var out []netip.Addr
	for _, n := range l.nodes {
		out = append(out, n.addr)
	}
	return out
}

func vipAddr(p netip.Prefix) string {
	return net.JoinHostPort(p.Addr().String(), fmt.Sprint(servePort))
}

// spread opens n connections (8 at a time) and counts who answered.
func (l *lab) spread(p netip.Prefix, n int) (map[string]int, int) {
	var mu sync.Mutex
	counts := map[string]int{}
	failed := 0
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	deadline := time.Now().Add(90 * time.Second)
	for range 8 {
		wg.Go(func() {
			for range jobs {
				node, c, err := l.pool.hello(vipAddr(p), time.Second)
				if c != nil {
					c.Close()
				}
				mu.Lock()
				if err != nil {
					failed++
				} else {
					counts[node]++
				}
				mu.Unlock()
			}
		})
	}
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	wg.Wait()
	return counts, failed
}

// 1. Three speakers: sessions open before the proxy serves and nothing
// is announced; once they serve, the router's FIB holds the prefix with
// three next hops, and 3,000 new connections spread within ±20% of a
// third each. The same over IPv6 sessions for an IPv6 prefix.
func TestFRRSpread(t *testing.T) {
	l := newLab(t, labOptions{nodes: 3, v6: true})
	for _, n := range l.nodes {
		l.apply(n, l.config(n, 3*time.Second, vip1, vip6))
	}
	var addrs6 []netip.Addr
	for _, n := range l.nodes {
		addrs6 = append(addrs6, n.addr6)
	}
	l.waitEstablished(20*time.Second, append(l.addrs(), addrs6...)...)
	if st := l.status(l.nodes[0]); st.State != "waitingForProxy" || st.Announcements[0].Announced {
		t.Fatalf("before the proxy serves: %+v", st)
	}
	if gws := l.fib.Now(vip1); len(gws) != 0 {
		t.Fatalf("the router routes %s via %v before any node serves", vip1, gws)
	}
	t0 := time.Now()
	for _, n := range l.nodes {
		l.serve(n)
	}
	at := l.fib.WaitSince(t, vip1, t0, 10*time.Second, sameSet(l.addrs()...))
	at6 := l.fib.WaitSince(t, vip6, t0, 10*time.Second, sameSet(addrs6...))
	t.Logf("announced once serving: %s via 3 next hops after %v, %s after %v", vip1, at.Sub(t0).Round(time.Millisecond), vip6, at6.Sub(t0).Round(time.Millisecond))
	for _, p := range []netip.Prefix{vip1, vip6} {
		total := 3000
		if p.Addr().Is6() {
			total = 600
		}
		start := time.Now()
		counts, failed := l.spread(p, total)
		t.Logf("spread of %d connections to %s over 3 nodes: %v, %d failed, in %v", total, p, counts, failed, time.Since(start).Round(time.Millisecond))
		if failed > 0 {
			t.Errorf("%d connections failed", failed)
		}
		for _, n := range l.nodes {
			if c := counts[n.name]; c < total/3*8/10 || c > total/3*12/10 {
				t.Errorf("%s got %d of %d connections, want %d±20%%", n.name, c, total, total/3)
			}
		}
	}
	st := l.status(l.nodes[0])
	if st.State != "announcing" || len(st.Peers) != 2 || !st.Announcements[0].Announced || !st.Announcements[1].Announced {
		t.Fatalf("status: %+v", st)
	}
	for _, p := range st.Peers {
		if p.State != StateEstablished || p.PrefixesAnnounced != 1 {
			t.Errorf("status of peer %s: %+v (want established, 1 prefix of its family)", p.Address, p)
		}
	}
}

func except(l *lab, gone ...*labNode) []netip.Addr {
	var out []netip.Addr
	for _, n := range l.nodes {
		if !slices.Contains(gone, n) {
			out = append(out, n.addr)
		}
	}
	return out
}

// waitProbes waits until the probe has n results.
func waitProbes(t *testing.T, pr *probe, n int) {
	t.Helper()
	testkit.Poll(t, 10*time.Second, func() string {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		if len(pr.results) < n {
			return fmt.Sprintf("%d probe results, want %d", len(pr.results), n)
		}
		return ""
	})
}

// 4. A node's proxy fails its track: its route is withdrawn from the
// router's FIB at once (200 ms in e2e), and comes back when it recovers.
func TestFRRTrackWithdraws(t *testing.T) {
	l := newLab(t, labOptions{nodes: 3})
	l.up(3*time.Second, vip1)
	n := l.nodes[2]
	for round := range 3 {
		t0 := time.Now()
		l.healthy(n, false)
		at := l.fib.WaitSince(t, vip1, t0, 5*time.Second, sameSet(except(l, n)...))
		t.Logf("round %d: track failed → next hop %s gone from the router's FIB after %v", round, n.addr, at.Sub(t0).Round(time.Millisecond))
		// The 200 ms target is e2e's (TestBGP/d-track-withdraws; figures in
		// docs/bgp.md). Here, under -race beside other tests, the bound
		// only tells an announcement withdrawn at once from a next hop
		// dropped by the router's hold time (3s) or never.
		if d := at.Sub(t0); d > 2*time.Second {
			t.Errorf("withdrawn after %v, want well within the 3s hold time (200ms target, checked by e2e)", d)
		}
		st := l.status(n)
		if a := st.Announcements[0]; a.Announced || a.Reason != "the proxy is unhealthy" {
			t.Errorf("status while unhealthy: %+v", a)
		}
		t1 := time.Now()
		l.healthy(n, true)
		at = l.fib.WaitSince(t, vip1, t1, 5*time.Second, sameSet(l.addrs()...))
		t.Logf("round %d: track recovered → next hop back after %v", round, at.Sub(t1).Round(time.Millisecond))
	}
}

// 6. A commit adding a second prefix (with MED 10 from every node) is
// announced by all three nodes without resetting any
// session: the router's sessions keep their establishment time and
// count, and the first prefix's route never changes.
func TestFRRApplyKeepsSessions(t *testing.T) {
	l := newLab(t, labOptions{nodes: 3})
	l.up(3*time.Second, vip1)
	before := l.neighbors()
	t0 := time.Now()
	for _, n := range l.nodes {
		c := l.config(n, 3*time.Second, vip1, vip2)
		c.Announce[1].MED = map[string]uint32{n.name: 10} // same on all: still ECMP
		l.apply(n, c)
	}
	at := l.fib.WaitSince(t, vip2, t0, 10*time.Second, sameSet(l.addrs()...))
	t.Logf("second prefix via all three nodes %v after the first Apply", at.Sub(t0).Round(time.Millisecond))
	// Some keepalives later, so a reset would show.
	waitFRRUptime(t, l, 2*time.Second)
	after := l.neighbors()
	for _, n := range l.nodes {
		b, a := before[n.addr.String()], after[n.addr.String()]
		// FRR derives the epoch from the uptime: it may move by a second.
		if a.State != "Established" || absDiff(a.UpEpoch, b.UpEpoch) > 1 || a.ConnectionsEstablished != b.ConnectionsEstablished || a.ConnectionsDropped != b.ConnectionsDropped {
			t.Errorf("the router's session with %s: before %+v, after %+v", n.name, b, a)
		}
		if st := l.status(n); st.Peers[0].Flaps != 0 || st.Peers[0].PrefixesAnnounced != 2 {
			t.Errorf("%s status: %+v", n.name, st.Peers[0])
		}
	}
	if h := l.fib.Since(vip1, t0); len(h) != 1 {
		t.Errorf("the first prefix's route changed during the Apply: %v", h)
	}
	out := l.vtysh("show bgp ipv4 unicast " + vip2.String())
	if !strings.Contains(out, "metric 10") {
		t.Errorf("the router has no MED 10 on %s:\n%s", vip2, out)
	}
	// Removing the first prefix withdraws it everywhere, still without a reset.
	t1 := time.Now()
	for _, n := range l.nodes {
		l.apply(n, l.config(n, 3*time.Second, vip2))
	}
	l.fib.WaitSince(t, vip1, t1, 10*time.Second, sameSet())
	for addr, a := range l.neighbors() {
		if b := before[addr]; absDiff(a.UpEpoch, b.UpEpoch) > 1 || a.ConnectionsEstablished != b.ConnectionsEstablished {
			t.Errorf("the router's session with %s was reset by removing a prefix", addr)
		}
	}
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// waitFRRUptime waits until the router's sessions with the given nodes
// (all when none) have been up at least d.
func waitFRRUptime(t *testing.T, l *lab, d time.Duration, only ...netip.Addr) {
	t.Helper()
	l.frr.WaitUptime(t, d, only...)
}

// 2. A clean stop (Withdraw, then the listener closes) while a client
// opens a connection every 10 ms: the node's next hop leaves the FIB
// before its listener closes, and no connection fails but one in flight
// when the router moves its flows (counted apart, see below).
func TestFRRCleanStop(t *testing.T) {
	l := newLab(t, labOptions{nodes: 3})
	l.up(3*time.Second, vip1)
	pr := l.startProbe(vipAddr(vip1))
	waitProbes(t, pr, 50)
	n := l.nodes[1]
	t0 := time.Now()
	var rep stopReport
	l.call(n, "POST", "/stop?propagation=1s", nil, &rep)
	at := l.fib.WaitSince(t, vip1, t0, 5*time.Second, sameSet(except(l, n)...))
	closed := time.Unix(0, rep.ListenerClosedAt)
	waitProbes(t, pr, len(pr.finishPeek())+50)
	res := pr.finish()
	t.Logf("clean stop of %s: next hop gone %v after Withdraw, listener closed %v later; %d probes, %d failed, by node %v",
		n.name, at.Sub(t0).Round(time.Millisecond), closed.Sub(at).Round(time.Millisecond), len(res), len(failures(res)), countBy(res))
	if !at.Before(closed) {
		t.Errorf("the listener closed at %v, before the next hop left the FIB at %v", closed, at)
	}
	// A connection opened up to 50 ms before the sample that saw the
	// route move may be in flight when the router moves its flows: with
	// plain ECMP its next packets go to another node, which resets it, as
	// for any connection established to a node that leaves (docs/bgp.md).
	// Those are counted apart; any other failure fails the test.
	var failed []probeResult
	moving := 0
	for _, r := range failures(res) {
		if !r.at.After(at) && at.Sub(r.at) < 50*time.Millisecond {
			moving++
			continue
		}
		failed = append(failed, r)
	}
	if moving > 0 {
		t.Logf("%d connection(s) in flight when the route moved were reset", moving)
	}
	if len(failed) > 0 {
		t.Errorf("%d connections failed, first at %v: %v", len(failed), failed[0].at.Sub(t0), failed[0].err)
	}
	for _, r := range res {
		if r.node == n.name && r.at.After(at.Add(50*time.Millisecond)) {
			t.Errorf("%s answered a connection opened %v after its next hop left", n.name, r.at.Sub(at))
			break
		}
	}
}

// 3. SIGKILL a node: the router drops its next hop within the hold time
// (3 s; graceful restart keeps a dead process's routes for its restart
// time, the hold time by default), and the connections hashed to it fail
// meanwhile (counted).
func TestFRRKill(t *testing.T) {
	l := newLab(t, labOptions{nodes: 3})
	l.up(3*time.Second, vip1)
	pr := l.startProbe(vipAddr(vip1))
	waitProbes(t, pr, 50)
	n := l.nodes[2]
	t0 := time.Now()
	if err := n.proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	at := l.fib.WaitSince(t, vip1, t0, 10*time.Second, sameSet(except(l, n)...))
	waitProbes(t, pr, len(pr.finishPeek())+50)
	res := pr.finish()
	var during, failed int
	for _, r := range res {
		if r.at.After(t0) && r.at.Before(at) {
			during++
			if r.err != nil {
				failed++
			}
		}
	}
	t.Logf("SIGKILL of %s: next hop gone after %v (hold time 3s); %d of %d connections opened meanwhile failed; %d failed in all",
		n.name, at.Sub(t0).Round(time.Millisecond), failed, during, len(failures(res)))
	// The hold time, not graceful restart's stale-path time (minutes):
	// the bound leaves room for the router's and the probe's own delays
	// on a loaded machine (3.5s seen under -race with other tests
	// running); the figure itself is logged above.
	if d := at.Sub(t0); d > 3*time.Second+3*time.Second {
		t.Errorf("next hop gone after %v, want about the 3s hold time", d)
	}
	for _, r := range failures(res) {
		if r.at.After(at.Add(50 * time.Millisecond)) {
			t.Errorf("a connection opened %v after the next hop left failed: %v", r.at.Sub(at), r.err)
			break
		}
	}
}

// heldConn is an established connection and the node that took it.
type heldConn struct {
	node string
	c    net.Conn
}

// hold opens n connections to p and keeps them open.
func (l *lab) hold(p netip.Prefix, n int) []heldConn {
	l.t.Helper()
	out := make([]heldConn, 0, n)
	l.t.Cleanup(func() {
		for _, h := range out {
			h.c.Close()
		}
	})
	for range n {
		node, c, err := l.pool.hello(vipAddr(p), time.Second)
		if err != nil {
			l.t.Fatalf("opening a held connection: %v", err)
		}
		out = append(out, heldConn{node, c})
	}
	return out
}

// broken sends a line on every connection to a node other than gone and
// counts those that do not echo it back.
func broken(conns []heldConn, gone string) (broke, survivors int) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, h := range conns {
		if h.node == gone {
			continue
		}
		survivors++
		wg.Go(func() {
			msg := fmt.Sprintf("ping %d\n", i)
			_ = h.c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, len(msg))
			_, err := h.c.Write([]byte(msg))
			if err == nil {
				_, err = io.ReadFull(h.c, buf)
			}
			if err != nil || string(buf) != msg {
				mu.Lock()
				broke++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return broke, survivors
}

// 5. Established connections to the surviving nodes when one node leaves
// (its track fails): with the router's plain ECMP (FRR installs a
// hash-threshold multipath route), some move to another node and break;
// with a resilient next-hop group (what FRR 8.4 cannot install, so the
// test plays the router: it mirrors FRR's next hops into a Linux
// resilient group that a policy rule puts in front of FRR's route), none.
func TestFRREstablishedFlows(t *testing.T) {
	l := newLab(t, labOptions{nodes: 3})
	l.up(3*time.Second, vip1)
	n3 := l.nodes[2]
	const held = 300

	conns := l.hold(vip1, held)
	t0 := time.Now()
	l.healthy(n3, false)
	l.fib.WaitSince(t, vip1, t0, 5*time.Second, sameSet(except(l, n3)...))
	broke, survivors := broken(conns, n3.name)
	t.Logf("plain ECMP: %d of %d established connections to the surviving nodes broke when %s left", broke, survivors, n3.name)
	for _, h := range conns {
		h.c.Close()
	}
	t1 := time.Now()
	l.healthy(n3, true)
	l.fib.WaitSince(t, vip1, t1, 5*time.Second, sameSet(l.addrs()...))

	// The resilient group: one next hop object per node, the group, and a
	// rule sending the VIP to a table that uses it.
	var ids []string
	for i, n := range l.nodes {
		id := strconv.Itoa(1001 + i)
		l.run("ip", "-n", l.router, "nexthop", "add", "id", id, "via", n.addr.String(), "dev", "br0")
		ids = append(ids, id)
	}
	l.run("ip", "-n", l.router, "nexthop", "add", "id", "1000", "group", strings.Join(ids, "/"), "type", "resilient", "buckets", "128")
	l.run("ip", "-n", l.router, "route", "add", vip1.String(), "nhid", "1000", "table", "100")
	l.run("ip", "-n", l.router, "rule", "add", "to", vip1.String(), "lookup", "100", "pref", "100")
	conns = l.hold(vip1, held)
	if c := countHeld(conns); len(c) != 3 {
		t.Fatalf("connections through the resilient group reached %v", c)
	}
	t2 := time.Now()
	l.healthy(n3, false)
	l.fib.WaitSince(t, vip1, t2, 5*time.Second, sameSet(except(l, n3)...))
	// The router's FIB lost the next hop: a resilient router's group
	// follows, keeping the buckets of the nodes that stay.
	l.run("ip", "-n", l.router, "nexthop", "replace", "id", "1000", "group", strings.Join(ids[:2], "/"), "type", "resilient", "buckets", "128")
	broke, survivors = broken(conns, n3.name)
	t.Logf("resilient next-hop group: %d of %d established connections to the surviving nodes broke when %s left", broke, survivors, n3.name)
	if broke != 0 {
		t.Errorf("%d connections to surviving nodes broke with a resilient group", broke)
	}
}

func countHeld(conns []heldConn) map[string]int {
	m := map[string]int{}
	for _, h := range conns {
		m[h.node]++
	}
	return m
}

// 7. The SIGUSR2 hand-over: a node's process is replaced by a successor
// (graceful restart, RFC 4724). The router keeps the route through it,
// the session comes back from the successor, and no client connection
// fails.
func TestFRRUpgradeHandover(t *testing.T) {
	l := newLab(t, labOptions{nodes: 3})
	l.up(3*time.Second, vip1)
	n1 := l.nodes[0]
	before := l.neighbors()[n1.addr.String()]
	if before.GR.RemoteMode != "Restart" || before.GR.Timers.Received != 3 {
		t.Fatalf("the router sees no graceful restart from %s (restart time 3s): %+v", n1.name, before.GR)
	}
	pr := l.startProbe(vipAddr(vip1))
	waitProbes(t, pr, 50)
	t0 := time.Now()
	var rep stopReport
	ctl := filepath.Join(l.dir, n1.name+"-succ.sock")
	l.call(n1, "POST", "/upgrade?ctl="+ctl, nil, &rep)
	succ := rep.SuccessorPID
	l.procs = append(l.procs, func() { _ = syscall.Kill(succ, syscall.SIGKILL) })
	handedOver := time.Unix(0, rep.HandedOverAt)
	n1.client = unixClient(ctl)
	var reup time.Time
	testkit.Poll(t, 15*time.Second, func() string {
		nb := l.neighbors()[n1.addr.String()]
		if nb.State != "Established" || nb.ConnectionsEstablished != before.ConnectionsEstablished+1 {
			return fmt.Sprintf("the router's session with %s: %s, established %d times", n1.name, nb.State, nb.ConnectionsEstablished)
		}
		reup = time.Now()
		// The successor said it restarted (RFC 4724 §3's R bit): the
		// router kept the routes for it.
		if !nb.GR.RBit {
			t.Errorf("the successor's OPEN has no Restart State bit: %+v", nb.GR)
		}
		return ""
	})
	// The router counts the session up when our KEEPALIVE comes, the
	// successor when the router's does: the two may be a moment apart.
	testkit.Poll(t, 5*time.Second, func() string {
		st := l.status(n1)
		if st.State != "announcing" || st.Restarting || st.Peers[0].State != StateEstablished || !st.Announcements[0].Announced {
			return fmt.Sprintf("the successor's status: %+v", st)
		}
		return ""
	})
	waitProbes(t, pr, len(pr.finishPeek())+100)
	res := pr.finish()
	after := 0
	for _, r := range res {
		if r.node == n1.name && r.at.After(handedOver) {
			after++
		}
	}
	t.Logf("hand-over of %s: successor ready and sessions handed over %v after the request; router's session back within %v of the hand-over; %d probes, %d failed; %d answered by %s's successor",
		n1.name, handedOver.Sub(t0).Round(time.Millisecond), reup.Sub(handedOver).Round(100*time.Millisecond), len(res), len(failures(res)), after, n1.name)
	if f := failures(res); len(f) > 0 {
		t.Errorf("%d connections failed, first %v after the request: %v", len(f), f[0].at.Sub(t0), f[0].err)
	}
	if h := l.fib.Since(vip1, t0); len(h) != 1 {
		t.Errorf("the router's route changed during the hand-over: %v", h)
	}
	if after == 0 {
		t.Errorf("%s's successor answered no connection", n1.name)
	}
}

// TCP MD5 signatures (RFC 2385): with the router's key the session comes
// up; with another key it never does, and the status says the session is
// not established.
func TestFRRPassword(t *testing.T) {
	l := newLab(t, labOptions{nodes: 2, password: "s3cret-key"})
	good, bad := l.nodes[0], l.nodes[1]
	c := l.config(good, 3*time.Second, vip1)
	c.Peers[0].Password = "s3cret-key"
	l.apply(good, c)
	c = l.config(bad, 3*time.Second, vip1)
	c.Peers[0].Password = "wrong-key"
	l.apply(bad, c)
	l.serve(good)
	l.serve(bad)
	l.waitEstablished(20*time.Second, good.addr)
	l.fib.WaitFor(t, vip1, 5*time.Second, sameSet(good.addr))
	// The wrong key had as long as the right one, and 5 s more.
	waitFRRUptime(t, l, 5*time.Second, good.addr)
	if s := l.neighbors()[bad.addr.String()].State; s == "Established" {
		t.Errorf("the session with the wrong key is %s", s)
	}
	if st := l.status(bad); st.Peers[0].State == StateEstablished {
		t.Errorf("the node with the wrong key reports %+v", st.Peers[0])
	}
}
