package reconcile

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestReviewGolden renders pull-request reviews of edits to the homelab
// example as Markdown and JSON, compared with testdata/review. The
// "pull-request" case carries every consequence a reviewer cannot see in
// the YAML: a priority change moving the VIP, a host falling to the
// listeners' defaultBackend, a backend left without a server, VM changes
// applied live or at the next start, a disk grown online.
func TestReviewGolden(t *testing.T) {
	homelab := "../examples/homelab"
	tests := []struct {
		name  string
		edits map[string][][2]string
	}{
		{name: "pull-request", edits: map[string][][2]string{
			"edge.yaml":           {{"priority: {lb-0: 100, lb-1: 101}", "priority: {lb-0: 102, lb-1: 101}"}},
			"routes/staging.yaml": {{"hosts: [test.domain.tld]", "hosts: [test2.domain.tld]"}},
			"backends.yaml":       {{`address: "192.0.2.240:80", weight: 10`, `address: "192.0.2.240:80", weight: 0`}},
			"vms.yaml": {
				{"memory: 4096\n  onBoot: true\n  agent: true\n  disk: {bus: scsi, storage: vmdata, size: 8G, format: qcow2}\n  network: [{model: virtio, bridge: vmbr0, vlan: 33}]\n  cloudInit:\n    user: ansible\n    ipConfig: {ip: 192.0.2.251/24",
					"memory: 2048\n  onBoot: false\n  agent: true\n  disk: {bus: scsi, storage: vmdata, size: 8G, format: qcow2}\n  network: [{model: virtio, bridge: vmbr0, vlan: 33}]\n  cloudInit:\n    user: ansible\n    ipConfig: {ip: 192.0.2.251/24"},
				{"size: 8G, format: qcow2}\n  network: [{model: virtio, bridge: vmbr0, vlan: 33}]\n  cloudInit:\n    user: ansible\n    ipConfig: {ip: 192.0.2.250/24",
					"size: 16G, format: qcow2}\n  network: [{model: virtio, bridge: vmbr0, vlan: 33}]\n  cloudInit:\n    user: ansible\n    ipConfig: {ip: 192.0.2.250/24"},
			},
		}},
		{name: "listeners-and-infra", edits: map[string][][2]string{
			"edge.yaml": {{"bind: \":80\"", "bind: \":8080\""}, {"bind: \":443\"\n      mode: tls", "bind: \":443\"\n      mode: http"},
				{"leader: vrrp:VI_1", "leader: lb-1"}, {"prune: false", "prune: true"}},
		}},
		{name: "no-changes"},
		{name: "invalid", edits: map[string][][2]string{
			"routes/blog.yaml": {{"http: {backend: k3s-http-ingress}", "http: {backend: nope}"}},
			"backends.yaml":    {{`address: "192.0.2.240:80", weight: 10`, `address: "192.0.2.240:80", weight: ten`}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := mustLoad(t, homelab)
			head, err := LoadDir(testkit.CopyTree(t, homelab, t.TempDir(), tt.edits))
			var r Review
			if errs, ok := errors.AsType[Errors](err); ok {
				r = Review{Errors: []string{}, Changes: []ItemChange{}, Consequences: []Consequence{}}
				for _, e := range errs {
					r.Errors = append(r.Errors, e.Error())
				}
			} else if err != nil {
				t.Fatal(err)
			} else {
				r = NewReview(base, head)
			}
			r.Base = Ref{Name: "main", Commit: "4e3fe90c0ffee4e3fe90c0ffee4e3fe90c0ffee0"}
			r.Head = Ref{Name: "edge/"}
			var md strings.Builder
			if err := r.WriteMarkdown(&md); err != nil {
				t.Fatal(err)
			}
			testkit.Golden(t, filepath.Join("testdata", "review", tt.name+".md"), md.String())
			js, err := json.MarshalIndent(r, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			testkit.Golden(t, filepath.Join("testdata", "review", tt.name+".json"), string(js)+"\n")
		})
	}
}

// TestPlanJSONTyped: lists stay lists, numbers numbers and booleans
// booleans in JSON, on both sides of a change and for an added item.
func TestPlanJSONTyped(t *testing.T) {
	base := mustLoad(t, "../examples/homelab")
	head := mustLoad(t, testkit.CopyTree(t, "../examples/homelab", t.TempDir(), map[string][][2]string{
		"routes/blog.yaml": {{"hosts: [blog.domain.tld]", "hosts: [blog.domain.tld, \"*.blog.domain.tld\"]"}},
		"edge.yaml":        {{"priority: {lb-0: 100, lb-1: 101}", "priority: {lb-0: 102, lb-1: 101}"}, {"preempt: true", "preempt: false"}},
	}))
	data, err := json.Marshal(Diff(base, head))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`{"path":"hosts","old":["blog.domain.tld"],"new":["blog.domain.tld","*.blog.domain.tld"]}`,
		`{"path":"priority.lb-0","old":100,"new":102}`,
		`{"path":"preempt","old":true,"new":false}`,
	} {
		if !strings.Contains(string(data), want) {
			t.Errorf("plan JSON lacks %s:\n%s", want, data)
		}
	}
	data, _ = json.Marshal(Diff(nil, base))
	for _, want := range []string{`{"path":"vips","new":["192.0.2.254/32"]}`, `{"path":"vmid","new":150}`, `{"path":"onBoot","new":true}`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("plan JSON from nothing lacks %s", want)
		}
	}
}

