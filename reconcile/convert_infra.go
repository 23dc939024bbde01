package reconcile

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/infra"
)

var haStates = []string{"started", "stopped", "disabled", "ignored"}

func (c *converter) vm(d *document, r *rawVM) infra.VM {
	l := c.l
	v := infra.VM{
		Name:          d.name,
		VMID:          intOr(r.VMID, 0),
		Node:          r.Node,
		Clone:         r.Clone,
		CPU:           r.CPU,
		Cores:         intOr(r.Cores, defCores),
		Memory:        intOr(r.Memory, defMemory),
		OnBoot:        r.OnBoot,
		Agent:         r.Agent,
		Description:   strings.TrimRight(r.Description, " \t\n"),
		Serial:        r.Serial,
		VGA:           r.VGA,
		IgnoreChanges: slices.Clone(r.IgnoreChanges),
	}
	switch {
	case r.VMID == nil:
		l.failAt(d, "spec.vmid", "missing: the VMID is the idempotency key across nodes; pick a free one in 100..999999999")
	case v.VMID < 100 || v.VMID > 999999999:
		l.failAt(d, "spec.vmid", "must be 100..999999999 (Proxmox's range), got %d", v.VMID)
	}
	if v.Node == "" {
		l.failAt(d, "spec.node", "missing: the Proxmox node to create the VM on")
	}
	if v.Clone == "" {
		l.failAt(d, "spec.clone", "missing: the template to clone from")
	}
	if v.Cores < 1 || v.Cores > 512 {
		l.failAt(d, "spec.cores", "must be 1..512, got %d", v.Cores)
	}
	if v.Memory < 16 {
		l.failAt(d, "spec.memory", "must be at least 16 (MiB), got %d", v.Memory)
	}
	if strings.ContainsAny(d.name, "_") {
		l.failAt(d, "metadata.name", "%q is not a valid Proxmox VM name: use letters, digits, '-' and '.'", d.name)
	}
	if dk := r.Disk; dk != nil {
		v.Disk = infra.Disk{
			Bus:     c.oneOf(d, "spec.disk.bus", dk.Bus, "scsi", "scsi", "virtio", "sata", "ide"),
			Storage: dk.Storage,
			Format:  c.oneOf(d, "spec.disk.format", dk.Format, "", "raw", "qcow2", "vmdk"),
		}
		if dk.Size != "" {
			s, err := infra.ParseSize(dk.Size)
			if err != nil {
				l.failAt(d, "spec.disk.size", "%v", err)
			}
			v.Disk.Size = s
		}
		if dk.Storage == "" {
			l.failAt(d, "spec.disk.storage", "missing: the storage the cloned disk goes to, as vmdata")
		}
	}
	for i, n := range r.Network {
		f := fmt.Sprintf("spec.network[%d]", i)
		nic := infra.NIC{Model: cmp.Or(n.Model, "virtio"), Bridge: n.Bridge, VLAN: intOr(n.VLAN, 0)}
		if n.Bridge == "" {
			l.failAt(d, f+".bridge", "missing: the bridge to attach to, as vmbr0")
		}
		if n.VLAN != nil && (nic.VLAN < 1 || nic.VLAN > 4094) {
			l.failAt(d, f+".vlan", "must be 1..4094, got %d", nic.VLAN)
		}
		if !slices.Contains([]string{"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"}, nic.Model) {
			l.failAt(d, f+".model", "%q is not allowed: expected virtio, e1000, e1000e, rtl8139 or vmxnet3", nic.Model)
		}
		v.Network = append(v.Network, nic)
	}
	if ci := r.CloudInit; ci != nil {
		v.CloudInit = infra.CloudInit{User: ci.User, Nameserver: ci.Nameserver, SearchDomain: ci.SearchDomain, SSHKeys: slices.Clone(ci.SSHKeys)}
		if ip := ci.IPConfig; ip != nil {
			switch {
			case ip.IP == "dhcp":
				v.CloudInit.IPConfig.DHCP = true
			case ip.IP != "":
				p, err := netip.ParsePrefix(ip.IP)
				if err != nil {
					l.failAt(d, "spec.cloudInit.ipConfig.ip", "bad address %q: expected dhcp or an address with its prefix length, as 192.0.2.250/24", ip.IP)
				}
				v.CloudInit.IPConfig.IP = p
			}
			if ip.Gateway != "" {
				g, err := netip.ParseAddr(ip.Gateway)
				if err != nil {
					l.failAt(d, "spec.cloudInit.ipConfig.gateway", "bad address %q: expected an IP address", ip.Gateway)
				}
				v.CloudInit.IPConfig.Gateway = g
			}
		}
		for ns := range strings.FieldsSeq(ci.Nameserver) {
			if _, err := netip.ParseAddr(ns); err != nil {
				l.failAt(d, "spec.cloudInit.nameserver", "bad address %q: expected IP addresses separated by spaces", ns)
			}
		}
	}
	if r.HA != nil {
		v.HA = &infra.HA{Group: r.HA.Group, State: c.oneOf(d, "spec.ha.state", r.HA.State, "started", haStates...)}
	}
	for i, f := range v.IgnoreChanges {
		if !slices.Contains(infra.IgnorableFields(), f) {
			l.failAt(d, fmt.Sprintf("spec.ignoreChanges[%d]", i), "%q cannot be ignored: expected one of %s", f, strings.Join(infra.IgnorableFields(), ", "))
		}
	}
	return v
}

func (c *converter) validateInfra() {
	vmids := map[int]*document{}
	for i, v := range c.desired.Infra.VMs {
		d := c.vms[i]
		if prev, dup := vmids[v.VMID]; dup && v.VMID != 0 {
			c.l.failAt(d, "spec.vmid", "VMID %d is also used by VirtualMachine %q (%s:%d)", v.VMID, prev.name, prev.file, prev.line)
		} else {
			vmids[v.VMID] = d
		}
	}
	e := &c.desired.Edge
	if len(c.desired.Infra.VMs) > 0 && e.InfraLeader == (Leader{}) && c.edgeDoc != nil {
		switch {
		case len(e.Failover) == 1:
			e.InfraLeader = Leader{VRRP: e.Failover[0].Name}
		case len(e.Nodes) == 1:
			e.InfraLeader = Leader{Node: e.Nodes[0].Name}
		case len(e.Nodes) == 0:
			// A single node running without a nodes list leads itself.
		default:
			c.l.failAt(c.edgeDoc, "spec.infra.leader", "missing: with VirtualMachines and several nodes, say who applies VM changes (vrrp:INSTANCE or a node name)")
		}
	}
}
