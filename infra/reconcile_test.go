package infra_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/testkit"
)

const infraMetricDrift = infra.MetricDrift

// From nothing, the homelab VMs are cloned, configured, resized and handed
// to HA; a second pass reads only.
func TestReconcileFromNothingThenNoWrites(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	res := apply(t, rec, homelab())
	if len(res.Applied) != 2 {
		t.Fatalf("applied %d actions, want 2 creates:\n%s", len(res.Applied), res.Plan)
	}
	golden(t, "from-nothing.plan", res.Plan.String())
	golden(t, "from-nothing.state", r.sim.Dump())

	res = r.applyQuiet(t, rec, homelab(), "second pass")
	if !res.Converged() {
		t.Errorf("second pass not converged:\n%s", res.Plan)
	}
	if n := len(r.sim.Calls()); n != 4 {
		// resources, HA resources, and one config read per managed VM.
		t.Errorf("second pass made %d calls, want 4: %v", n, r.sim.Calls())
	}
	if strings.Contains(r.log.String(), tokenSecret) {
		t.Error("the token secret appears in the log")
	}
}

func vmByID(st *pvesim.State, id int) *pvesim.VMState { return st.VMs[id] }

// effective is what GET config would show: pending applied.
func effective(vm *pvesim.VMState) map[string]string {
	c := map[string]string{}
	for k, v := range vm.Conf {
		c[k] = v
	}
	for k, v := range vm.Pending {
		c[k] = v
	}
	for _, k := range vm.PendingDelete {
		delete(c, k)
	}
	return c
}

func TestMemoryChangeIsOneConfigWrite(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	cfg := homelab()
	apply(t, rec, cfg)

	cfg.VMs[0].Memory = 8192
	r.sim.ResetCalls()
	res := apply(t, rec, cfg)
	if w := writes(r.sim.Calls()); len(w) != 1 || w[0] != "POST /nodes/proxmox1/qemu/150/config" {
		t.Fatalf("writes = %v, want exactly one POST config of VM 150\nplan:\n%s", w, res.Plan)
	}
	vm := vmByID(r.sim.Snapshot(), 150)
	if vm.Conf["memory"] != "4096" || vm.Pending["memory"] != "8192" {
		t.Errorf("running VM: memory active %q pending %q, want 4096 active and 8192 pending", vm.Conf["memory"], vm.Pending["memory"])
	}
	if !strings.Contains(r.log.String(), "changes need a restart") {
		t.Errorf("the pending change is not reported in the log:\n%s", r.log)
	}

	// The next pass writes nothing and reports the pending restart.
	res = r.applyQuiet(t, rec, cfg, "pass after the change")
	if len(res.Plan.PendingReboot) != 1 || res.Plan.PendingReboot[0].VM.VMID != 150 || res.Plan.PendingReboot[0].Keys[0] != "memory" {
		t.Errorf("PendingReboot = %+v, want VM 150: memory", res.Plan.PendingReboot)
	}
}

