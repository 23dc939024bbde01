package reconcile

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/secrets"
)

// Local is what a repository is checked against on one node, beyond the
// repository itself: the node's name and the addresses the node listens on
// for itself (admin, webhook). `gitedge validate --node-config` and
// `gitedge run` (on every commit) add these checks.
type Local struct {
	// Node is this node's name; when set and the Edge lists nodes, it must
	// be one of them.
	Node string
	// Config is the node config file, named in messages.
	Config string
	// Listens are the node's own listening addresses.
	Listens []LocalListen
	// Secrets resolves the secrets the repository names ({secret: NAME},
	// {age: …}) on this node; nil checks their shape only and leaves them
	// unresolved.
	Secrets *secrets.Store
	// NoVRRP and NoBGP say the node runs no VRRP (a proxy-only node) or no
	// BGP: the secrets only that subsystem uses are not resolved, so the
	// node needs none of them.
	NoVRRP, NoBGP bool
}

// LocalListen is one address the node listens on for itself.
type LocalListen struct {
	Field string // the node config field, as "admin.listen"
	Addr  string // as written there, as "127.0.0.1:9100" or ":9000"
}

// Clashes reports the node's own listening addresses that cannot both
// listen (the admin server and the webhook on one port), each named by its
// node-config field.
func (l *Local) Clashes() error {
	var errs []error
	for i, a := range l.Listens {
		ab, err := dataplane.ParseBind(a.Addr)
		if err != nil {
			continue // the field's own check reports it
		}
		for _, b := range l.Listens[:i] {
			if bb, err := dataplane.ParseBind(b.Addr); err == nil && bindsClash(ab, bb) {
				errs = append(errs, fmt.Errorf("%s: %s clashes with %s %s: use two ports", a.Field, a.Addr, b.Field, b.Addr))
			}
		}
	}
	return errors.Join(errs...)
}

// bindsClash reports whether two binds cannot both listen on one node: the
// same port, and the same address or a wildcard covering the other. ":P"
// and "[::]:P" are dual-stack and cover every address, "0.0.0.0:P" every
// IPv4 address. Port 0 (any free port, for tests) never clashes.
func bindsClash(a, b dataplane.Bind) bool {
	if a.Port != b.Port || a.Port == 0 {
		return false
	}
	return a.Addr == b.Addr || covers(a.Addr, b.Addr) || covers(b.Addr, a.Addr)
}

// ListenersClash reports whether listeners bound to a and b cannot both
// be, as Load refuses them: the same port on the same address, on ":P",
// or on a wildcard address that covers the other. The importer keeps one
// of two such HAProxy binds rather than write a repository Load refuses.
func ListenersClash(a, b dataplane.Bind) bool {
	return a.Overlaps(b) || bindsClash(a, b)
}

// ServerIsListener reports whether a server at addr would be the proxy's
// own listener bound to bind, as Load refuses it: the same address and
// port, or a wildcard bind on that port reached on loopback or the
// unspecified address (the VIPs of the repository aside). The importer
// drops such a server rather than write a repository Load refuses.
func ServerIsListener(bind dataplane.Bind, addr netip.AddrPort) bool {
	_, ok := reachesBind(bind, addr, nil)
	return ok
}

// reachesBind reports whether a server at addr reaches a listener bound
// to bind, and how, for the error (", reached on loopback"). owner names
// the addresses a node of the repository may hold (its VIPs).
func reachesBind(bind dataplane.Bind, addr netip.AddrPort, owner map[netip.Addr]string) (string, bool) {
	if bind.Port != addr.Port() || bind.Port == 0 {
		return "", false
	}
	a := addr.Addr().Unmap()
	switch {
	case bind.Addr.IsValid() && !bind.Addr.IsUnspecified():
		return "", a == bind.Addr
	case !covers(bind.Addr, a):
		return "", false
	case a.IsLoopback(), a.IsUnspecified():
		return ", reached on loopback", true
	case owner[a] != "":
		return ", reached on " + owner[a], true
	}
	return "", false
}

// covers reports whether a listener on w receives connections to o.
func covers(w, o netip.Addr) bool {
	switch {
	case !w.IsValid(), w.IsUnspecified() && w.Is6():
		return true
	case w.IsUnspecified():
		return !o.IsValid() || o.Is4()
	}
	return false
}

// checkBinds refuses listeners that overlap in a way dataplane's own check
// (exact address, or ":P") does not see: "0.0.0.0:P" beside
// "127.0.0.1:P", "[::]:P" beside "0.0.0.0:P". The node would refuse them
// when it binds.
func (c *converter) checkBinds() {
	d := c.edgeDoc
	lns := c.desired.Dataplane.Listeners
	for i, ln := range lns {
		for j, prev := range lns[:i] {
			if ln.Bind.Overlaps(prev.Bind) || !bindsClash(ln.Bind, prev.Bind) {
				continue // reported by dataplane's validation, or fine
			}
			c.l.failAt(d, fmt.Sprintf("spec.listeners[%d].bind", i),
				"listener %q binds %s, which clashes with listener %q on %s (spec.listeners[%d]): a wildcard address takes the port on every address",
				ln.Name, ln.Bind, prev.Name, prev.Bind, j)
		}
	}
}

