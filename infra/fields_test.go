package infra_test

import (
	"context"
	"testing"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/testkit"
)

// TestPlanSeesEveryVMField: a field added to infra.VM and forgotten by the
// planner would never reach Proxmox. Every field of a converged VM is
// changed in turn, and the plan must want something done about it (an
// action, or a problem it reports).
func TestPlanSeesEveryVMField(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	ctx := context.Background()
	cfg := homelab()
	cfg.VMs = cfg.VMs[:1]
	cfg.VMs[0].IgnoreChanges = nil
	apply(t, rec, cfg)
	obs, err := rec.Observe(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if p := rec.Plan(cfg, obs); !p.Empty() {
		t.Fatalf("not converged:\n%s", p)
	}
	// Fields used once, at creation, and never compared after: a change
	// of them on an existing VM is left alone (not reported either; a
	// known gap, see the lead's list).
	skip := map[string]string{
		"Clone":         "a template is cloned from once, at creation",
		"Node":          "a VM is created on its node; gitedge does not migrate one",
		"Disk.Storage":  "the disk is cloned to this storage at creation; gitedge does not move disks",
		"Disk.Format":   "the disk's format is chosen at creation",
		"IgnoreChanges": "names fields to leave alone: ignoring one more changes nothing by itself",
	}
	for _, m := range testkit.Mutations(cfg.VMs[0]) {
		if _, ok := skip[m.Path]; ok {
			continue
		}
		c := infra.Config{VMs: []infra.VM{m.Value.(infra.VM)}}
		obs, err := rec.Observe(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		if p := rec.Plan(c, obs); p.Empty() && len(p.Problems) == 0 && len(p.Conflicts) == 0 {
			t.Errorf("a change of %s plans nothing", m.Path)
		}
	}
}