func TestHandChangeIsDriftAndSetBack(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	cfg := homelab()
	apply(t, rec, cfg)

	// An operator edits lb-1 in the GUI: fewer cores, no onboot, another
	// nameserver (and another VLAN, which ignoreChanges: [network] keeps).
	r.sim.Edit(func(st *pvesim.State) {
		c := st.VMs[151].Conf
		c["cores"] = "1"
		c["onboot"] = "0"
		c["nameserver"] = "198.51.100.53"
		c["net0"] = strings.Replace(c["net0"], "tag=33", "tag=44", 1)
	})
	r.sim.ResetCalls()
	res := apply(t, rec, cfg)
	drift := res.Plan.Drift()
	var keys []string
	for _, d := range drift {
		keys = append(keys, d.Key)
	}
	if strings.Join(keys, ",") != "cores,onboot,nameserver" {
		t.Errorf("drift keys = %v, want cores,onboot,nameserver\nplan:\n%s", keys, res.Plan)
	}
	if !strings.Contains(r.log.String(), "drift") {
		t.Error("drift not logged")
	}
	vm := vmByID(r.sim.Snapshot(), 151)
	eff := effective(vm)
	if eff["cores"] != "2" || eff["onboot"] != "1" || eff["nameserver"] != "192.0.2.1" {
		t.Errorf("after the pass: cores=%s onboot=%s nameserver=%s, want 2, 1, 192.0.2.1", eff["cores"], eff["onboot"], eff["nameserver"])
	}
	if !strings.Contains(eff["net0"], "tag=44") {
		t.Errorf("net0 = %s: an ignored field was set back", eff["net0"])
	}
	// cores waits for a restart of the running VM; the cloud-init drive was regenerated.
	if vm.Pending["cores"] != "2" {
		t.Errorf("cores pending = %q, want 2 (running VM)", vm.Pending["cores"])
	}
	w := writes(r.sim.Calls())
	if len(w) != 2 || w[0] != "POST /nodes/proxmox1/qemu/151/config" || w[1] != "PUT /nodes/proxmox1/qemu/151/cloudinit" {
		t.Errorf("writes = %v, want one config write and a cloud-init regenerate", w)
	}
	if got := testkit.MetricValue(t, r.reg, infraMetricDrift, nil); got != 3 {
		t.Errorf("%s = %v, want 3", infraMetricDrift, got)
	}
	r.applyQuiet(t, rec, cfg, "pass after drift correction")
}

func TestRemoveWithAndWithoutPrune(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	cfg := homelab()
	apply(t, rec, cfg)
	// A foreign VM that is declared nowhere must survive pruning.
	r.sim.Edit(func(st *pvesim.State) {
		st.VMs[300] = &pvesim.VMState{VMID: 300, Node: "proxmox1", Conf: map[string]string{"name": "pbs", "memory": "2048"}}
	})

	only := cfg
	only.VMs = cfg.VMs[:1]
	res := r.applyQuiet(t, rec, only, "without prune, removing lb-1")
	if len(res.Plan.Orphans) != 1 || res.Plan.Orphans[0].VMID != 151 {
		t.Errorf("orphans = %+v, want VM 151", res.Plan.Orphans)
	}
	if vmByID(r.sim.Snapshot(), 151) == nil {
		t.Fatal("VM 151 deleted without prune")
	}

	only.Prune = true
	r.sim.ResetCalls()
	apply(t, rec, only)
	want := []string{"DELETE /cluster/ha/resources/vm:151", "POST /nodes/proxmox1/qemu/151/status/stop", "DELETE /nodes/proxmox1/qemu/151"}
	if w := writes(r.sim.Calls()); strings.Join(w, "\n") != strings.Join(want, "\n") {
		t.Errorf("prune writes:\n%s\nwant:\n%s", strings.Join(w, "\n"), strings.Join(want, "\n"))
	}
	st := r.sim.Snapshot()
	if st.VMs[151] != nil || st.VMs[300] == nil || st.VMs[150] == nil {
		t.Errorf("after prune: 150 %v, 151 %v, 300 %v; want 150 and 300 kept, 151 gone", st.VMs[150] != nil, st.VMs[151] != nil, st.VMs[300] != nil)
	}
	for v := range st.Volumes {
		if strings.Contains(v, "151") {
			t.Errorf("volume %s of the pruned VM is left", v)
		}
	}
}