// TestHostConsequencesOnlyWhenTheBackendChanges: a host that loses its
// route is a consequence only when the wildcard or defaultBackend it falls
// to is another backend; "goes to backend X instead of X" was noise.
func TestHostConsequencesOnlyWhenTheBackendChanges(t *testing.T) {
	homelab := "../examples/homelab"
	wild := map[string][][2]string{"routes/blog.yaml": {{"hosts: [blog.domain.tld]", `hosts: [blog.domain.tld, "*.domain.tld"]`}}}
	moved := func(base map[string][][2]string) map[string][][2]string {
		e := map[string][][2]string{
			"routes/staging.yaml": {{"hosts: [test.domain.tld]", "hosts: [test2.domain.tld]"}},
			"routes/whoami.yaml":  {{"hosts: [whoami.domain.tld]", "hosts: [whoami2.domain.tld]"}},
		}
		for k, v := range base {
			e[k] = v
		}
		return e
	}
	tests := []struct {
		name string
		base map[string][][2]string
		want []string
	}{
		// test.domain.tld falls to *.domain.tld, the same backends in both
		// modes: nothing to say. whoami's HTTP backend does change.
		{"wildcard", wild, []string{
			`Route "whoami": http host whoami.domain.tld now matches *.domain.tld (Route "blog") and goes to backend k3s-http-ingress instead of k8s-http-ingress`,
		}},
		// Without a wildcard both fall to the listeners' defaultBackend:
		// whoami's HTTP default is its own backend already.
		{"defaultBackend", nil, []string{
			`Route "staging": http host test.domain.tld now falls to defaultBackend k8s-http-ingress (listener http) instead of backend k3s-http-ingress`,
			`Route "whoami": tls host whoami.domain.tld now falls to defaultBackend k8s-https-ingress (listener https) instead of backend k3s-https-ingress`,
			`Route "staging": tls host test.domain.tld now falls to defaultBackend k8s-https-ingress (listener https) instead of backend k3s-https-ingress`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := mustLoad(t, testkit.CopyTree(t, homelab, t.TempDir(), tt.base))
			head := mustLoad(t, testkit.CopyTree(t, homelab, t.TempDir(), moved(tt.base)))
			var got []string
			for _, c := range hostConsequences(base, head) {
				got = append(got, c.About+": "+c.Message)
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(tt.want))
			if !slices.Equal(got, want) {
				t.Errorf("consequences:\n %s\nwant\n %s", strings.Join(got, "\n "), strings.Join(want, "\n "))
			}
		})
	}
}

