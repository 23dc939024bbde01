package reconcile

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/gitedge/gitedge/bgp"
	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/infra"
)

// Desired is the whole desired state of one repository revision, made of
// the subsystems' own config types. Only Load produces it, fully validated.
type Desired struct {
	Edge      Edge
	Dataplane dataplane.Config
	Infra     infra.Config
	// BGP is spec.bgp as declared, for every node (defaults applied, Node
	// and NodeAddress empty); BGPFor resolves it for one node. The zero
	// Config when the repository declares no bgp.
	BGP bgp.Config
	// BGPPasswordFrom says where each BGP peer's password comes from when
	// the repository names it ({secret: NAME}, {age: …}), by peer
	// address (secrets.Value.Source); the password itself is in BGP,
	// "" until resolved with the node's secrets.
	BGPPasswordFrom map[netip.Addr]string
	// Secrets lists the fields holding a secret and where each comes
	// from (never the value).
	Secrets []SecretUse
	// Warnings are problems that do not refuse the repository (a secret
	// written in it), located as errors are.
	Warnings Errors
}

// Edge holds the repository-wide values of the Edge document.
type Edge struct {
	Name  string
	Nodes []Node
	// Failover holds the VRRP instances as declared, with every node's
	// priority; FailoverFor resolves them for one node.
	Failover []VRRPInstance
	// InfraLeader says who applies VM changes; zero when no VMs are declared.
	InfraLeader Leader
}

// Node is one edge node that pulls the repository.
type Node struct {
	Name    string
	Address netip.Addr
}

// VRRPInstance is a VRRP instance as the repository declares it: the
// node-independent settings plus the priority of each node.
type VRRPInstance struct {
	// Instance carries every node-independent setting; its Priority,
	// UnicastPeers and UnicastSource are left zero here.
	failover.Instance
	Priorities map[string]uint8
	Unicast    bool // advertise to the other nodes' addresses instead of multicast
	// AuthFrom says where AuthPass comes from (secrets.Value.Source), ""
	// without auth. With AuthPass "" it was not resolved (a load without
	// the node's secrets), and FailoverFor refuses the instance.
	AuthFrom string
}

// Leader names who applies infra changes: the master of a VRRP instance, or
// a fixed node.
type Leader struct {
	VRRP string // instance name, when the leader follows VRRP mastership
	Node string // node name, when the leader is fixed
}

func (l Leader) String() string {
	switch {
	case l.VRRP != "":
		return "vrrp:" + l.VRRP
	case l.Node != "":
		return l.Node
	}
	return ""
}

// NodeNamed returns the node with that name.
func (d *Desired) NodeNamed(name string) (Node, bool) {
	i := slices.IndexFunc(d.Edge.Nodes, func(n Node) bool { return n.Name == name })
	if i < 0 {
		return Node{}, false
	}
	return d.Edge.Nodes[i], true
}

// FailoverFor resolves the VRRP instances for one node: its priority, and
// with unicast the other nodes' addresses as peers.
func (d *Desired) FailoverFor(node string) (failover.Config, error) {
	var cfg failover.Config
	if len(d.Edge.Failover) == 0 {
		return cfg, nil
	}
	self, ok := d.NodeNamed(node)
	if !ok {
		names := make([]string, len(d.Edge.Nodes))
		for i, n := range d.Edge.Nodes {
			names[i] = n.Name
		}
		return cfg, fmt.Errorf("node %q is not in the Edge's spec.nodes %v: set node in the node config to one of them", node, names)
	}
	for _, vi := range d.Edge.Failover {
		if vi.AuthFrom != "" && vi.AuthPass == "" {
			return cfg, fmt.Errorf("instance %q: auth.password (%s) was not resolved: the repository was loaded without this node's secrets (a node config's secrets section)", vi.Name, vi.AuthFrom)
		}
		in := vi.Instance
		in.Priority = vi.Priorities[node]
		in.VIPs = slices.Clone(vi.VIPs)
		in.TrackInterfaces = slices.Clone(vi.TrackInterfaces)
		if vi.Unicast {
			in.UnicastSource = self.Address
			for _, n := range d.Edge.Nodes {
				if n.Name != node {
					in.UnicastPeers = append(in.UnicastPeers, n.Address)
				}
			}
		}
		cfg.Instances = append(cfg.Instances, in)
	}
	return cfg, nil
}
