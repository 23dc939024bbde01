//go:build e2e

package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// Scenario 10: three nodes, two VIPs with crossed priorities
// (active-active): each VIP sits on its preferred node; losing one node
// moves only its VIP, the other VIP's clients see nothing.
func TestFleetActiveActive(t *testing.T) {
	const vipA, vipB = "192.0.2.10", "192.0.2.20"
	a := instanceSpec{name: "VI_1", vrid: 33, version: 3, interval: "100ms", preempt: true, proxy: true,
		prio: map[string]int{"n1": 103, "n2": 102, "n3": 101}, vips: []string{vipA + "/24"}}
	b := instanceSpec{name: "VI_2", vrid: 34, version: 3, interval: "100ms", preempt: true, proxy: true,
		prio: map[string]int{"n1": 101, "n2": 102, "n3": 103}, vips: []string{vipB + "/24"}}
	f := newFleet(t, fleetOpts{nodes: 3, spec: webSpec(a, b), first: []string{"n1", "n3"}})
	n1, n2, n3 := f.node("n1"), f.node("n2"), f.node("n3")
	n2.d.waitState(t, "VI_1", "BACKUP", 5*time.Second)
	n2.d.waitState(t, "VI_2", "BACKUP", 5*time.Second)
	f.mon.waitHolders(t, vipA, []string{"n1"}, 2*time.Second)
	f.mon.waitHolders(t, vipB, []string{"n3"}, 2*time.Second)
	since := time.Now()
	pA := f.probeVIP(vipA, "app.lab", 20*time.Millisecond)
	pB := f.probeVIP(vipB, "app.lab", 20*time.Millisecond)
	pA.waitServedBy(t, "n1", 300*time.Millisecond, 3*time.Second)
	pB.waitServedBy(t, "n3", 300*time.Millisecond, 3*time.Second)
	// VI_2 stays on n3 whatever happens to n1: its client sees nothing,
	// no probe refused or cut (one slower than 150 ms on a loaded machine
	// is in the figures, not a loss). Unless n3 itself was starved of CPU
	// past its backup's master down interval (its adverts, captured on
	// the client's wire, say so): VRRP then fails VI_2 over, as it must,
	// and that is logged and in the figures instead.
	adv3 := map[string]*advertLog{"n3": captureAdvertsIn(t, f.cl, n3.addr)}
	minDown := 3*advert + (256-102)*advert/256 // n2's, VI_2's first backup
	otherUntouched := func(from time.Time, event string) {
		t.Helper()
		starved, unexplained := f.starvedTakeovers(adv3, "VI_2", from, minDown)
		if len(unexplained) > 0 {
			t.Errorf("%s: a takeover of VI_2 by the master down timer while n3's adverts kept coming: %s\n%s", event, strings.Join(unexplained, "; "), f.transitionLogs("VI_2", from))
		}
		if len(starved) > 0 {
			t.Logf("%s: n3 was starved of CPU past the master down interval and VI_2 failed over: %s\n%s", event, strings.Join(starved, "; "), f.transitionLogs("VI_2", from))
			figure("10 active-active (3 nodes)", event+": VI_2 failovers of a master starved of CPU", "%s", strings.Join(starved, "; "))
			return
		}
		for _, n := range []*edgeNode{n2, n3} {
			if tr := n.d.transitionsSince("VI_2", from); len(tr) != 0 {
				t.Errorf("%s moved VI_2 too: %s went %v", event, n.name, tr)
			}
		}
		if h := f.mon.holders(vipB); !slices.Equal(h, []string{"n3"}) {
			t.Errorf("%s held by %v after %s, want [n3] alone", vipB, h, event)
		}
		if fl := f.mon.flipsSince(vipB, from); len(fl) > 0 {
			t.Errorf("%s moved when %s: %s", vipB, event, strings.Join(fl, "; "))
		}
		if hard := pB.hardFailures(from, time.Now()); len(hard) > 0 {
			t.Errorf("the client of %s (on n3) lost it when %s: %s", vipB, event, strings.Join(hard, "; "))
		}
	}

	t0 := time.Now()
	n1.kill()
	n2.d.waitState(t, "VI_1", "MASTER", 2*time.Second)
	pA.waitServedBy(t, "n2", 300*time.Millisecond, 3*time.Second)
	hold(5 * advert)
	outA, outB := pA.outage(t0, time.Now()), pB.gap(t0, time.Now())
	figure("10 active-active (3 nodes)", "SIGKILL n1: outage on its VIP", "%v", outA.Round(time.Millisecond))
	figure("10 active-active (3 nodes)", "SIGKILL n1: outage on the other VIP", "%v", outB.Round(time.Millisecond))
	otherUntouched(t0, "n1 died")

	// n1 returns: VI_1 goes back to it, VI_2 stays on n3.
	t1 := time.Now()
	n1.start(t)
	n1.d.waitState(t, "VI_1", "MASTER", 5*time.Second)
	n1.d.waitState(t, "VI_2", "BACKUP", time.Second)
	pA.waitServedBy(t, "n1", 300*time.Millisecond, 3*time.Second)
	f.mon.waitHolders(t, vipA, []string{"n1"}, time.Second)
	figure("10 active-active (3 nodes)", "n1 returns: outage on the other VIP", "%v", pB.gap(t1, time.Now()).Round(time.Millisecond))
	otherUntouched(t1, "n1 returned")
	f.mon.checkNoDualWithin(t, since, dualBound(advert))
}

