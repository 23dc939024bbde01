//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkFailover runs the lab's failure scenarios GE_BENCH_RUNS times
// (default 5) for gitedge and for keepalived, each at the user's VRRPv2
// 1 s settings and at VRRPv3 100 ms, and prints the client outage medians.
// `make bench-failover` runs it; it is a measurement, not a timed test.
func BenchmarkFailover(b *testing.B) {
	runs := 5
	if s := os.Getenv("GE_BENCH_RUNS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			b.Fatalf("GE_BENCH_RUNS=%q", s)
		}
		runs = n
	}
	type row struct {
		impl, setting string
		res           map[string][]time.Duration
		blackHoles    int
		overlap       time.Duration
	}
	var rows []row
	for range b.N {
		for _, setting := range []string{"v2 1s", "v3 100ms"} {
			for _, impl := range []string{"keepalived", "gitedge"} {
				res, bh, ov := benchScenarios(b, impl, setting, runs)
				rows = append(rows, row{impl, setting, res, bh, ov})
			}
		}
	}
	var out strings.Builder
	fmt.Fprintf(&out, "\nclient outage, median of %d runs (VIP probed every 10 ms)\n", runs)
	fmt.Fprintf(&out, "%-10s %-10s %10s %10s %10s %10s %12s %12s %14s\n", "setting", "impl", "link down", "SIGKILL", "clean stop", "tracked", "heal: reach", "black holes", "max VIP dual")
	for _, r := range rows {
		fmt.Fprintf(&out, "%-10s %-10s %10s %10s %10s %10s %12s %10d/%d %14s\n", r.setting, r.impl,
			median(r.res["link down"]), median(r.res["SIGKILL"]), median(r.res["clean stop"]), median(r.res["tracked"]),
			median(r.res["heal"]), r.blackHoles, runs, r.overlap.Round(10*time.Microsecond))
	}
	fmt.Fprintln(&out, "heal: reach = heal until the client is on the winner for good; black holes = heals where that took over 3 advertisement intervals;")
	fmt.Fprintln(&out, "max VIP dual = longest time two live nodes held the VIP with the link up (preemption handovers);")
	fmt.Fprintln(&out, "tracked = service killed (keepalived: 2 s pgrep vrrp_script, weight 0; gitedge vrrp: track.interfaces svc0 down with it)")
	fmt.Print(out.String())
}

func median(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return m.Round(time.Millisecond).String()
}

// benchScenarios runs every scenario `runs` times on one lab with impl on
// both nodes (n2 the preferred master), returning outages by scenario and
// how many heals black-holed (the client not on the winner within three
// advertisement intervals).
func benchScenarios(b *testing.B, impl, setting string, runs int) (map[string][]time.Duration, int, time.Duration) {
	spec := userSettings()
	if setting == "v3 100ms" {
		spec = fastV3()
	}
	spec.track = true
	iv, _ := time.ParseDuration(spec.interval)
	downWait := 4*iv + 3*time.Second
	l := newLab(b, 2)
	dir := l.edgeConfig(spec)
	n1, n2 := l.node("n1"), l.node("n2")
	n1.startServer(vip1)
	n2.startServer(vip1)
	start := func(n *labNode) *daemon {
		if impl == "gitedge" {
			return n.startGitedge(dir)
		}
		return n.startKeepalived(keepalivedConf(n, spec, true))
	}
	start(n2).waitState(b, "VI_1", "MASTER", downWait+5*time.Second)
	start(n1).waitState(b, "VI_1", "BACKUP", 5*time.Second)
	p := l.startProbe(vip1)
	settle := func() {
		n2.d.waitState(b, "VI_1", "MASTER", downWait+5*time.Second)
		n1.d.waitState(b, "VI_1", "BACKUP", 3*time.Second)
		// Keep the client's ARP entry honest between runs.
		run(b, "ip", "-n", l.cl, "neigh", "flush", "dev", "eth0")
		p.waitServedBy(b, "n2", 500*time.Millisecond, downWait+5*time.Second)
	}
	settle()
	res := map[string][]time.Duration{}
	failover := func(name string, inject, restore func()) {
		t0 := time.Now()
		inject()
		p.waitServedBy(b, "n1", 300*time.Millisecond, downWait+5*time.Second)
		res[name] = append(res[name], p.outage(t0, time.Now()))
		restore()
		settle()
	}
	blackHoles := 0
	for range runs {
		failover("link down", func() { n2.setLink("eth0", false) }, func() { n2.setLink("eth0", true) })
		failover("SIGKILL", func() {
			l.mon.setDead("n2", true)
			n2.d.kill()
			n2.killServer()
		}, func() {
			n2.startServer(vip1)
			start(n2).waitState(b, "VI_1", "BACKUP", 5*time.Second)
			// Restarted, it first removes the VIP its killed self left behind.
			l.mon.waitHolders(b, vip1, []string{"n1"}, 2*time.Second)
			l.mon.setDead("n2", false)
		})
		failover("clean stop", func() { n2.d.stop(b) }, func() { start(n2) })
		failover("tracked", func() {
			n2.killServer()
			if impl == "gitedge" {
				n2.setLink("svc0", false)
			}
		}, func() {
			n2.startServer(vip1)
			if impl == "gitedge" {
				n2.setLink("svc0", true)
			}
		})
		// Split brain and heal.
		l.isolate(true)
		n1.d.waitState(b, "VI_1", "MASTER", downWait)
		deadline := time.Now().Add(3 * time.Second)
		for time.Now().Before(deadline) && !p.servedBySince("n1", time.Now().Add(-300*time.Millisecond), time.Now().Add(-50*time.Millisecond)) {
			time.Sleep(20 * time.Millisecond)
		}
		healed := time.Now()
		l.isolate(false)
		limit := healed.Add(3 * time.Second)
		for time.Now().Before(limit) && !p.servedBySince("n2", time.Now().Add(-300*time.Millisecond), time.Now().Add(-50*time.Millisecond)) {
			time.Sleep(20 * time.Millisecond)
		}
		reach := p.reachedAfter("n2", healed, time.Now())
		res["heal"] = append(res["heal"], reach)
		if reach > 3*iv {
			blackHoles++
		}
		settle()
	}
	b.Logf("%s %s: %v, black holes %d/%d, VIP overlaps with the link up: %v", impl, setting, res, blackHoles, runs, l.mon.overlap)
	return res, blackHoles, l.mon.maxOverlap()
}
