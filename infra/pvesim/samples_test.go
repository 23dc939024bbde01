package pvesim_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	proxmox "github.com/luthermonson/go-proxmox"

	"github.com/gitedge/gitedge/infra/pvesim"
)

// jsonType names the JSON type of a decoded value.
func jsonType(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	case []any:
		return "array"
	}
	return "object"
}

// shapes collects, per dotted path, the JSON types seen (array elements
// share the path "[]").
func shapes(v any, path string, out map[string]map[string]bool) {
	if out[path] == nil {
		out[path] = map[string]bool{}
	}
	out[path][jsonType(v)] = true
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			shapes(x, path+"."+k, out)
		}
	case []any:
		for _, x := range v {
			shapes(x, path+"[]", out)
		}
	}
}

// Every field the simulator sends that a real PVE 8 sample also has must
// carry the sample's JSON type: go-proxmox decodes into typed structs and
// fails or panics on the wrong one (API.md 1.4).
func TestResponsesMatchSampleTypes(t *testing.T) {
	sim, srv := start(t, pvesim.Options{})
	c := client(srv)
	ctx := context.Background()
	// Make a running, HA-managed, tagged VM 150 with a pending change.
	vm := clone150(t, c, proxmox.VirtualMachineCloneOptions{Name: "lb-1"})
	task, _ := vm.Config(ctx, proxmox.VirtualMachineOption{Name: "tags", Value: "gitedge;lb"}, proxmox.VirtualMachineOption{Name: "ipconfig0", Value: "ip=192.0.2.11/24,gw=192.0.2.1"},
		proxmox.VirtualMachineOption{Name: "numa", Value: 0}, proxmox.VirtualMachineOption{Name: "onboot", Value: 1}, proxmox.VirtualMachineOption{Name: "ciuser", Value: "ansible"})
	task.Ping(ctx)
	st := "started"
	if err := (&proxmox.Cluster{}).New(c).NewHAResource(ctx, &proxmox.HAResourceCreateOption{SID: "vm:150", Group: "main", State: &st}); err != nil {
		t.Fatal(err)
	}
	task, _ = vm.Config(ctx, proxmox.VirtualMachineOption{Name: "cores", Value: 4}, proxmox.VirtualMachineOption{Name: "memory", Value: 8192}, proxmox.VirtualMachineOption{Name: "nameserver", Value: "192.0.2.2"})
	upid := string(task.UPID)
	sim.ResetCalls()

	for _, tc := range []struct{ sample, path string }{
		{"version.json", "/version"},
		{"nodes.json", "/nodes"},
		{"node-status.json", "/nodes/proxmox1/status"},
		{"cluster-status-single-node.json", "/cluster/status"},
		{"cluster-nextid.json", "/cluster/nextid"},
		{"cluster-resources-vm.json", "/cluster/resources?type=vm"},
		{"node-storage.json", "/nodes/proxmox1/storage"},
		{"qemu-list.json", "/nodes/proxmox1/qemu"},
		{"qemu-100-config-template.json", "/nodes/proxmox1/qemu/9000/config"},
		{"qemu-101-config.json", "/nodes/proxmox1/qemu/150/config"},
		{"qemu-101-status-current-running.json", "/nodes/proxmox1/qemu/150/status/current"},
		{"qemu-102-status-current-stopped.json", "/nodes/proxmox1/qemu/9000/status/current"},
		{"qemu-101-pending.json", "/nodes/proxmox1/qemu/150/pending"},
		{"qemu-101-cloudinit.json", "/nodes/proxmox1/qemu/150/cloudinit"},
		{"qemu-101-agent-network-get-interfaces.json", "/nodes/proxmox1/qemu/150/agent/network-get-interfaces"},
		{"ha-resources.json", "/cluster/ha/resources"},
		{"ha-resource-vm-101.json", "/cluster/ha/resources/vm:150"},
		{"ha-groups.json", "/cluster/ha/groups"},
		{"task-status-ok.json", "/nodes/proxmox1/tasks/" + upid + "/status"},
		{"task-log.json", "/nodes/proxmox1/tasks/" + upid + "/log?start=0&limit=50"},
	} {
		t.Run(tc.sample, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", "samples", tc.sample))
			if err != nil {
				t.Fatal(err)
			}
			var want any
			if err := json.Unmarshal(data, &want); err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("GET", srv.URL+"/api2/json"+tc.path, nil)
			req.Header.Set("Authorization", "PVEAPIToken="+tokenID+"="+secret)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			var got any
			if err := json.NewDecoder(res.Body).Decode(&got); err != nil || res.StatusCode != 200 {
				t.Fatalf("%s: %s %v", tc.path, res.Status, err)
			}
			ws, gs := map[string]map[string]bool{}, map[string]map[string]bool{}
			shapes(want, "", ws)
			shapes(got, "", gs)
			var bad []string
			for p, types := range gs {
				wt, ok := ws[p]
				if !ok {
					continue
				}
				for typ := range types {
					if !wt[typ] && !(typ == "null" && p == ".data.clipboard") {
						bad = append(bad, fmt.Sprintf("%s: %s, sample has %v", p, typ, keys(wt)))
					}
				}
			}
			sort.Strings(bad)
			if len(bad) > 0 {
				t.Errorf("%s:\n%s", tc.path, strings.Join(bad, "\n"))
			}
			if _, ok := gs[".data"]; !ok {
				t.Errorf("%s: no data envelope", tc.path)
			}
		})
	}
}

func keys(m map[string]bool) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}
