//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
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
	frrDaemons   = "/usr/lib/frr"
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
// fails; (d) a node's proxy failing its track is withdrawn within 200 ms.
func TestBGP(t *testing.T) {
	requireFRR(t)
	spec := webSpec()
	spec.bgp = bgpSection(bgpVIP1)
	var r *frrRouter
	f := newFleet(t, fleetOpts{nodes: 3, backends: 2, spec: spec, setup: func(f *fleet) { r = startRouter(f) }})
	all := f.nodeAddrs()
	r.waitEstablished(t, 20*time.Second, all...)
	r.fib.waitFor(t, bgpVIP1, 10*time.Second, sameSet(all...))

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
	before := r.neighbors(t)
	spec := f.spec.clone()
	spec.bgp = bgpSection(bgpVIP1, bgpVIP2)
	t0 := time.Now()
	head, _ := f.commit(t, spec, "announce a second VIP", false)
	f.spec = spec
	at := r.fib.waitSince(t, bgpVIP2, t0, 10*time.Second, sameSet(f.nodeAddrs()...))
	for _, n := range f.nodes {
		n.waitLive(t, head, 10*time.Second)
	}
	t.Logf("second prefix via all three nodes %v after the push", at.Sub(t0).Round(time.Millisecond))
	figure("bgp c commit", "second prefix in the router's FIB via 3 nodes after the push", "%v", at.Sub(t0).Round(time.Millisecond))
	// A few keepalives (1 s) later, so that a reset would show.
	r.waitUptime(t, 2*time.Second)
	after := r.neighbors(t)
	for _, n := range f.nodes {
		b, a := before[n.addr.String()], after[n.addr.String()]
		// FRR derives the epoch from the uptime: it may move by a second.
		if a.State != "Established" || absDiff(a.UpEpoch, b.UpEpoch) > 1 || a.ConnectionsEstablished != b.ConnectionsEstablished || a.ConnectionsDropped != b.ConnectionsDropped {
			t.Errorf("the router's session with %s was reset: before %+v, after %+v", n.name, b, a)
		}
	}
	if h := r.fib.since(bgpVIP1, t0); len(h) != 1 {
		t.Errorf("the first prefix's route changed during the commit: %v", h)
	}
	if out := r.vtysh(t, "show bgp ipv4 unicast "+bgpVIP2.String()); !strings.Contains(out, fmt.Sprintf("%d:100", bgpEdgeASN)) {
		t.Errorf("the router has not the community on %s:\n%s", bgpVIP2, out)
	}
}

