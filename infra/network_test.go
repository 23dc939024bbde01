package infra_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
)

// spec.network is the VM's whole set of NICs when declared: a NIC dropped
// from it is removed (live on a running VM, or pending until its next
// start when its hotplug leaves out network), through the real client and
// the simulator; an empty list and ignoreChanges: [network] leave the
// NICs alone. The pass after converges without a write.
func TestNICRemoval(t *testing.T) {
	nic0 := infra.NIC{Model: "virtio", Bridge: "vmbr0", VLAN: 33}
	nic1 := infra.NIC{Model: "e1000", Bridge: "vmbr0", VLAN: 44}
	for _, tc := range []struct {
		name    string
		before  []infra.NIC // the spec the VM is created from
		edit    func(c map[string]string)
		after   []infra.NIC // the spec of the pass under test
		ignore  bool        // ignoreChanges: [network] in after
		removed []string    // the keys the plan removes
		nics    []string    // the VM's NICs after the pass
		pending bool        // the removal waits for a restart
	}{
		{name: "remove net1 of two", before: []infra.NIC{nic0, nic1}, after: []infra.NIC{nic0},
			removed: []string{"net1"}, nics: []string{"net0"}},
		{name: "remove net1 and net2 of three", before: []infra.NIC{nic0, nic1, nic1}, after: []infra.NIC{nic0},
			removed: []string{"net1", "net2"}, nics: []string{"net0"}},
		{name: "NIC added by hand past the list", before: []infra.NIC{nic0}, after: []infra.NIC{nic0},
			edit:    func(c map[string]string) { c["net3"] = "virtio=BC:24:11:00:00:03,bridge=vmbr0" },
			removed: []string{"net3"}, nics: []string{"net0"}},
		{name: "running VM without network hotplug", before: []infra.NIC{nic0, nic1}, after: []infra.NIC{nic0},
			edit:    func(c map[string]string) { c["hotplug"] = "disk,usb" },
			removed: []string{"net1"}, nics: []string{"net0"}, pending: true},
		{name: "only NIC dropped: not managed, kept", before: []infra.NIC{nic0}, after: nil,
			nics: []string{"net0"}},
		{name: "ignoreChanges network keeps the NIC", before: []infra.NIC{nic0, nic1}, after: []infra.NIC{nic0}, ignore: true,
			nics: []string{"net0", "net1"}},
		{name: "spec unchanged", before: []infra.NIC{nic0, nic1}, after: []infra.NIC{nic0, nic1},
			nics: []string{"net0", "net1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, pvesim.Options{})
			rec := r.reconciler(t)
			spec := func(nics []infra.NIC, ignore bool) infra.Config {
				cfg := homelab()
				cfg.VMs = cfg.VMs[:1]
				v := &cfg.VMs[0]
				v.HA, v.Network, v.IgnoreChanges = nil, nics, nil
				if ignore {
					v.IgnoreChanges = []string{"network"}
				}
				return cfg
			}
			apply(t, rec, spec(tc.before, false))
			if tc.edit != nil {
				r.sim.Edit(func(st *pvesim.State) { tc.edit(st.VMs[150].Conf) })
			}
			old := effective(vmByID(r.sim.Snapshot(), 150))
			if !vmByID(r.sim.Snapshot(), 150).Running {
				t.Fatal("VM 150 is not running after its create")
			}

			cfg := spec(tc.after, tc.ignore)
			r.sim.ResetCalls()
			res := apply(t, rec, cfg)
			var want strings.Builder
			for _, k := range tc.removed {
				fmt.Fprintf(&want, "~ update VM 150 %q %s: %s -> (none)\n", "lb-0", k, old[k])
			}
			if want.Len() == 0 {
				want.WriteString("No changes.\n")
			}
			if got := res.Plan.String(); got != want.String() {
				t.Errorf("plan:\n%s\nwant:\n%s", got, want.String())
			}
			w := writes(r.sim.Calls())
			if len(tc.removed) > 0 && (len(w) != 1 || w[0] != "POST /nodes/proxmox1/qemu/150/config") {
				t.Errorf("writes = %v, want one POST config of VM 150", w)
			}
			if len(tc.removed) == 0 && len(w) != 0 {
				t.Errorf("writes = %v, want none", w)
			}

			vm := vmByID(r.sim.Snapshot(), 150)
			if got := nicKeys(effective(vm)); !slices.Equal(got, tc.nics) {
				t.Errorf("NICs after the pass = %v, want %v", got, tc.nics)
			}
			if got := effective(vm)["net0"]; got != old["net0"] {
				t.Errorf("net0 = %q, want it untouched: %q", got, old["net0"])
			}
			if tc.pending {
				// Still plugged in, removed at the next start.
				active := nicKeys(vm.Conf)
				if !slices.Equal(vm.PendingDelete, tc.removed) || !slices.Equal(active, slices.Sorted(slices.Values(append(tc.nics, tc.removed...)))) {
					t.Errorf("pending delete = %v, active NICs %v: want %v removed at the next start", vm.PendingDelete, active, tc.removed)
				}
			} else if len(vm.PendingDelete) != 0 {
				t.Errorf("pending delete = %v, want the removal applied live", vm.PendingDelete)
			}

			res = r.applyQuiet(t, rec, cfg, "pass after the removal")
			want.Reset()
			if tc.pending {
				fmt.Fprintf(&want, "* pending until restart VM 150 %q: %s\n", "lb-0", strings.Join(tc.removed, ", "))
			} else {
				want.WriteString("No changes.\n")
			}
			if got := res.Plan.String(); got != want.String() {
				t.Errorf("plan after the removal:\n%s\nwant:\n%s", got, want.String())
			}
		})
	}
}

