//go:build e2e

package e2e

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

const fleetVIP = "192.0.2.10"

// fleetInstance is the fleets' VRRP instance: v3 at 100 ms, n2 preferred,
// following the proxy's health (track.proxy).
func fleetInstance() instanceSpec {
	return instanceSpec{name: "VI_1", vrid: 33, version: 3, interval: "100ms", preempt: true,
		prio: map[string]int{"n1": 100, "n2": 101}, vips: []string{fleetVIP + "/24"}, proxy: true}
}

const advert = 100 * time.Millisecond

// TestFleet runs the product on two nodes as deployed — `gitedge run` on
// each, a git server, the Proxmox simulator, backends and a client — and
// walks it through the fleet scenarios as subtests on that one lab. Each
// subtest starts from the same state (n2 master, both nodes up, the last
// good commit live) and restores it when it ends.
func TestFleet(t *testing.T) {
	spec := webSpec(fleetInstance())
	spec.vms = []vmSpec{{name: "web-1", vmid: 150, memory: 1024}}
	spec.leader = "vrrp:VI_1"
	f := newFleet(t, fleetOpts{nodes: 2, pve: true, signed: true, spec: spec, master: "n2"})
	n1, n2 := f.node("n1"), f.node("n2")
	n2.d.waitState(t, "VI_1", "MASTER", 5*time.Second)
	n1.d.waitState(t, "VI_1", "BACKUP", 5*time.Second)
	f.mon.waitHolders(t, fleetVIP, []string{"n2"}, 2*time.Second)

	t.Run("1-push-webhook-live", func(t *testing.T) { scenarioCommitToLive(t, f) })
}

// ready brings the fleet back to its base state: both nodes running, n2
// master, the VIP on n2 alone.
func (f *fleet) ready(t testing.TB) {
	t.Helper()
	for _, n := range f.nodes {
		if n.d == nil || n.d.exited() {
			n.start(t)
		}
	}
	f.node("n2").d.waitState(t, "VI_1", "MASTER", 5*time.Second)
	f.node("n1").d.waitState(t, "VI_1", "BACKUP", 5*time.Second)
	f.mon.waitHolders(t, fleetVIP, []string{"n2"}, 2*time.Second)
}

// Scenario 1: a push and a signed webhook to every node → the new route
// is live on every node; the median commit-to-live after the webhooks is
// under 300 ms. Through the VIP, the TLS backend sees the client's real
// address in the PROXY v2 header and the HTTP backend in X-Forwarded-For.
func scenarioCommitToLive(t *testing.T, f *fleet) {
	f.ready(t)
	var lat []time.Duration
	spec := f.spec.clone()
	for k := 1; k <= 5; k++ {
		host := fmt.Sprintf("r%d.lab", k)
		be := fmt.Sprintf("be%d", 2+k%5)
		bname := fmt.Sprintf("b%d", k)
		spec.setBackend(backendSpec{name: bname, servers: []string{be + ":80"}})
		spec.setRoute(routeSpec{name: fmt.Sprintf("r%d", k), hosts: []string{host}, http: bname, tls: "secure"})
		_, at := f.commit(t, spec, "route "+host, true)
		lat = append(lat, f.waitRouteAll(t, host, be, at, 5*time.Second)...)
	}
	f.spec = spec
	med := medianOf(lat)
	figure("1 push+webhook", "commit-to-live median (2 nodes x 5 commits)", "%v (ms: %s)", med.Round(time.Millisecond), msList(lat))
	if med > 300*time.Millisecond {
		t.Errorf("median commit-to-live %v after the webhooks, want under 300 ms (all: %s ms)", med, msList(lat))
	}

	// Through the VIP: TLS passthrough with PROXY v2, HTTP with X-Forwarded-For.
	e, err := tlsGet(f.cl, net.JoinHostPort(fleetVIP, "443"), "r1.lab", 2*time.Second)
	if err != nil {
		t.Fatalf("TLS through the VIP: %v", err)
	}
	if !strings.HasPrefix(e.Proxy, "192.0.2.100:") || e.Via != "192.0.2.12" || !e.TLS {
		t.Errorf("TLS backend saw %+v, want the client 192.0.2.100 in the PROXY v2 header, via n2 (192.0.2.12)", e)
	}
	e, _, err = httpGet(f.node("n2").client, net.JoinHostPort(fleetVIP, "80"), "r1.lab", "/")
	if err != nil {
		t.Fatalf("HTTP through the VIP: %v", err)
	}
	if e.XFF != "192.0.2.100" || e.Via != "192.0.2.12" {
		t.Errorf("HTTP backend saw %+v, want X-Forwarded-For 192.0.2.100, via n2 (192.0.2.12)", e)
	}
}