// (b) SIGTERM on a node while the client opens a connection every 10 ms:
// its next hop leaves the router's FIB before its listeners close (the
// proxy's "stopping: draining connections"), and no connection fails.
func bgpSIGTERM(t *testing.T, f *fleet, r *frrRouter) {
	pr := probeFrom(t, r.client, net.JoinHostPort(bgpVIP1.Addr().String(), "80"), "www.lab", f, 10*time.Millisecond)
	pr.waitCount(t, 50)
	n := f.node("n2")
	mark := n.d.mark()
	t0 := time.Now()
	n.stopWithin(t, 15*time.Second)
	at := r.fib.waitSince(t, bgpVIP1, t0, 5*time.Second, sameSet(f.nodeAddrs("n2")...))
	closed := n.d.logTime(t, mark, `"msg":"stopping: draining connections"`)
	pr.waitCount(t, pr.count()+50)
	res := pr.stop()
	var failed []probeResult
	late := 0
	for _, p := range res {
		if p.at.Before(t0.Add(-time.Second)) {
			continue
		}
		if p.who == "" {
			failed = append(failed, p)
		}
		if p.who == n.name && p.at.After(at.Add(50*time.Millisecond)) {
			late++
		}
	}
	t.Logf("SIGTERM of %s: next hop gone from the router's FIB %v after the signal, listeners closed %v after that; %d probes, %d failed",
		n.name, at.Sub(t0).Round(time.Millisecond), closed.Sub(at).Round(time.Millisecond), len(res), len(failed))
	figure("bgp b SIGTERM", "next hop withdrawn after SIGTERM; listeners closed after that", "%v; %v", at.Sub(t0).Round(time.Millisecond), closed.Sub(at).Round(time.Millisecond))
	figure("bgp b SIGTERM", "failed connections (one every 10 ms)", "%d of %d", len(failed), len(res))
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
// down under it): its next hop leaves the router's FIB within 200 ms.
func bgpTrack(t *testing.T, f *fleet, r *frrRouter) {
	n := f.node("n3")
	want := f.nodeAddrs("n2", "n3")
	t0 := n.breakListener(t, 80)
	at := r.fib.waitSince(t, bgpVIP1, t0, 5*time.Second, sameSet(want...))
	d := at.Sub(t0)
	t.Logf("track failed on %s → next hop gone from the router's FIB after %v", n.name, d.Round(time.Millisecond))
	figure("bgp d track", "next hop withdrawn after the proxy's listener failed", "%v", d.Round(time.Millisecond))
	if d > 200*time.Millisecond {
		t.Errorf("withdrawn after %v, want within 200ms", d)
	}
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

// requireFRR fails the test when FRR is missing: CI runs as root with it
// installed and must not pass by skipping.
func requireFRR(t *testing.T) {
	t.Helper()
	requireTools(t, "ip", "vtysh")
	for _, p := range []string{frrDaemons + "/zebra", frrDaemons + "/bgpd"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("FRR is required as the upstream router (apt-get install frr; make deps installs it): %v", err)
		}
	}
	if _, err := user.Lookup("frr"); err != nil {
		t.Fatalf("the frr user is missing (the frr package creates it): %v", err)
	}
}

// frrRouter is FRR in the router namespace, and the client behind it.
type frrRouter struct {
	ns, client string
	dir        string // FRR's configuration, sockets and logs
	fib        *fibWatch
}

const frrBGPConf = `hostname router
log file {{.Dir}}/bgpd.log informational
router bgp {{.RouterASN}}
 bgp router-id {{.RouterID}}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor EDGE peer-group
 neighbor EDGE remote-as {{.EdgeASN}}
 neighbor EDGE timers 1 3
 neighbor EDGE passive
{{- range .Nodes}}
 neighbor {{.}} peer-group EDGE
{{- end}}
 address-family ipv4 unicast
  neighbor EDGE activate
  maximum-paths 8
 exit-address-family
`

// startRouter builds the router and client namespaces and starts FRR,
// waiting until vtysh reaches it.
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
	for _, n := range f.lab.nodes {
		run(t, "ip", "-n", n.ns, "route", "add", "198.51.100.0/28", "via", bgpRouter.String())
	}
	// Not t.TempDir: its parent is private to root, and FRR runs as frr.
	dir, err := os.MkdirTemp("", fmt.Sprintf("gitedge-e2e-frr-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // after FRR is killed: cleanups run last-in first-out
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.dir = dir
	data := struct {
		Dir                string
		RouterASN, EdgeASN int
		RouterID           netip.Addr
		Nodes              []netip.Addr
	}{Dir: dir, RouterASN: bgpRouterASN, EdgeASN: bgpEdgeASN, RouterID: bgpRouter}
	for _, n := range f.lab.nodes {
		data.Nodes = append(data.Nodes, n.addr)
	}
	var conf bytes.Buffer
	if err := template.Must(template.New("bgpd").Parse(frrBGPConf)).Execute(&conf, data); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"bgpd.conf": conf.String(), "zebra.conf": "hostname router\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run(t, "chown", "-R", "frr:frr", dir)
	for _, d := range []string{"zebra", "bgpd"} {
		out, err := os.Create(filepath.Join(dir, d+".out"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { out.Close() })
		f.startProc(r.ns, nil, out, out, filepath.Join(frrDaemons, d),
			"-u", "frr", "-g", "frr", "-f", filepath.Join(dir, d+".conf"), "-i", filepath.Join(dir, d+".pid"),
			"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "-P", "0")
		if d == "zebra" {
			// bgpd gives up on a zebra socket that is not there yet.
			pollUntil(t, 10*time.Second, func() string {
				if _, err := os.Stat(filepath.Join(dir, "zserv.api")); err != nil {
					return "zebra's socket: " + err.Error()
				}
				return ""
			})
		}
	}
	pollUntil(t, 15*time.Second, func() string {
		if out, err := r.vtyshErr("show bgp summary json"); err != nil {
			return fmt.Sprintf("vtysh: %v %s", err, out)
		}
		return ""
	})
	t.Cleanup(func() {
		if t.Failed() {
			r.dump(t)
		}
	})
	r.fib = watchFIB(t, r.ns, bgpVIP1, bgpVIP2)
	return r
}

func (r *frrRouter) vtyshErr(cmd string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", r.ns, "vtysh", "--vty_socket", r.dir, "-c", cmd).CombinedOutput()
	return string(out), err
}

func (r *frrRouter) vtysh(t testing.TB, cmd string) string {
	t.Helper()
	out, err := r.vtyshErr(cmd)
	if err != nil {
		t.Fatalf("vtysh -c %q: %v\n%s", cmd, err, out)
	}
	return out
}

func (r *frrRouter) dump(t testing.TB) {
	for _, c := range []string{"show bgp summary", "show bgp ipv4 unicast"} {
		out, _ := r.vtyshErr(c)
		t.Logf("--- vtysh %s:\n%s", c, out)
	}
	out, _ := exec.Command("ip", "-n", r.ns, "route", "show").CombinedOutput()
	t.Logf("--- ip route (router):\n%s", out)
	if b, err := os.ReadFile(filepath.Join(r.dir, "bgpd.log")); err == nil {
		if len(b) > 4000 {
			b = b[len(b)-4000:]
		}
		t.Logf("--- bgpd.log:\n%s", b)
	}
}

// frrNeighbor is a part of `show bgp neighbors json`.
type frrNeighbor struct {
	State                  string `json:"bgpState"`
	UpEpoch                int64  `json:"bgpTimerUpEstablishedEpoch"`
	UptimeMsec             int64  `json:"bgpTimerUpMsec"`
	ConnectionsEstablished int    `json:"connectionsEstablished"`
	ConnectionsDropped     int    `json:"connectionsDropped"`
}

func (r *frrRouter) neighbors(t testing.TB) map[string]frrNeighbor {
	t.Helper()
	out := r.vtysh(t, "show bgp neighbors json")
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("show bgp neighbors json: %v\n%s", err, out)
	}
	res := map[string]frrNeighbor{}
	for k, v := range raw {
		if _, err := netip.ParseAddr(k); err != nil {
			continue
		}
		var n frrNeighbor
		if err := json.Unmarshal(v, &n); err == nil {
			res[k] = n
		}
	}
	return res
}

// waitEstablished waits until the router has every given neighbour up.
func (r *frrRouter) waitEstablished(t testing.TB, within time.Duration, addrs ...netip.Addr) {
	t.Helper()
	pollUntil(t, within, func() string {
		nb := r.neighbors(t)
		for _, a := range addrs {
			if s := nb[a.String()].State; s != "Established" {
				return fmt.Sprintf("the router's session with %s is %q", a, s)
			}
		}
		return ""
	})
}

// waitUptime waits until every established session of the router has
// been up at least d.
func (r *frrRouter) waitUptime(t testing.TB, d time.Duration) {
	t.Helper()
	pollUntil(t, d+10*time.Second, func() string {
		for a, n := range r.neighbors(t) {
			if n.State == "Established" && time.Duration(n.UptimeMsec)*time.Millisecond < d {
				return fmt.Sprintf("%s up for %dms", a, n.UptimeMsec)
			}
		}
		return ""
	})
}

func absDiff(a, b int64) int64 {
	if a > b {
		return a - b
	}
	return b - a
}

// pollUntil calls check every 20 ms until it returns "" or within ends,
// then fails t with its last answer.
func pollUntil(t testing.TB, within time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fibWatch samples the router's main table every 2 ms and keeps the
// history of each watched prefix's next hops.
type fibWatch struct {
	mu       sync.Mutex
	h        *netlink.Handle
	prefixes []netip.Prefix
	hist     map[netip.Prefix][]fibState
}

type fibState struct {
	at  time.Time
	gws []netip.Addr // sorted; empty: no route
}

func (s fibState) String() string { return fmt.Sprintf("%s %v", s.at.Format("15:04:05.000"), s.gws) }

func watchFIB(t testing.TB, ns string, prefixes ...netip.Prefix) *fibWatch {
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(nsh)
	nsh.Close()
	if err != nil {
		t.Fatal(err)
	}
	w := &fibWatch{h: h, prefixes: prefixes, hist: map[netip.Prefix][]fibState{}}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				w.sample()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; h.Close() })
	return w
}

func (w *fibWatch) sample() {
	now := time.Now()
	for _, p := range w.prefixes {
		gws := w.lookup(p)
		w.mu.Lock()
		h := w.hist[p]
		if len(h) == 0 || !slices.Equal(h[len(h)-1].gws, gws) {
			w.hist[p] = append(h, fibState{at: now, gws: gws})
		}
		w.mu.Unlock()
	}
}

func (w *fibWatch) lookup(p netip.Prefix) []netip.Addr {
	dst := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	routes, err := w.h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
	if err != nil {
		return nil
	}
	var gws []netip.Addr
	for _, r := range routes {
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			gws = append(gws, a.Unmap())
		}
		for _, nh := range r.MultiPath {
			if a, ok := netip.AddrFromSlice(nh.Gw); ok {
				gws = append(gws, a.Unmap())
			}
		}
	}
	slices.SortFunc(gws, netip.Addr.Compare)
	return slices.Compact(gws)
}

func (w *fibWatch) now(p netip.Prefix) []netip.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hist[p]
	if len(h) == 0 {
		return nil
	}
	return h[len(h)-1].gws
}

