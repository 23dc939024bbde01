package main

import "fmt"

// demoRepository is the demo's routes repository (under edge/ in git).
func demoRepository(httpAddr, tlsAddr, blue, green, secure string) map[string]string {
	return map[string]string{
		"edge.yaml": fmt.Sprintf(`apiVersion: gitedge/v1
kind: Edge
metadata: {name: demo}
spec:
  nodes:
    - {name: lb-0, address: 192.0.2.250}
  listeners:
    - {name: http, bind: "%s", mode: http, defaultBackend: blue, forwardFor: true}
    - {name: https, bind: "%s", mode: tls, defaultBackend: secure}
  infra: {leader: lb-0, prune: false}
`, httpAddr, tlsAddr),
		"backends.yaml": fmt.Sprintf(`apiVersion: gitedge/v1
kind: Backend
metadata: {name: blue}
spec:
  healthCheck: {type: http, path: /, interval: 1s}
  servers: [{name: blue-1, address: "%s"}]
---
apiVersion: gitedge/v1
kind: Backend
metadata: {name: green}
spec:
  healthCheck: {type: http, path: /, interval: 1s}
  servers: [{name: green-1, address: "%s"}]
---
apiVersion: gitedge/v1
kind: Backend
metadata: {name: secure}
spec:
  servers: [{name: secure-1, address: "%s"}]
`, blue, green, secure),
		"routes/app.yaml": `apiVersion: gitedge/v1
kind: Route
metadata: {name: app}
spec:
  hosts: [app.demo.test]
  http: {backend: blue}
`,
		"routes/secure.yaml": `apiVersion: gitedge/v1
kind: Route
metadata: {name: secure}
spec:
  hosts: [secure.demo.test]
  tls: {backend: secure}
`,
		"vms.yaml": demoVM("lb-0", 150, "192.0.2.250") + "---\n" + demoVM("lb-1", 151, "192.0.2.251"),
	}
}

func demoVM(name string, vmid int, ip string) string {
	return fmt.Sprintf(`apiVersion: gitedge/v1
kind: VirtualMachine
metadata: {name: %s}
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
    ipConfig: {ip: %s/24, gateway: 192.0.2.1}
    nameserver: 192.0.2.1
    searchDomain: demo.test
  serial: socket
  vga: serial0
  ha: {group: main, state: started}
`, name, vmid, ip)
}
