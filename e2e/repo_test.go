//go:build e2e

package e2e

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// repoSpec is what the test puts in the routes repository; render turns
// it into the YAML files of the routes repository.
type repoSpec struct {
	instances []instanceSpec
	listeners []listenerSpec
	backends  []backendSpec
	routes    []routeSpec
	vms       []vmSpec
	leader    string            // spec.infra.leader; "" for no infra section
	bgp       string            // the Edge's spec.bgp section as YAML, indented under spec; "" for none
	extra     map[string]string // more files, as they are (broken ones)
}

type listenerSpec struct {
	name, bind, mode, def string
	forwardFor            bool
}

type backendSpec struct {
	name    string
	proxy   string   // proxyProtocol: "", v1, v2
	servers []string // "be2:80" (a lab backend and port) or an ip:port
}

type routeSpec struct {
	name      string
	hosts     []string
	http, tls string // backends
}

type vmSpec struct {
	name   string
	vmid   int
	memory int
}

// clone copies s deep enough for a scenario to change it.
func (s repoSpec) clone() repoSpec {
	c := s
	c.instances = nil
	for _, in := range s.instances {
		in.prio = maps.Clone(in.prio)
		in.vips = slices.Clone(in.vips)
		c.instances = append(c.instances, in)
	}
	c.listeners = slices.Clone(s.listeners)
	c.backends = nil
	for _, b := range s.backends {
		b.servers = slices.Clone(b.servers)
		c.backends = append(c.backends, b)
	}
	c.routes = nil
	for _, r := range s.routes {
		r.hosts = slices.Clone(r.hosts)
		c.routes = append(c.routes, r)
	}
	c.vms = slices.Clone(s.vms)
	c.extra = maps.Clone(s.extra)
	return c
}

// webSpec is the fleets' base repository: an HTTP listener on :80
// (X-Forwarded-For) defaulting to be1, a TLS passthrough listener on :443
// defaulting to be1's TLS port with a PROXY v2 header, and app.lab routed
// to be2 over HTTP and to be1 over TLS.
func webSpec(instances ...instanceSpec) repoSpec {
	return repoSpec{
		instances: instances,
		listeners: []listenerSpec{
			{name: "http", bind: ":80", mode: "http", def: "web", forwardFor: true},
			{name: "https", bind: ":443", mode: "tls", def: "secure"},
		},
		backends: []backendSpec{
			{name: "web", servers: []string{"be1:80"}},
			{name: "secure", proxy: "v2", servers: []string{"be1:443"}},
			{name: "app", servers: []string{"be2:80"}},
		},
		routes: []routeSpec{{name: "app", hosts: []string{"app.lab"}, http: "app", tls: "secure"}},
	}
}

func (s *repoSpec) setRoute(r routeSpec) {
	s.routes = slices.DeleteFunc(s.routes, func(o routeSpec) bool { return o.name == r.name })
	s.routes = append(s.routes, r)
}

func (s *repoSpec) setBackend(b backendSpec) {
	s.backends = slices.DeleteFunc(s.backends, func(o backendSpec) bool { return o.name == b.name })
	s.backends = append(s.backends, b)
}

// render writes the repository's files for the fleet's nodes.
func (f *fleet) render(s repoSpec) map[string]string {
	files := map[string]string{}
	var b strings.Builder
	b.WriteString("# The lab's edge: its nodes, VRRP instances and listeners.\n")
	edgeHead(&b, f.lab.nodes)
	failoverYAML(&b, f.lab.nodes, s.instances)
	if len(s.listeners) > 0 {
		b.WriteString("  listeners:\n")
		for _, l := range s.listeners {
			fmt.Fprintf(&b, "    - {name: %s, bind: %q, mode: %s, defaultBackend: %s", l.name, l.bind, l.mode, l.def)
			if l.forwardFor {
				b.WriteString(", forwardFor: true")
			}
			b.WriteString("}\n")
		}
	}
	if s.leader != "" {
		fmt.Fprintf(&b, "  infra: {leader: %q, prune: false}\n", s.leader)
	}
	b.WriteString(s.bgp)
	files["edge.yaml"] = b.String()

	b.Reset()
	for i, be := range s.backends {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "apiVersion: gitedge/v1\nkind: Backend\nmetadata: {name: %s}\nspec:\n  connectTimeout: 1s\n", be.name)
		if be.proxy != "" {
			fmt.Fprintf(&b, "  proxyProtocol: %s\n", be.proxy)
		}
		b.WriteString("  servers:\n")
		for j, srv := range be.servers {
			fmt.Fprintf(&b, "    - {name: s%d, address: %q}\n", j+1, f.serverAddr(srv))
		}
	}
	files["backends.yaml"] = b.String()

	for _, r := range s.routes {
		var rb strings.Builder
		fmt.Fprintf(&rb, "apiVersion: gitedge/v1\nkind: Route\nmetadata: {name: %s}\nspec:\n  hosts: [%s]\n", r.name, strings.Join(r.hosts, ", "))
		if r.http != "" {
			fmt.Fprintf(&rb, "  http: {backend: %s}\n", r.http)
		}
		if r.tls != "" {
			fmt.Fprintf(&rb, "  tls: {backend: %s}\n", r.tls)
		}
		files["routes/"+r.name+".yaml"] = rb.String()
	}

	if len(s.vms) > 0 {
		b.Reset()
		for i, vm := range s.vms {
			if i > 0 {
				b.WriteString("---\n")
			}
			fmt.Fprintf(&b, `apiVersion: gitedge/v1
kind: VirtualMachine
metadata: {name: %s}
spec:
  vmid: %d
  node: proxmox1
  clone: debian-bullseye-cloudinit-template
  cores: 2
  memory: %d
  onBoot: true
  agent: true
  disk: {bus: scsi, storage: vmdata, size: 8G, format: qcow2}
  network: [{model: virtio, bridge: vmbr0}]
`, vm.name, vm.vmid, vm.memory)
		}
		files["vms.yaml"] = b.String()
	}
	maps.Copy(files, s.extra)
	return files
}

// serverAddr resolves "beN:port" to the lab backend's address.
func (f *fleet) serverAddr(s string) string {
	name, port, ok := strings.Cut(s, ":")
	if ip, found := f.be.addrs[name]; ok && found {
		return ip + ":" + port
	}
	return s
}
