package reconcile

import (
	"encoding/json"
	"errors"
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