// TestVMConsequencesFollowTheVMID: a VM is its VMID in Proxmox, so a new
// name on the same VMID is a rename applied in place, never a delete and
// a clone; a new VMID under the same name is a new VM, and the old one
// leaves. A delete says that Proxmox protection keeps a VM, and is held
// while the same plan has a change infra refuses (PruneHeld).
func TestVMConsequencesFollowTheVMID(t *testing.T) {
	homelab := "../examples/homelab"
	data, err := os.ReadFile(filepath.Join(homelab, "vms.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, lb1, _ := strings.Cut(string(data), "\n---\n")
	prune := [2]string{"prune: false", "prune: true"}
	dropLB1 := [2]string{"---\n" + lb1, ""}
	shrinkLB0 := [2]string{"size: 8G, format: qcow2}\n  network: [{model: virtio, bridge: vmbr0, vlan: 33}]\n  cloudInit:\n    user: ansible\n    ipConfig: {ip: 192.0.2.250/24",
		"size: 4G, format: qcow2}\n  network: [{model: virtio, bridge: vmbr0, vlan: 33}]\n  cloudInit:\n    user: ansible\n    ipConfig: {ip: 192.0.2.250/24"}
	pruneOn := map[string][][2]string{"edge.yaml": {prune}}
	const (
		deleted = "is deleted (infra.prune is on) unless Proxmox protection is set on it: a protected VM is left alone (Protected)"
		held    = "is not deleted yet: infra.prune holds every delete while the disk shrink of VM lb-0 is refused (PruneHeld); once that is fixed it is deleted unless Proxmox protection is set on it"
		shrunk  = `VirtualMachine "lb-0": VM lb-0: disk 8G → 4G is refused: disks only grow, so this VM's apply will fail`
	)
	tests := []struct {
		name       string
		base, head map[string][][2]string
		want       []string
	}{
		{"rename", pruneOn, map[string][][2]string{"edge.yaml": {prune}, "vms.yaml": {{"name: lb-0", "name: lb-a"}}}, []string{
			`VirtualMachine "lb-a": VM 150: renamed lb-0 → lb-a (config name updated live): the same VM, neither deleted nor cloned, though the changes list lb-0 as removed and lb-a as added`,
		}},
		// The names trade places: two renames, nothing cloned nor deleted.
		{"names-swapped", pruneOn, map[string][][2]string{"edge.yaml": {prune}, "vms.yaml": {{"name: lb-0", "name: lb-swap"}, {"name: lb-1", "name: lb-0"}, {"name: lb-swap", "name: lb-1"}}}, []string{
			`VirtualMachine "lb-1": VM 150: renamed lb-0 → lb-1 (config name updated live): the same VM, neither deleted nor cloned`,
			`VirtualMachine "lb-0": VM 151: renamed lb-1 → lb-0 (config name updated live): the same VM, neither deleted nor cloned`,
		}},
		{"vmid-changed", pruneOn, map[string][][2]string{"edge.yaml": {prune}, "vms.yaml": {{"vmid: 151", "vmid: 152"}}}, []string{
			`VirtualMachine "lb-1": VM lb-1: VMID 151 → 152: a new VM is cloned at 152, and the VM at 151 ` + deleted,
		}},
		// lb-0's old VMID now holds lb-1: a new VM for lb-0, a rename of
		// VM 150, and VM 151 leaves.
		{"vmid-changed-old-one-renamed", pruneOn, map[string][][2]string{"edge.yaml": {prune}, "vms.yaml": {{"vmid: 150", "vmid: 152"}, {"vmid: 151", "vmid: 150"}}}, []string{
			`VirtualMachine "lb-0": VM lb-0: VMID 150 → 152: a new VM is cloned at 152; VM 150 stays, renamed lb-1`,
			`VirtualMachine "lb-1": VM 150: renamed lb-0 → lb-1 (config name updated live): the same VM, neither deleted nor cloned`,
			`VirtualMachine "lb-1": VM lb-1: description HAProxy Loadbalancer 0 → HAProxy Loadbalancer 1 (applied live)`,
			`VirtualMachine "lb-1": VM lb-1: ipconfig0 ip=192.0.2.250/24,gw=192.0.2.1 → ip=192.0.2.251/24,gw=192.0.2.1 (applied live)`,
			`VirtualMachine "lb-1": VM lb-1 (VMID 151) ` + deleted,
		}},
		{"deleted", pruneOn, map[string][][2]string{"edge.yaml": {prune}, "vms.yaml": {dropLB1}}, []string{
			`VirtualMachine "lb-1": VM lb-1 (VMID 151) ` + deleted,
		}},
		{"delete-held-by-a-shrink", pruneOn, map[string][][2]string{"edge.yaml": {prune}, "vms.yaml": {dropLB1, shrinkLB0}}, []string{
			shrunk,
			`VirtualMachine "lb-1": VM lb-1 (VMID 151) ` + held,
		}},
		{"vmid-change-held-by-a-shrink", pruneOn, map[string][][2]string{"edge.yaml": {prune}, "vms.yaml": {{"vmid: 151", "vmid: 152"}, shrinkLB0}}, []string{
			shrunk,
			`VirtualMachine "lb-1": VM lb-1: VMID 151 → 152: a new VM is cloned at 152, and the VM at 151 ` + held,
		}},
		{"prune-turned-on-held-by-a-shrink", nil, map[string][][2]string{"edge.yaml": {prune}, "vms.yaml": {shrinkLB0}}, []string{
			shrunk,
			`Edge "home": infra.prune turns on: every VM tagged gitedge that the repository no longer declares is deleted by the infra leader, including VMs kept until now, except a VM with Proxmox protection set (left alone, Protected); nothing is deleted while the disk shrink of VM lb-0 is refused (PruneHeld)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := mustLoad(t, testkit.CopyTree(t, homelab, t.TempDir(), tt.base))
			head := mustLoad(t, testkit.CopyTree(t, homelab, t.TempDir(), tt.head))
			var got []string
			for _, c := range Consequences(base, head) {
				got = append(got, c.About+": "+c.Message)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("consequences:\n %s\nwant\n %s", strings.Join(got, "\n "), strings.Join(tt.want, "\n "))
			}
		})
	}
}