// Scenario 8: a mixed group during a migration — n1 runs `gitedge run`,
// n2 (lb-1, the preferred node) still runs keepalived with the operator's
// own configuration (the seed's keepalived.conf.j2 and inventory,
// rendered for the lab) beside HAProxy. The VIP moves both ways: to
// gitedge when keepalived stops, back to keepalived when it returns.
func TestFleetMixedKeepalived(t *testing.T) {
	requireTools(t, "keepalived", "haproxy")
	const vip = "192.0.2.254"
	spec := instanceSpec{name: "VI_1", vrid: 33, version: 2, interval: "1s", auth: true, preempt: true, proxy: true,
		prio: map[string]int{"n1": 100, "n2": 101}, vips: []string{vip + "/24"}}
	conf := renderSeed(t, "lb-1")
	for _, want := range []string{"virtual_router_id 33", "priority 101", "auth_pass 9999", vip} {
		if !strings.Contains(conf, want) {
			t.Fatalf("the rendered seed lacks %q:\n%s", want, conf)
		}
	}
	f := newFleet(t, fleetOpts{nodes: 2, spec: webSpec(spec), run: []string{"n1"}})
	n1, n2 := f.node("n1"), f.node("n2")
	hcfg, err := filepath.Abs("testdata/haproxy-lab.cfg")
	if err != nil {
		t.Fatal(err)
	}
	f.startProc(n2.ns, nil, os.Stderr, os.Stderr, "haproxy", "-db", "-f", hcfg)
	waitTCP(t, f.cl, "192.0.2.12:80", 5*time.Second)
	// VRRPv2 at 1 s: a master down interval of 3.6 s, and slack for
	// keepalived's start-up and its first script run.
	const down = 8 * time.Second
	n1.d.waitState(t, "VI_1", "MASTER", down)

	since := time.Now()
	ka := n2.startKeepalived(conf)
	ka.waitState(t, "VI_1", "MASTER", down)
	n1.d.waitState(t, "VI_1", "BACKUP", 2*time.Second)
	f.mon.waitHolders(t, vip, []string{"n2"}, 2*time.Second)
	p := f.probeVIP(vip, "app.lab", 20*time.Millisecond)
	p.waitServedBy(t, "n2", time.Second, down)

	// keepalived stops (priority 0): gitedge takes the VIP.
	t0 := time.Now()
	ka.stop(t)
	n1.d.waitState(t, "VI_1", "MASTER", 3*time.Second)
	p.waitServedBy(t, "n1", time.Second, 3*time.Second)
	f.mon.waitHolders(t, vip, []string{"n1"}, time.Second)
	figure("8 mixed keepalived+gitedge (v2 1s)", "keepalived stops → gitedge serves: outage", "%v", p.outage(t0, time.Now()).Round(time.Millisecond))

	// keepalived returns with the higher priority and preempts gitedge.
	t1 := time.Now()
	ka = n2.startKeepalived(conf)
	ka.waitState(t, "VI_1", "MASTER", down)
	n1.d.waitState(t, "VI_1", "BACKUP", 2*time.Second)
	p.waitServedBy(t, "n2", time.Second, 3*time.Second)
	f.mon.waitHolders(t, vip, []string{"n2"}, time.Second)
	figure("8 mixed keepalived+gitedge (v2 1s)", "keepalived returns and preempts: outage", "%v", p.gap(t1, time.Now()).Round(time.Millisecond))
	f.mon.checkNoDualWithin(t, since, dualBound(time.Second))
	if t.Failed() {
		t.Logf("keepalived log:\n%s", ka.logText())
	}
}

var jinjaVar = regexp.MustCompile(`\{\{\s*(\w+)\s*\}\}`)

// renderSeed renders testdata/seed/keepalived.conf.j2 for an inventory
// host as Ansible would, with the lab's addresses (192.0.2.N for the
// operator's xxx.xxx.xxx.N).
func renderSeed(t testing.TB, host string) string {
	t.Helper()
	vars := map[string]string{}
	for _, f := range []string{"testdata/seed/inventory/group_vars/loadbalancer", "testdata/seed/inventory/host_vars/" + host} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		if err := yaml.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for k, v := range m {
			vars[k] = strings.ReplaceAll(v, "xxx.xxx.xxx.", "192.0.2.")
		}
	}
	tpl, err := os.ReadFile("testdata/seed/keepalived.conf.j2")
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	out := jinjaVar.ReplaceAllStringFunc(string(tpl), func(m string) string {
		k := jinjaVar.FindStringSubmatch(m)[1]
		v, ok := vars[k]
		if !ok {
			missing = append(missing, k)
		}
		return v
	})
	if len(missing) > 0 {
		t.Fatalf("keepalived.conf.j2 uses %v, not in the inventory of %s", missing, host)
	}
	return out
}
