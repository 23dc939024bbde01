//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"
)

// userSettings is the user's keepalived VI_1: VRRPv2, VRID 33, auth PASS
// "9999", advert_int 1, priorities 100 (n1) / 101 (n2).
func userSettings() instanceSpec {
	return instanceSpec{name: "VI_1", vrid: 33, version: 2, interval: "1s", auth: true, preempt: true,
		prio: map[string]int{"n1": 100, "n2": 101}, vips: []string{vip1 + "/24"}}
}

func fastV3() instanceSpec {
	s := userSettings()
	s.version, s.interval, s.auth = 3, "100ms", false
	return s
}

// interopCase puts gitedge and keepalived in one VRRP group: `master`
// (priority 101 on n2) runs the higher priority, the other node the lower.
// The VIP must move both ways — clean stop of the master, its return with
// preemption — and never be held by both while the link is up.
func interopCase(t *testing.T, spec instanceSpec, masterKind string) {
	l := newLab(t, 2)
	dir := l.edgeConfig(spec)
	n1, n2 := l.node("n1"), l.node("n2")
	vip1 := strings.Split(spec.vips[0], "/")[0]
	n1.startServer(vip1)
	n2.startServer(vip1)
	iv, _ := time.ParseDuration(spec.interval)
	down := 4 * iv // master down interval plus slack
	startOn := func(n *labNode, kind string) *daemon {
		if kind == "gitedge" {
			return n.startGitedge(dir)
		}
		return n.startKeepalived(keepalivedConf(n, spec, false))
	}
	backupKind := "keepalived"
	if masterKind == "keepalived" {
		backupKind = "gitedge"
	}
	// n2 (101) first: it becomes master after its master down interval.
	d2 := startOn(n2, masterKind)
	d2.waitState(t, "VI_1", "MASTER", down+5*time.Second)
	d1 := startOn(n1, backupKind)
	d1.waitState(t, "VI_1", "BACKUP", 5*time.Second)
	p := l.startProbe(vip1)
	p.waitServedBy(t, "n2", 3*iv, down+5*time.Second)
	if s := d1.state("VI_1"); s != "BACKUP" {
		t.Fatalf("%s on n1 is %s beside a %s master", backupKind, s, masterKind)
	}
	l.mon.waitHolders(t, vip1, []string{"n2"}, time.Second)

	// Clean stop of the master: priority 0, the backup takes over.
	t0 := time.Now()
	d2.stop(t)
	d1.waitState(t, "VI_1", "MASTER", down)
	p.waitServedBy(t, "n1", 3*iv, down+2*time.Second)
	t.Logf("%s stopped, %s took over; client outage %v", masterKind, backupKind, p.outage(t0, time.Now()))
	l.mon.waitHolders(t, vip1, []string{"n1"}, time.Second)

	// The master returns and preempts; the other steps down.
	d2 = startOn(n2, masterKind)
	d2.waitState(t, "VI_1", "MASTER", down+5*time.Second)
	d1.waitState(t, "VI_1", "BACKUP", 2*time.Second)
	p.waitServedBy(t, "n2", 3*iv, down+5*time.Second)
	l.mon.waitHolders(t, vip1, []string{"n2"}, time.Second)
	l.mon.checkNoDual(t, iv)
	if t.Failed() {
		t.Logf("n1 log:\n%s\nn2 log:\n%s", d1.logText(), d2.logText())
	}
}

func TestKeepalivedInteropV2GitedgeMaster(t *testing.T) { interopCase(t, userSettings(), "gitedge") }
func TestKeepalivedInteropV2KeepalivedMaster(t *testing.T) {
	interopCase(t, userSettings(), "keepalived")
}
func TestKeepalivedInteropV3GitedgeMaster(t *testing.T)    { interopCase(t, fastV3(), "gitedge") }
func TestKeepalivedInteropV3KeepalivedMaster(t *testing.T) { interopCase(t, fastV3(), "keepalived") }

// IPv6: VRRPv3 over ff02::12 with keepalived.
func TestKeepalivedInteropV3IPv6(t *testing.T) {
	s := fastV3()
	s.vips = []string{"2001:db8::10/64"}
	interopCase(t, s, "gitedge")
}

// Unicast VRRPv3: adverts to the peer's address, whose checksum covers the
// peer as destination (RFC 5798 §5.2.8), with keepalived's unicast_peer.
func TestKeepalivedInteropV3Unicast(t *testing.T) {
	s := fastV3()
	s.unicast = true
	interopCase(t, s, "keepalived")
}