// checkLocal adds the node-local checks of c.l.local.
func (c *converter) checkLocal() {
	loc, d := c.l.local, c.edgeDoc
	if loc == nil || d == nil {
		return
	}
	conf := ""
	if loc.Config != "" {
		conf = " (node config " + loc.Config + ")"
	}
	nodes := c.desired.Edge.Nodes
	if loc.Node != "" && len(nodes) > 0 && !slices.ContainsFunc(nodes, func(n Node) bool { return n.Name == loc.Node }) {
		names := make([]string, len(nodes))
		for i, n := range nodes {
			names[i] = n.Name
		}
		c.l.failAt(d, "spec.nodes", "this node, %q%s, is not in spec.nodes [%s]: add it, or set node: in the node config to one of them",
			loc.Node, conf, strings.Join(names, " "))
	}
	for _, own := range loc.Listens {
		b, err := dataplane.ParseBind(own.Addr)
		if err != nil {
			continue // the node config's own check reports it
		}
		for i, ln := range c.desired.Dataplane.Listeners {
			if bindsClash(ln.Bind, b) {
				c.l.failAt(d, fmt.Sprintf("spec.listeners[%d].bind", i),
					"listener %q binds %s, which clashes with this node's %s %s%s: move one of them to another port",
					ln.Name, ln.Bind, own.Field, own.Addr, conf)
			}
		}
	}
}

// checkServerLoops refuses a backend server that is one of the proxy's
// own listeners, on any node: a request sent there comes back to the proxy
// and loops until the node runs out of file descriptors. A wildcard
// listener is reached on loopback, on every node's address and on every
// VIP.
func (c *converter) checkServerLoops() {
	owner := map[netip.Addr]string{} // local address -> what it is
	for _, n := range c.desired.Edge.Nodes {
		if n.Address.IsValid() {
			owner[n.Address] = fmt.Sprintf("node %s's address", n.Name)
		}
	}
	for _, in := range c.desired.Edge.Failover {
		for _, v := range in.VIPs {
			owner[v.Addr()] = fmt.Sprintf("the VIP of %s", in.Name)
		}
	}
	lns := c.desired.Dataplane.Listeners
	for _, b := range c.desired.Dataplane.Backends {
		d := c.byName["Backend"][b.Name]
		if d == nil {
			continue
		}
		for j, s := range b.Servers {
			if !s.Address.IsValid() {
				continue
			}
			for _, ln := range lns {
				why, ok := reachesBind(ln.Bind, s.Address, owner)
				if !ok {
					continue
				}
				c.l.failAt(d, fmt.Sprintf("spec.servers[%d].address", j),
					"%s is the proxy's own listener %q (bind %q%s): requests would loop back into the proxy; point the server at the backend itself",
					s.Address, ln.Name, ln.Bind.String(), why)
				break
			}
		}
	}
}

// checkVIPs refuses VIPs that would cut a node off or never be reachable:
// a node's own address (gitedge removes VIPs when it stops or loses
// mastership), a VIP outside the subnet of every node, and, for multicast
// VRRP, nodes that do not all share the VIP's subnet (adverts do not cross
// subnets). The subnet is the VIP's prefix applied to the nodes'
// addresses; nodes of the other address family are not compared. A host
// VIP (/32, /128: what keepalived makes of a bare address) says nothing of
// its subnet, so only the node-address rule applies to it.
func (c *converter) checkVIPs(d *document, f string, vips []string, in *VRRPInstance) {
	nodes := c.desired.Edge.Nodes
	split := false
	for j, s := range vips {
		field := fmt.Sprintf("%s.vips[%d]", f, j)
		p, err := parsePrefix(s)
		if err != nil {
			continue // reported where VIPs are parsed
		}
		if !strings.Contains(s, "/") {
			c.l.failAt(d, field, "%q has no prefix length: write the VIP with the prefix of its subnet, as %s/24 (keepalived's virtual_ipaddress takes the same)", s, s)
			continue
		}
		a := p.Addr().Unmap()
		if i := slices.IndexFunc(nodes, func(n Node) bool { return n.Address == a }); i >= 0 {
			c.l.failAt(d, field, "%s is the address of node %q: a VIP must be an address no node owns (gitedge removes a VIP when it stops or loses mastership, which would cut the node off)", a, nodes[i].Name)
			continue
		}
		if p.IsSingleIP() {
			continue
		}
		subnet := p.Masked()
		var family, inside, outside []Node
		for _, n := range nodes {
			if n.Address.IsValid() && n.Address.Is4() == a.Is4() {
				family = append(family, n)
				if subnet.Contains(n.Address) {
					inside = append(inside, n)
				} else {
					outside = append(outside, n)
				}
			}
		}
		switch {
		case len(family) == 0:
		case len(inside) == 0:
			c.l.failAt(d, field, "%s is outside the subnet of every node (%s): no node could reach its clients on it; use an address of the nodes' subnet, or fix the prefix length",
				s, nodeAddrs(family))
		case !in.Unicast && len(outside) > 0 && !split:
			split = true
			c.l.failAt(d, field, "the nodes of this multicast instance are not on one subnet: %s is outside %s (the subnet of %s): VRRP adverts do not cross subnets; put the nodes on one subnet, or set unicastPeers: true",
				nodeAddrs(outside), subnet, nodeAddrs(inside))
		}
	}
}

func nodeAddrs(ns []Node) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = n.Name + " " + n.Address.String()
	}
	return strings.Join(parts, ", ")
}
