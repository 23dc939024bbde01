package reconcile

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/failover"
)

func (c *converter) convertEdge(d *document, r *rawEdge) {
	l := c.l
	e := &c.desired.Edge
	e.Name = d.name
	nodeNames := map[string]bool{}
	addrs := map[netip.Addr]string{}
	for i, rn := range r.Nodes {
		f := fmt.Sprintf("spec.nodes[%d]", i)
		n := Node{Name: rn.Name}
		if rn.Name == "" {
			l.failAt(d, f+".name", "missing: every node needs a name")
		} else if nodeNames[rn.Name] {
			l.failAt(d, f+".name", "node %q is listed twice", rn.Name)
		}
		nodeNames[rn.Name] = true
		a, err := netip.ParseAddr(rn.Address)
		if err != nil {
			l.failAt(d, f+".address", "bad address %q: expected an IP address, as 192.0.2.250", rn.Address)
		} else if other, dup := addrs[a]; dup {
			l.failAt(d, f+".address", "%s is also the address of node %q", a, other)
		} else {
			addrs[a] = rn.Name
		}
		n.Address = a.Unmap()
		e.Nodes = append(e.Nodes, n)
	}
	for i, rl := range r.Listeners {
		c.desired.Dataplane.Listeners = append(c.desired.Dataplane.Listeners, c.listener(d, i, rl))
		for j, prev := range r.Listeners[:i] {
			if rl.Name != "" && prev.Name == rl.Name {
				l.failAt(d, fmt.Sprintf("spec.listeners[%d].name", i), "listener name %q is also used by spec.listeners[%d]", rl.Name, j)
			}
		}
	}
	type vridKey struct {
		iface string
		vrid  uint8
		v6    bool
	}
	vrids := map[vridKey]string{}
	vips := map[netip.Addr]string{}
	for i, ri := range r.Failover {
		f := fmt.Sprintf("spec.failover[%d]", i)
		in := c.instance(d, f, ri, nodeNames)
		for j, prev := range e.Failover {
			if in.Name != "" && prev.Name == in.Name {
				l.failAt(d, f+".name", "instance name %q is also used by spec.failover[%d]", in.Name, j)
			}
		}
		v6 := len(in.VIPs) > 0 && in.VIPs[0].Addr().Is6()
		k := vridKey{in.Interface, in.VRID, v6}
		if other, dup := vrids[k]; dup && in.VRID != 0 {
			l.failAt(d, f+".virtualRouterID", "VRID %d on %s is also used by instance %q", in.VRID, in.Interface, other)
		} else {
			vrids[k] = in.Name
		}
		for j, v := range in.VIPs {
			if other, dup := vips[v.Addr()]; dup {
				l.failAt(d, fmt.Sprintf("%s.vips[%d]", f, j), "VIP %s is also claimed by instance %q", v.Addr(), other)
			} else {
				vips[v.Addr()] = in.Name
			}
		}
		e.Failover = append(e.Failover, in)
	}
	if r.Infra != nil {
		c.desired.Infra.Prune = r.Infra.Prune
		switch ld := r.Infra.Leader; {
		case strings.HasPrefix(ld, "vrrp:"):
			name := strings.TrimPrefix(ld, "vrrp:")
			if !slices.ContainsFunc(e.Failover, func(v VRRPInstance) bool { return v.Name == name }) {
				l.failAt(d, "spec.infra.leader", "no failover instance named %q (expected vrrp:INSTANCE or a node name)", name)
			}
			e.InfraLeader = Leader{VRRP: name}
		case ld != "":
			if !nodeNames[ld] {
				l.failAt(d, "spec.infra.leader", "%q is neither vrrp:INSTANCE nor a node in spec.nodes", ld)
			}
			e.InfraLeader = Leader{Node: ld}
		}
	}
}

