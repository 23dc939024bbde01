package infra_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
)

const benchLatency = 20 * time.Millisecond

// fleet is n VMs like the homelab ones, VMIDs from 1000.
func fleet(n int) infra.Config {
	base := homelab().VMs[0]
	var cfg infra.Config
	for i := range n {
		v := base
		v.Name, v.VMID = fmt.Sprintf("vm-%03d", i), 1000+i
		cfg.VMs = append(cfg.VMs, v)
	}
	return cfg
}

// BenchmarkSteadyState200 is one pass over 200 managed, converged VMs with
// 20 ms of latency on every API call: it must stay under 2 s and write
// nothing.
func BenchmarkSteadyState200(b *testing.B) {
	r := newRig(b, pvesim.Options{})
	rec := r.reconciler(b, func(o *infra.Options) { o.Logger = nil; o.Registerer = nil })
	cfg := fleet(200)
	apply(b, rec, cfg) // create them without latency
	r.sim.SetFaults(pvesim.Faults{Latency: pvesim.Duration(benchLatency)})
	r.sim.ResetCalls()
	ctx := context.Background()
	for b.Loop() {
		res, err := rec.Apply(ctx, cfg, leader)
		if err != nil || !res.Converged() {
			b.Fatalf("steady-state pass: %v\n%s", err, res.Plan)
		}
	}
	if w := writes(r.sim.Calls()); len(w) != 0 {
		b.Fatalf("steady-state passes wrote %d times: %v", len(w), w[:min(5, len(w))])
	}
	b.ReportMetric(float64(len(r.sim.Calls()))/float64(b.N), "calls/pass")
}

// BenchmarkCreate20 creates 20 VMs from nothing with 20 ms latency per
// call and the default concurrency (4); every VM is cloned exactly once.
func BenchmarkCreate20(b *testing.B) {
	cfg := fleet(20)
	ctx := context.Background()
	for b.Loop() {
		b.StopTimer()
		r := newRig(b, pvesim.Options{Faults: pvesim.Faults{Latency: pvesim.Duration(benchLatency)}})
		rec := r.reconciler(b, func(o *infra.Options) { o.Logger = nil; o.Registerer = nil; o.PollInterval = 50 * time.Millisecond })
		b.StartTimer()
		res, err := rec.Apply(ctx, cfg, leader)
		b.StopTimer()
		if err != nil || len(res.Applied) != 20 {
			b.Fatalf("create 20: applied %d, %v", len(res.Applied), err)
		}
		clones := 0
		for _, c := range r.sim.Calls() {
			if c.Method == "POST" && c.Status == 200 && len(c.Path) > 6 && c.Path[len(c.Path)-6:] == "/clone" {
				clones++
			}
		}
		if st := r.sim.Snapshot(); clones != 20 || len(st.VMs) != 21 {
			b.Fatalf("%d clones, %d VMs; want 20 clones and 20 VMs next to the template", clones, len(st.VMs)-1)
		}
		b.StartTimer()
	}
}