// TestPruneGuards: prune deletes nothing a person must decide on first.
// A VM with Proxmox's protection set (Terraform's prevent_destroy) is not
// even stopped, and the refusal is terminal; and no VM is deleted in a
// pass whose plan has a terminal problem, such as the conflict or the
// missing bridge that makes a moved VM's replacement impossible.
func TestPruneGuards(t *testing.T) {
	t.Run("protected", func(t *testing.T) {
		r := newRig(t, pvesim.Options{})
		rec := r.reconciler(t)
		cfg := homelab()
		apply(t, rec, cfg)
		r.sim.Edit(func(st *pvesim.State) { st.VMs[151].Conf["protection"] = "1" })
		only := cfg
		only.VMs, only.Prune = cfg.VMs[:1], true
		r.sim.ResetCalls()
		_, err := rec.Apply(context.Background(), only, leader)
		if w := writes(r.sim.Calls()); len(w) != 0 {
			t.Errorf("writes to a protected VM: %v", w)
		}
		if st := r.sim.Snapshot(); st.VMs[151] == nil || !st.VMs[151].Running || st.HA["vm:151"] == nil {
			t.Fatal("the protected VM was stopped, deleted or lost its HA resource")
		}
		if !infra.IsTerminal(err) || !strings.Contains(fmt.Sprint(err), "has protection set in Proxmox") {
			t.Fatalf("error %v, want a terminal one naming the protection", err)
		}
	})
	t.Run("held by a conflict", func(t *testing.T) {
		r := newRig(t, pvesim.Options{})
		rec := r.reconciler(t)
		cfg := homelab()
		apply(t, rec, cfg)
		// lb-1 moves to VMID 161, which a VM gitedge does not own holds.
		r.sim.Edit(func(st *pvesim.State) {
			st.VMs[161] = &pvesim.VMState{VMID: 161, Node: "proxmox1", Conf: map[string]string{"name": "someone-else", "memory": "1024"}}
		})
		cfg.VMs[1].VMID, cfg.Prune = 161, true
		r.sim.ResetCalls()
		_, err := rec.Apply(context.Background(), cfg, leader)
		if st := r.sim.Snapshot(); st.VMs[151] == nil {
			t.Fatalf("VM 151 deleted while its replacement at 161 is a conflict; writes %v", writes(r.sim.Calls()))
		}
		if !infra.IsTerminal(err) || !strings.Contains(fmt.Sprint(err), "prune deletes it once the plan has no other terminal problem") {
			t.Fatalf("error %v, want the conflict and the held prune", err)
		}
	})
	t.Run("held by a missing bridge", func(t *testing.T) {
		r := newRig(t, pvesim.Options{})
		rec := r.reconciler(t)
		cfg := homelab()
		apply(t, rec, cfg)
		// lb-1 moves to VMID 161, on a bridge proxmox1 lacks.
		cfg.VMs[1].VMID, cfg.VMs[1].Network[0].Bridge, cfg.Prune = 161, "vmbr9", true
		r.sim.ResetCalls()
		_, err := rec.Apply(context.Background(), cfg, leader)
		if w := writes(r.sim.Calls()); len(w) != 0 {
			t.Fatalf("writes %v: lb-1 may be neither deleted nor cloned again", w)
		}
		if !infra.HasReason(err, infra.ReasonPruneHeld) || !strings.Contains(fmt.Sprint(err), `(now: VM 161 "lb-1" on proxmox1: clone: no bridge "vmbr9"`) {
			t.Fatalf("error %v, want the missing bridge and the held prune", err)
		}
	})
}

// TestTemplateDiskCheckedBeforeClone: a declared disk the template's
// cannot become (smaller: disks only grow) is refused before the clone,
// not after it with a configured VM left behind.
func TestTemplateDiskCheckedBeforeClone(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	cfg := homelab()
	cfg.VMs = cfg.VMs[:1]
	cfg.VMs[0].HA = nil
	cfg.VMs[0].Disk.Size = 1 << 30 // the template's is 2G
	r.sim.ResetCalls()
	_, err := rec.Apply(context.Background(), cfg, leader)
	if !infra.IsTerminal(err) || !strings.Contains(fmt.Sprint(err), "larger than spec.disk.size 1G") {
		t.Fatalf("error %v, want a terminal one naming the sizes", err)
	}
	if w := writes(r.sim.Calls()); len(w) != 0 || r.sim.Snapshot().VMs[150] != nil {
		t.Fatalf("writes %v: nothing may be cloned", w)
	}
}