func (c *converter) instance(d *document, f string, r rawInstance, nodes map[string]bool) VRRPInstance {
	l := c.l
	in := VRRPInstance{
		Instance: failover.Instance{
			Name:            r.Name,
			Interface:       r.Interface,
			Version:         intOr(r.Version, defVRRPVersion),
			AdvertInterval:  c.duration(d, f+".advertInterval", r.AdvertInterval, defAdvertInterval),
			Preempt:         defPreempt,
			PreemptDelay:    c.duration(d, f+".preemptDelay", r.PreemptDelay, 0),
			GARP:            failover.GARP{Repeat: defGARPRepeat, Delay: defGARPDelay, Refresh: defGARPRefresh},
			TrackInterfaces: nil,
		},
		Priorities: map[string]uint8{},
		Unicast:    r.UnicastPeers,
	}
	if r.Name == "" {
		l.failAt(d, f+".name", "missing: every failover instance needs a name, as VI_1")
	}
	if r.Interface == "" {
		l.failAt(d, f+".interface", "missing: the interface the VIPs go on, as eth0")
	}
	if r.Preempt != nil {
		in.Preempt = *r.Preempt
	}
	switch {
	case r.VirtualRouterID == nil:
		l.failAt(d, f+".virtualRouterID", "missing: expected 1..255")
	case *r.VirtualRouterID < 1 || *r.VirtualRouterID > 255:
		l.failAt(d, f+".virtualRouterID", "must be 1..255, got %d", *r.VirtualRouterID)
	default:
		in.VRID = uint8(*r.VirtualRouterID)
	}
	if r.Auth != nil {
		switch r.Auth.Type {
		case "pass":
			if r.Auth.Password.IsZero() {
				l.failAt(d, f+".auth.password", "missing: auth type pass needs a password (the value, {secret: NAME} or {age: …})")
				break
			}
			in.AuthPass, in.AuthFrom = c.secret(d, f+".auth.password", r.Auth.Password, c.l.local != nil && c.l.local.NoVRRP)
			if in.AuthPass == "" && in.AuthFrom != "" && in.Version != 2 {
				// Resolved, failover's own check says it (below).
				l.failAt(d, f+".auth", "authentication is VRRP v2 only (RFC 5798 removed it); use version: 2 or drop auth")
			}
		default:
			l.failAt(d, f+".auth.type", "%q is not supported: expected pass (keepalived's auth_type PASS)", r.Auth.Type)
		}
	}
	if r.Track != nil {
		in.TrackProxy = r.Track.Proxy
		in.TrackInterfaces = slices.Clone(r.Track.Interfaces)
	}
	if g := r.GARP; g != nil {
		in.GARP.Repeat = intOr(g.Repeat, defGARPRepeat)
		in.GARP.Delay = c.duration(d, f+".garp.delay", g.Delay, defGARPDelay)
		in.GARP.Refresh = c.duration(d, f+".garp.refresh", g.Refresh, defGARPRefresh)
		if in.GARP.Repeat < 1 || in.GARP.Repeat > 100 {
			l.failAt(d, f+".garp.repeat", "must be 1..100, got %d", in.GARP.Repeat)
		}
	}
	for j, s := range r.VIPs {
		p, err := parsePrefix(s)
		if err != nil {
			l.failAt(d, fmt.Sprintf("%s.vips[%d]", f, j), "%v", err)
			continue
		}
		in.VIPs = append(in.VIPs, p)
	}
	c.checkVIPs(d, f, r.VIPs, &in)
	for _, fe := range failover.ValidateInstance(in.Instance) {
		if fe.Field == "vips" && len(r.VIPs) > len(in.VIPs) {
			continue // already reported per VIP
		}
		if fe.Field == "virtualRouterID" {
			continue // checked above, with the raw value
		}
		l.failAt(d, f+"."+fe.Field, "%s", fe.Msg)
	}
	// Priorities: one per node, 1..254 (255 only for the VIP owner).
	names := make([]string, 0, len(r.Priority))
	for n := range r.Priority {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(c.edge.Nodes) == 0 {
		names = nil // reported once below
	}
	for _, n := range names {
		p := r.Priority[n]
		pf := f + ".priority." + n
		if !nodes[n] {
			l.failAt(d, pf, "node %q is not in spec.nodes", n)
			continue
		}
		// 255 is for an address owner (RFC 5798 §5.2.4), a node whose own
		// address is the VIP: refused (checkVIPs), so never valid here.
		if p < 1 || p > 254 {
			l.failAt(d, pf, "priority %d is outside 1..254 (0 is sent on stop; 255 marks an address owner, and a VIP must not be a node's own address)", p)
			continue
		}
		in.Priorities[n] = uint8(p)
	}
	for _, n := range c.edge.Nodes {
		if _, ok := r.Priority[n.Name]; !ok && n.Name != "" {
			l.failAt(d, f+".priority", "missing a priority for node %q: every node in spec.nodes needs one", n.Name)
		}
	}
	if len(c.edge.Nodes) == 0 {
		l.failAt(d, f, "failover needs spec.nodes: the nodes that share the VIPs")
	}
	if in.Unicast && len(c.edge.Nodes) < 2 {
		l.failAt(d, f+".unicastPeers", "unicast needs at least two nodes in spec.nodes")
	}
	return in
}