// nicKeys lists the netN keys of a config, in order.
func nicKeys(c map[string]string) []string {
	var ks []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		if strings.HasPrefix(k, "net") {
			ks = append(ks, k)
		}
	}
	return ks
}

// A template NIC past spec.network is removed when the VM is configured
// after its clone, so the create converges in one pass.
func TestCreateDropsTemplateNICsPastSpec(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	r.sim.Edit(func(st *pvesim.State) {
		st.VMs[pvesim.TemplateVMID].Conf["net1"] = "virtio=BC:24:11:5E:0A:02,bridge=vmbr0,tag=44"
	})
	cfg := homelab()
	cfg.VMs = cfg.VMs[:1]
	cfg.VMs[0].HA, cfg.VMs[0].IgnoreChanges = nil, nil
	apply(t, rec, cfg)
	if got := nicKeys(effective(vmByID(r.sim.Snapshot(), 150))); !slices.Equal(got, []string{"net0"}) {
		t.Errorf("NICs after the create = %v, want [net0]", got)
	}
	if res := r.applyQuiet(t, rec, cfg, "pass after the create"); !res.Plan.Empty() {
		t.Errorf("plan after the create:\n%s", res.Plan)
	}
}

// A NIC on a bridge its node lacks, or has not brought up, is refused in
// the plan, through the real client and the simulator: nothing is cloned
// or written (Proxmox took such a NIC and refused it only at the start,
// after the clone), and the terminal error names the VM, its node and the
// spec field. NICs on the node's bridges are unaffected. The bridges are
// read once per pass, and not at all by a pass that sets no NIC.
func TestBridgesCheckedBeforeWrite(t *testing.T) {
	spec := func(bridges []string) infra.Config {
		cfg := homelab()
		cfg.VMs = cfg.VMs[:1]
		v := &cfg.VMs[0]
		v.HA, v.IgnoreChanges, v.Network = nil, nil, nil
		for i, b := range bridges {
			v.Network = append(v.Network, infra.NIC{Model: "virtio", Bridge: b, VLAN: 33 + i})
		}
		return cfg
	}
	for _, tc := range []struct {
		name   string
		before []string // the bridges of VM 150's NICs before the pass; nil: no VM
		after  []string // the bridges the pass declares
		err    string   // the refusal; "" = none
	}{
		{name: "create on a missing bridge", after: []string{"vmbr9"},
			err: `VM 150 "lb-0" on proxmox1: clone: no bridge "vmbr9" on node proxmox1 (spec.network[0].bridge): create it on the node or fix the spec; the VM is not created`},
		{name: "create with net1 on a missing bridge", after: []string{"vmbr0", "vmbr9"},
			err: `clone: no bridge "vmbr9" on node proxmox1 (spec.network[1].bridge)`},
		{name: "create on a bridge not up", after: []string{"vmbr2"},
			err: `clone: bridge "vmbr2" on node proxmox1 is not active (spec.network[0].bridge): apply the node's network configuration or fix the spec`},
		{name: "create on the node's bridges", after: []string{"vmbr0", "vmbr1"}},
		{name: "existing VM moved to a missing bridge", before: []string{"vmbr0"}, after: []string{"vmbr9"},
			err: `VM 150 "lb-0" on proxmox1: config: no bridge "vmbr9" on node proxmox1 (spec.network[0].bridge): create it on the node or fix the spec; its config is not changed`},
		{name: "existing VM given a NIC on a missing bridge", before: []string{"vmbr0"}, after: []string{"vmbr0", "vmbr9"},
			err: `config: no bridge "vmbr9" on node proxmox1 (spec.network[1].bridge)`},
		{name: "existing VM moved to another bridge", before: []string{"vmbr0"}, after: []string{"vmbr1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, pvesim.Options{})
			r.sim.Edit(func(st *pvesim.State) {
				st.Nodes[0].Bridges, st.Nodes[0].DownBridges = []string{"vmbr0", "vmbr1"}, []string{"vmbr2"}
			})
			rec := r.reconciler(t)
			if tc.before != nil {
				apply(t, rec, spec(tc.before))
			}
			old := vmByID(r.sim.Snapshot(), 150)
			cfg := spec(tc.after)
			r.sim.ResetCalls()
			res, err := rec.Apply(context.Background(), cfg, leader)
			if n := bridgeReads(r.sim.Calls()); n != 1 {
				t.Errorf("the node's bridges were read %d times, want once", n)
			}
			if tc.err == "" {
				if err != nil {
					t.Fatalf("apply: %v\nplan:\n%s", err, res.Plan)
				}
				if got := nicBridges(effective(vmByID(r.sim.Snapshot(), 150))); !slices.Equal(got, tc.after) {
					t.Errorf("NIC bridges after the pass = %v, want %v", got, tc.after)
				}
				r.applyQuiet(t, rec, cfg, "pass after")
				if n := bridgeReads(r.sim.Calls()); n != 0 {
					t.Errorf("a pass that sets no NIC read the bridges %d times", n)
				}
				return
			}
			if !infra.IsTerminal(err) || !infra.HasReason(err, infra.ReasonInvalid) || !strings.Contains(fmt.Sprint(err), tc.err) {
				t.Fatalf("err = %v\nwant a terminal %s saying %q", err, infra.ReasonInvalid, tc.err)
			}
			if !strings.Contains(res.Plan.String(), tc.err) || !res.Plan.Empty() {
				t.Errorf("plan:\n%s\nwant no action and the refusal", res.Plan)
			}
			if w := writes(r.sim.Calls()); len(w) != 0 {
				t.Errorf("writes %v: nothing may be cloned or written", w)
			}
			now := vmByID(r.sim.Snapshot(), 150)
			switch {
			case old == nil && now != nil:
				t.Errorf("VM 150 was created:\n%s", r.sim.Dump())
			case old != nil && !maps.Equal(effective(old), effective(now)):
				t.Errorf("VM 150's config changed from\n%v\nto\n%v", effective(old), effective(now))
			}
		})
	}
}

// bridgeReads counts the reads of proxmox1's network configuration.
func bridgeReads(calls []pvesim.Call) int {
	n := 0
	for _, c := range calls {
		if c.Method == "GET" && c.Path == "/nodes/proxmox1/network" {
			n++
		}
	}
	return n
}

// nicBridges lists the bridges of a config's NICs, net0 first.
func nicBridges(c map[string]string) []string {
	var bs []string
	for _, k := range nicKeys(c) {
		for p := range strings.SplitSeq(c[k], ",") {
			if b, ok := strings.CutPrefix(p, "bridge="); ok {
				bs = append(bs, b)
			}
		}
	}
	return bs
}
