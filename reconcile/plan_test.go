package reconcile

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

func mustLoad(t *testing.T, dir string) *Desired {
	t.Helper()
	d, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return d
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	testkit.Golden(t, filepath.Join("testdata", "plan", name+".txt"), got)
}

func TestPlanText(t *testing.T) {
	homelab := "../examples/homelab"
	tests := []struct {
		name  string
		edits map[string][][2]string // applied to a copy of homelab to make the head
		base  string                 // "" = homelab; "-" = nothing
	}{
		{
			// The foundation issue's acceptance case: one route, one server
			// weight, one VM's memory.
			name: "three-changes",
			edits: map[string][][2]string{
				"routes/blog.yaml": {{"hosts: [blog.domain.tld]", "hosts: [blog.domain.tld, www.blog.domain.tld]"}},
				"backends.yaml":    {{`address: "192.0.2.240:80", weight: 10`, `address: "192.0.2.240:80", weight: 20`}},
				"vms.yaml":         {{"memory: 4096\n  onBoot: true\n  agent: true\n  disk: {bus: scsi, storage: vmdata, size: 8G, format: qcow2}\n  network: [{model: virtio, bridge: vmbr0, vlan: 33}]\n  cloudInit:\n    user: ansible\n    ipConfig: {ip: 192.0.2.251/24", "memory: 8192\n  onBoot: true\n  agent: true\n  disk: {bus: scsi, storage: vmdata, size: 8G, format: qcow2}\n  network: [{model: virtio, bridge: vmbr0, vlan: 33}]\n  cloudInit:\n    user: ansible\n    ipConfig: {ip: 192.0.2.251/24"}},
			},
		},
		{name: "no-changes"},
		{
			name: "add-and-remove",
			edits: map[string][][2]string{
				"routes/staging.yaml": {{"name: staging", "name: staging2"}},
				"edge.yaml": {
					{"version: 2", "version: 3"},
					{"      auth: {type: pass, password: \"9999\"}\n", ""},
					{"advertInterval: 1s", "advertInterval: 100ms"},
					{"    prune: false", "    prune: true"},
				},
				"backends.yaml": {{`    - {name: trfk-ingress, address: "192.0.2.240:443", weight: 10, maxConn: 1000}`,
					`    - {name: trfk-ingress, address: "192.0.2.240:443", weight: 10, maxConn: 1000}` + "\n" +
						`    - {name: trfk-ingress-2, address: "192.0.2.241:443", weight: 5}`}},
			},
		},
		{name: "from-nothing", base: "-"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := mustLoad(t, testkit.CopyTree(t, homelab, t.TempDir(), tt.edits))
			var base *Desired
			if tt.base != "-" {
				base = mustLoad(t, homelab)
			}
			var b strings.Builder
			if err := Diff(base, head).WriteText(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, b.String())
		})
	}
}

func TestPlanCountsAndJSON(t *testing.T) {
	base := mustLoad(t, "../examples/homelab")
	head := mustLoad(t, testkit.CopyTree(t, "../examples/homelab", t.TempDir(), map[string][][2]string{
		"routes/blog.yaml": {{"k3s-http-ingress", "k8s-http-ingress"}},
	}))
	p := Diff(base, head)
	if a, c, r := p.Counts(); a != 0 || c != 1 || r != 0 {
		t.Fatalf("counts = %d/%d/%d, want 0/1/0", a, c, r)
	}
	if len(p.Changes) != 1 || p.Changes[0].Kind != "Route" {
		t.Errorf("changes %+v, want one Route", p.Changes)
	}
	data, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"changes":[{"kind":"Route","name":"blog","action":"change","fields":[{"path":"http.backend","old":"k3s-http-ingress","new":"k8s-http-ingress"}]}]}`
	if string(data) != want {
		t.Errorf("json:\n got %s\nwant %s", data, want)
	}
	if !Diff(base, base).Empty() {
		t.Errorf("a state compared with itself must plan nothing")
	}
}

func TestPlanNeverShowsVRRPPassword(t *testing.T) {
	head := mustLoad(t, "../examples/homelab")
	var b strings.Builder
	_ = Diff(nil, head).WriteText(&b)
	if strings.Contains(b.String(), "9999") {
		t.Errorf("plan shows the VRRP password:\n%s", b.String())
	}
}