func TestForeignVMClashes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		foreign pvesim.VMState
		want    string
	}{
		{"vmid", pvesim.VMState{VMID: 150, Node: "proxmox1", Conf: map[string]string{"name": "pbs", "memory": "8192", "tags": "backup"}},
			`VMID 150 is used by "pbs" on proxmox1, which gitedge does not manage`},
		{"name", pvesim.VMState{VMID: 400, Node: "proxmox1", Conf: map[string]string{"name": "lb-0", "memory": "1024"}},
			`name "lb-0" is used by VM 400 on proxmox1, which gitedge does not manage`},
		{"vmid and name", pvesim.VMState{VMID: 150, Node: "proxmox1", Conf: map[string]string{"name": "lb-0", "memory": "1024"}},
			`VMID 150 is used by "lb-0" on proxmox1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, pvesim.Options{})
			f := tc.foreign
			r.sim.Edit(func(st *pvesim.State) { st.VMs[f.VMID] = &f })
			before := r.sim.Dump()
			rec := r.reconciler(t)
			cfg := homelab()
			cfg.Prune = true
			res, err := rec.Apply(context.Background(), cfg, leader)
			if !infra.IsConflict(err) || !infra.IsTerminal(err) {
				t.Fatalf("err = %v, want a terminal conflict", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
			if len(res.Plan.Conflicts) != 1 || res.Plan.Conflicts[0].VM.Name != "lb-0" {
				t.Errorf("conflicts = %+v", res.Plan.Conflicts)
			}
			for _, w := range writes(r.sim.Calls()) {
				if strings.Contains(w, "/150") || strings.Contains(w, "/400") || strings.Contains(w, "vm:150") {
					t.Errorf("wrote to the foreign VM or its VMID: %s", w)
				}
			}
			st := r.sim.Snapshot()
			if got := st.VMs[f.VMID].Conf["name"]; got != f.Conf["name"] {
				t.Errorf("foreign VM renamed to %q", got)
			}
			if st.VMs[151] == nil || !strings.Contains(st.VMs[151].Conf["tags"], "gitedge") {
				t.Error("lb-1 was not created next to the conflict")
			}
			_ = before
		})
	}
}

func TestLockedVMRetriesThenConverges(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t, func(o *infra.Options) { o.Retries = 2 })
	cfg := homelab()
	apply(t, rec, cfg)

	r.sim.SetFaults(pvesim.Faults{Locked: map[int]string{150: "backup"}})
	cfg.VMs[0].Cores, cfg.VMs[1].Cores = 4, 4
	r.sim.ResetCalls()
	_, err := rec.Apply(context.Background(), cfg, leader)
	if err == nil || !infra.IsTransientErr(err) || !infra.HasReason(err, infra.ReasonLocked) || !strings.Contains(err.Error(), "VM 150") {
		t.Fatalf("err = %v, want a transient Locked error for VM 150", err)
	}
	var tries int
	for _, w := range writes(r.sim.Calls()) {
		if w == "POST /nodes/proxmox1/qemu/150/config" {
			tries++
		}
	}
	if tries != 3 {
		t.Errorf("config writes to the locked VM = %d, want 3 (1 + 2 retries with backoff)\n%v\n%s", tries, r.sim.Calls(), r.log)
	}
	st := r.sim.Snapshot()
	if effective(st.VMs[151])["cores"] != "4" {
		t.Error("the unlocked VM 151 was not changed next to the locked one")
	}
	if effective(st.VMs[150])["cores"] != "2" {
		t.Error("the locked VM 150 was changed")
	}

	r.sim.SetFaults(pvesim.Faults{})
	r.sim.ResetCalls()
	apply(t, rec, cfg)
	if w := writes(r.sim.Calls()); len(w) != 1 || w[0] != "POST /nodes/proxmox1/qemu/150/config" {
		t.Errorf("after unlock, writes = %v, want one config write of VM 150", w)
	}
}

// 500s and calls slower than the client's timeout (done by the server all
// the same) are injected: the passes converge, with one VM per VMID.
func TestInjectedFaultsConverge(t *testing.T) {
	r := newRig(t, pvesim.Options{TaskDuration: 5 * time.Millisecond})
	cfg := r.cfg
	cfg.Timeout = 150 * time.Millisecond
	api, err := infra.NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := r.reconciler(t, func(o *infra.Options) { o.API = api; o.Retries = 2 })
	r.sim.SetFaults(pvesim.Faults{ErrorRate: 0.25, SlowRate: 0.15, SlowDelay: pvesim.Duration(300 * time.Millisecond), Seed: 42})
	want := homelab()
	var lastErr error
	passes := 0
	for ; passes < 40; passes++ {
		res, err := rec.Apply(context.Background(), want, leader)
		lastErr = err
		if err == nil && res.Converged() {
			break
		}
		if err != nil && !infra.IsTransientErr(err) {
			t.Fatalf("pass %d: a terminal error from injected faults: %v", passes, err)
		}
	}
	r.sim.SetFaults(pvesim.Faults{})
	if passes == 40 {
		t.Fatalf("not converged after 40 passes; last error: %v", lastErr)
	}
	t.Logf("converged after %d passes", passes+1)
	r.applyQuiet(t, rec, want, "after convergence, a clean pass")
	st := r.sim.Snapshot()
	names := map[string]int{}
	for _, vm := range st.VMs {
		names[vm.Conf["name"]]++
	}
	if names["lb-0"] != 1 || names["lb-1"] != 1 || len(st.VMs) != 3 {
		t.Errorf("VMs by name: %v (%d VMs), want lb-0 and lb-1 once each next to the template", names, len(st.VMs))
	}
	for _, id := range []int{150, 151} {
		if vm := st.VMs[id]; vm == nil || vm.Conf["tags"] != "gitedge" || vm.Conf["description"] == "" || !vm.Running {
			t.Errorf("VM %d not fully created: %+v", id, vm)
		}
	}
}

// Two nodes that both believe they lead: the explicit VMIDs make the second
// clone fail; one VM per VMID, and both settle without fighting.
func TestTwoReconcilersRacing(t *testing.T) {
	r := newRig(t, pvesim.Options{TaskDuration: 20 * time.Millisecond})
	api2, err := infra.NewAPI(r.cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := r.reconciler(t)
	b, err := infra.New(infra.Options{API: api2, PollInterval: 5 * time.Millisecond, Backoff: 5 * time.Millisecond, TaskTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := homelab()
	for round := range 6 {
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, rec := range []*infra.Reconciler{a, b} {
			wg.Go(func() { _, errs[i] = rec.Apply(context.Background(), cfg, leader) })
		}
		wg.Wait()
		for _, e := range errs {
			if e != nil && !infra.IsTransientErr(e) {
				t.Fatalf("round %d: terminal error while racing: %v", round, e)
			}
		}
	}
	clones := map[string]int{}
	failed := 0
	for _, c := range r.sim.Calls() {
		if c.Method == "POST" && strings.HasSuffix(c.Path, "/clone") {
			if c.Status == 200 {
				clones[c.Path]++
			} else {
				failed++
			}
		}
	}
	if clones["/nodes/proxmox1/qemu/9000/clone"] != 2 {
		t.Errorf("successful clones = %v, want exactly 2 (one per VMID)", clones)
	}
	t.Logf("clones refused to the second writer: %d", failed)
	st := r.sim.Snapshot()
	if len(st.VMs) != 3 {
		t.Errorf("%d VMs, want the template and 2", len(st.VMs))
	}
	for _, rec := range []*infra.Reconciler{a, b} {
		r.applyQuiet(t, rec, cfg, "settled writer")
	}
}

func TestNotLeaderOnlyPlans(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	res, err := rec.Apply(context.Background(), homelab(), notLeader)
	if err != nil {
		t.Fatal(err)
	}
	if res.Leader || len(res.Plan.Actions) != 2 || len(res.Applied) != 0 {
		t.Errorf("leader=%v planned=%d applied=%d, want false, 2, 0", res.Leader, len(res.Plan.Actions), len(res.Applied))
	}
	if w := writes(r.sim.Calls()); len(w) != 0 {
		t.Errorf("a follower wrote %v", w)
	}
	// Leadership lost mid-pass: nothing after the loss is written.
	var calls atomic.Int32
	res, err = rec.Apply(context.Background(), homelab(), func() bool { return calls.Add(1) == 1 })
	if !infra.HasReason(err, infra.ReasonNotLeader) || len(res.Applied) != 0 {
		t.Errorf("err = %v, applied %d; want NotLeader and nothing applied", err, len(res.Applied))
	}
	if w := writes(r.sim.Calls()); len(w) != 0 {
		t.Errorf("after losing leadership before the first action, wrote %v", w)
	}
}

// An untagged VM at the declared VMID and name that still carries the clone
// marker is an interrupted create of ours: it is finished, not a conflict.
// One still locked by its clone task is waited for.
func TestInterruptedCreateIsAdopted(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	cfg := homelab()
	cfg.VMs = cfg.VMs[:1]
	r.sim.Edit(func(st *pvesim.State) {
		st.VMs[150] = &pvesim.VMState{VMID: 150, Node: "proxmox1", Conf: map[string]string{"lock": "clone", "description": " qmclone temporary file"}}
	})
	rec := r.reconciler(t)
	_, err := rec.Apply(context.Background(), cfg, leader)
	if !infra.HasReason(err, infra.ReasonWaiting) || !infra.IsTransientErr(err) || infra.IsTerminal(err) {
		t.Fatalf("err = %v, want transient WaitingForClone", err)
	}
	if w := writes(r.sim.Calls()); len(w) != 0 {
		t.Errorf("wrote to a VM being cloned: %v", w)
	}

	// The clone "finished" but the writer died before its config write.
	r.sim.Edit(func(st *pvesim.State) {
		tm := st.VMs[pvesim.TemplateVMID].Conf
		c := map[string]string{}
		for k, v := range tm {
			c[k] = v
		}
		delete(c, "template")
		c["name"] = "lb-0"
		c["description"] = "gitedge: creating VirtualMachine lb-0 (VMID 150)"
		c["scsi0"] = "vmdata:150/vm-150-disk-0.qcow2,size=2G"
		c["ide2"] = "vmdata:150/vm-150-cloudinit.qcow2,media=cdrom"
		st.Volumes["vmdata:150/vm-150-disk-0.qcow2"] = 2 << 30
		st.Volumes["vmdata:150/vm-150-cloudinit.qcow2"] = 4 << 20
		st.VMs[150] = &pvesim.VMState{VMID: 150, Node: "proxmox1", Conf: c}
	})
	apply(t, rec, cfg)
	vm := r.sim.Snapshot().VMs[150]
	if vm.Conf["tags"] != "gitedge" || vm.Conf["description"] != "HAProxy Loadbalancer 0" || vm.Conf["scsi0"] != "vmdata:150/vm-150-disk-0.qcow2,size=8G" || !vm.Running {
		t.Errorf("adopted VM not finished: %+v running=%v", vm.Conf, vm.Running)
	}
}

func TestWrongTokenIsTerminalAndSecretFree(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	cfg := r.cfg
	cfg.TokenSecret = "wrong-" + tokenSecret
	api, err := infra.NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := r.reconciler(t, func(o *infra.Options) { o.API = api })
	res, err := rec.Apply(context.Background(), homelab(), leader)
	if !infra.IsTerminal(err) || !infra.HasReason(err, infra.ReasonUnauthorized) {
		t.Fatalf("err = %v, want terminal Unauthorized", err)
	}
	for what, s := range map[string]string{"error": err.Error(), "log": r.log.String(), "plan": res.Plan.String(), "result": fmt.Sprintf("%+v", res)} {
		if strings.Contains(s, tokenSecret) {
			t.Errorf("the token secret appears in the %s", what)
		}
	}
}

// The token never appears in logs, errors, plans, results, metrics or a
// printed or marshalled ClientConfig.
func TestSecretNeverAppears(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	r.sim.SetFaults(pvesim.Faults{Locked: map[int]string{9000: "backup"}})
	res, err := rec.Apply(context.Background(), homelab(), leader)
	if err == nil {
		t.Fatal("want an error (template locked)")
	}
	r.sim.SetFaults(pvesim.Faults{})
	res2 := apply(t, rec, homelab())
	var metricsText strings.Builder
	mfs, gerr := r.reg.Gather()
	if gerr != nil {
		t.Fatal(gerr)
	}
	for _, mf := range mfs {
		fmt.Fprintln(&metricsText, mf.String())
	}
	js, _ := json.Marshal(r.cfg)
	var slogBuf strings.Builder
	slog.New(slog.NewJSONHandler(&slogBuf, nil)).Info("config", "proxmox", r.cfg, "secret", r.cfg.TokenSecret)
	for what, s := range map[string]string{
		"error": err.Error(), "log": r.log.String(), "plan": res.Plan.String() + res2.Plan.String(),
		"result": fmt.Sprintf("%+v %+v", res, res2), "metrics": metricsText.String(),
		"%v": fmt.Sprintf("%v", r.cfg), "%+v": fmt.Sprintf("%+v", r.cfg), "%#v": fmt.Sprintf("%#v", r.cfg),
		"%s secret": fmt.Sprintf("%s %q %x", r.cfg.TokenSecret, r.cfg.TokenSecret, r.cfg.TokenSecret),
		"json":      string(js), "slog": slogBuf.String(),
	} {
		if strings.Contains(s, tokenSecret) || strings.Contains(s, fmt.Sprintf("%x", tokenSecret)) {
			t.Errorf("the token secret appears in the %s: %s", what, s)
		}
	}
	if r.cfg.TokenSecret.Reveal() != tokenSecret {
		t.Error("Reveal does not give the secret")
	}
}

func TestMetrics(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	apply(t, rec, homelab())
	apply(t, rec, homelab())
	if got := testkit.MetricValue(t, r.reg, infra.MetricManagedVMs, nil); got != 2 {
		t.Errorf("%s = %v, want 2", infra.MetricManagedVMs, got)
	}
	if got := testkit.MetricValue(t, r.reg, infra.MetricActions, map[string]string{"op": "create", "result": "ok"}); got != 2 {
		t.Errorf("%s{create,ok} = %v, want 2", infra.MetricActions, got)
	}
	if got := testkit.MetricValue(t, r.reg, infra.MetricPasses, map[string]string{"result": "ok"}); got != 2 {
		t.Errorf("%s{ok} = %v, want 2", infra.MetricPasses, got)
	}
}

// A VM without HA is kept running: started after the create, and started
// again after a hand stop. A stale listing (RRD lag) never causes a write.
func TestStartWithoutHAAndStaleListing(t *testing.T) {
	r := newRig(t, pvesim.Options{RRDLag: time.Hour})
	rec := r.reconciler(t)
	cfg := homelab()
	cfg.VMs = cfg.VMs[:1]
	cfg.VMs[0].HA = nil
	apply(t, rec, cfg)
	if !r.sim.Snapshot().VMs[150].Running {
		t.Fatal("VM without HA not started after create")
	}
	r.sim.ResetCalls()
	res := apply(t, rec, cfg) // the listing says "unknown": nothing planned
	if w := writes(r.sim.Calls()); len(w) != 0 || !res.Converged() {
		t.Errorf("with a lagging listing: writes %v\n%s", w, res.Plan)
	}
	// A hand stop the (lagging) listing does not show yet, then one it shows.
	r.sim.Edit(func(st *pvesim.State) {
		vm := st.VMs[150]
		vm.Created = vm.Created.Add(-2 * time.Hour)
		vm.Running, vm.WasRunning, vm.PowerChanged = false, true, time.Now()
	})
	r.applyQuiet(t, rec, cfg, "stale 'running' listing")
	r.sim.Edit(func(st *pvesim.State) { st.VMs[150].PowerChanged = time.Now().Add(-2 * time.Hour) })
	r.sim.ResetCalls()
	apply(t, rec, cfg)
	if w := writes(r.sim.Calls()); len(w) != 1 || w[0] != "POST /nodes/proxmox1/qemu/150/status/start" || !r.sim.Snapshot().VMs[150].Running {
		t.Errorf("hand-stopped VM: writes %v", w)
	}
	// The listing still says stopped (lag); status/current says running: no write.
	r.sim.ResetCalls()
	res = apply(t, rec, cfg)
	if w := writes(r.sim.Calls()); len(w) != 0 || len(res.Applied) != 0 {
		t.Errorf("stale 'stopped' listing: writes %v, applied %v", w, res.Applied)
	}
}

// A spec naming a template, storage or bridge the cluster lacks is a
// terminal error that says what to fix.
func TestBadSpecIsTerminal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mod    func(*infra.VM)
		reason string
		want   string
	}{
		{"template", func(v *infra.VM) { v.Clone = "debian-trixie" }, infra.ReasonTemplate, `no template named "debian-trixie" in the cluster (spec.clone)`},
		{"storage", func(v *infra.VM) { v.Disk.Storage = "fast" }, infra.ReasonInvalid, "500 storage 'fast' does not exist"},
		{"bridge", func(v *infra.VM) { v.HA = nil; v.Network[0].Bridge = "vmbr9" }, infra.ReasonInvalid, `no bridge "vmbr9" on node proxmox1 (spec.network[0].bridge)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, pvesim.Options{})
			cfg := homelab()
			cfg.VMs = cfg.VMs[:1]
			tc.mod(&cfg.VMs[0])
			_, err := r.reconciler(t).Apply(context.Background(), cfg, leader)
			if !infra.IsTerminal(err) || !infra.HasReason(err, tc.reason) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `VM 150 "lb-0"`) {
				t.Errorf("err = %v, want terminal %s saying %q", err, tc.reason, tc.want)
			}
		})
	}
}

// TestApplyLeadsAndLast: Apply writes only while leads says so, and Last
// reports the last pass (what /status shows).
func TestApplyLeadsAndLast(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	ctx := context.Background()
	if _, err := rec.Apply(ctx, homelab(), func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	if w := writes(r.sim.Calls()); len(w) != 0 {
		t.Errorf("a follower wrote %v", w)
	}
	if last, ok := rec.Last(); !ok || last.Leader || len(last.Plan.Actions) != 2 {
		t.Errorf("Last() = %+v, %v", last, ok)
	}
	if _, err := rec.Apply(ctx, homelab(), nil); err != nil {
		t.Fatal(err)
	}
	if w := writes(r.sim.Calls()); len(w) != 0 {
		t.Errorf("leads nil wrote %v", w)
	}
	if _, err := rec.Apply(ctx, homelab(), func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if last, _ := rec.Last(); !last.Leader || len(last.Applied) != 2 {
		t.Errorf("Last() after the leader's pass = %+v", last)
	}
}
