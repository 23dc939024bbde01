package reconcile

import (
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
)

// bigRepository builds a repository of routes, backends and VMs, 100
// documents per file as a large team would split it.
func bigRepository(routes, backends, vms int) fstest.MapFS {
	fsys := fstest.MapFS{}
	fsys["edge.yaml"] = &fstest.MapFile{Data: []byte(`apiVersion: gitedge/v1
kind: Edge
metadata: {name: big}
spec:
  nodes:
    - {name: lb-0, address: 192.0.2.250}
    - {name: lb-1, address: 192.0.2.251}
  failover:
    - {name: VI_1, interface: eth0, virtualRouterID: 33, priority: {lb-0: 100, lb-1: 101}, vips: [192.0.2.254/24]}
  listeners:
    - {name: http, bind: ":80", mode: http, defaultBackend: be-0, forwardFor: true}
    - {name: https, bind: ":443", mode: tls, defaultBackend: be-1}
  infra: {leader: vrrp:VI_1}
`)}
	emit := func(prefix string, n int, doc func(i int) string) {
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteString("---\n")
			b.WriteString(doc(i))
			if (i+1)%100 == 0 || i == n-1 {
				fsys[fmt.Sprintf("%s/%05d.yaml", prefix, i/100)] = &fstest.MapFile{Data: []byte(b.String())}
				b.Reset()
			}
		}
	}
	emit("backends", backends, func(i int) string {
		return fmt.Sprintf(`apiVersion: gitedge/v1
kind: Backend
metadata: {name: be-%d}
spec:
  balance: roundrobin
  proxyProtocol: v2
  connectTimeout: 1s
  healthCheck: {type: tcp, interval: 2s}
  servers:
    - {name: a, address: "192.0.2.%d:80", weight: 10, maxConn: 1000}
    - {name: b, address: "198.51.100.%d:80", weight: 10, maxConn: 1000}
`, i, i%200+1, i%200+1)
	})
	emit("routes", routes, func(i int) string {
		return fmt.Sprintf(`apiVersion: gitedge/v1
kind: Route
metadata: {name: r-%d}
spec:
  hosts: [app-%d.example.org, "*.app-%d.example.org"]
  http: {backend: be-%d}
  tls: {backend: be-%d}
`, i, i, i, i%backends, (i+1)%backends)
	})
	emit("vms", vms, func(i int) string {
		return fmt.Sprintf(`apiVersion: gitedge/v1
kind: VirtualMachine
metadata: {name: vm-%d}
spec:
  vmid: %d
  node: proxmox1
  clone: debian-bullseye-cloudinit-template
  cpu: host
  cores: 2
  memory: 4096
  onBoot: true
  agent: true
  disk: {bus: scsi, storage: vmdata, size: 8G, format: qcow2}
  network: [{model: virtio, bridge: vmbr0, vlan: 33}]
  cloudInit:
    user: ansible
    ipConfig: {ip: 198.51.100.%d/24, gateway: 198.51.100.1}
  ha: {group: main, state: started}
`, i, 1000+i, i%250+2)
	})
	return fsys
}

// BenchmarkLoad measures loading and validating 10,000 routes, 2,000
// backends and 500 VMs (the foundation issue's target: under 1 s).
func BenchmarkLoad(b *testing.B) {
	fsys := bigRepository(10000, 2000, 500)
	b.ReportAllocs()
	for b.Loop() {
		d, err := Load(fsys)
		if err != nil {
			b.Fatal(err)
		}
		if len(d.Dataplane.Routes) != 10000 || len(d.Dataplane.Backends) != 2000 || len(d.Infra.VMs) != 500 {
			b.Fatalf("loaded %d routes, %d backends, %d VMs", len(d.Dataplane.Routes), len(d.Dataplane.Backends), len(d.Infra.VMs))
		}
	}
}

// TestLoadBigRepository checks the generator (and so the benchmark) loads.
func TestLoadBigRepository(t *testing.T) {
	d, err := Load(bigRepository(300, 50, 20))
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Dataplane.Routes) != 300 || len(d.Dataplane.Backends) != 50 || len(d.Infra.VMs) != 20 {
		t.Fatalf("got %d routes, %d backends, %d VMs", len(d.Dataplane.Routes), len(d.Dataplane.Backends), len(d.Infra.VMs))
	}
}