// since returns p's states from the one current at t on.
func (w *fibWatch) since(p netip.Prefix, t time.Time) []fibState {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hist[p]
	i := 0
	for j, s := range h {
		if !s.at.After(t) {
			i = j
		}
	}
	return slices.Clone(h[i:])
}

func (w *fibWatch) waitFor(t testing.TB, p netip.Prefix, within time.Duration, ok func([]netip.Addr) bool) time.Time {
	t.Helper()
	return w.waitSince(t, p, time.Now(), within, ok)
}

// waitSince waits until p's next hops satisfy ok, for a change that may
// have happened since start, and returns when they first did.
func (w *fibWatch) waitSince(t testing.TB, p netip.Prefix, start time.Time, within time.Duration, ok func([]netip.Addr) bool) time.Time {
	t.Helper()
	var at time.Time
	pollUntil(t, within, func() string {
		for _, s := range w.since(p, start) {
			if ok(s.gws) {
				at = s.at
				return ""
			}
		}
		return fmt.Sprintf("the router's route to %s goes via %v", p, w.now(p))
	})
	return at
}

func sameSet(want ...netip.Addr) func([]netip.Addr) bool {
	w := slices.Clone(want)
	slices.SortFunc(w, netip.Addr.Compare)
	return func(gws []netip.Addr) bool { return slices.Equal(gws, w) }
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
	pollUntil(t, 10*time.Second, func() string {
		if c := p.count(); c < n {
			return fmt.Sprintf("%d probes, want %d", c, n)
		}
		return ""
	})
}
