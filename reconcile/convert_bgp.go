package reconcile

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/gitedge/gitedge/bgp"
)

// convertBGP converts spec.bgp into Desired.BGP: the section as declared,
// for every node (Node and NodeAddress left empty), with bgp's defaults
// applied. Syntax is checked here, the rules of the section by
// bgp.Config.Validate (once for the section, once per node), and what
// needs the rest of the Edge (node names, router IDs defaulting to the
// nodes' addresses) here again.
func (c *converter) convertBGP() {
	if c.edge == nil || c.edge.BGP == nil {
		return
	}
	l, d, r := c.l, c.edgeDoc, c.edge.BGP
	const f = "spec.bgp"
	// reported holds the fields already refused here, whose Validate
	// message would only repeat it ("missing" for a value not parsed).
	reported := map[string]bool{}
	fail := func(field, format string, args ...any) {
		reported[field] = true
		l.failAt(d, field, format, args...)
	}
	var cfg bgp.Config
	cfg.ASN = c.asn(r.ASN, f+".asn", fail)
	nodes := map[string]Node{}
	for _, n := range c.desired.Edge.Nodes {
		nodes[n.Name] = n
	}
	if len(c.edge.Nodes) == 0 {
		fail(f, "bgp needs spec.nodes: the nodes that announce, each with its address (the default router ID)")
	}
	for _, n := range slices.Sorted(maps.Keys(r.RouterID)) {
		field := f + ".routerID." + n
		if _, ok := nodes[n]; !ok && len(nodes) > 0 {
			fail(field, "node %q is not in spec.nodes", n)
			continue
		}
		a, err := netip.ParseAddr(r.RouterID[n])
		if err != nil {
			fail(field, "bad router ID %q: expected an IPv4 address, as 192.0.2.11", r.RouterID[n])
			continue
		}
		if cfg.RouterID == nil {
			cfg.RouterID = map[string]netip.Addr{}
		}
		cfg.RouterID[n] = a.Unmap()
	}
	for i, rp := range r.Peers {
		pf := fmt.Sprintf("%s.peers[%d]", f, i)
		p := bgp.Peer{BFD: rp.BFD}
		if rp.Address != "" {
			a, err := netip.ParseAddr(rp.Address)
			if err != nil {
				fail(pf+".address", "bad address %q: expected the router's IP address, as 192.0.2.1", rp.Address)
			} else {
				p.Address = a.Unmap()
			}
		}
		if !rp.Password.IsZero() {
			// A secret, as VRRP's auth.password: the value, or named and
			// resolved on the node (a node running no BGP skips it).
			var from string
			p.Password, from = c.secret(d, pf+".password", rp.Password, c.l.local != nil && c.l.local.NoBGP)
			if rp.Password.IsReference() && p.Address.IsValid() {
				if c.desired.BGPPasswordFrom == nil {
					c.desired.BGPPasswordFrom = map[netip.Addr]string{}
				}
				c.desired.BGPPasswordFrom[p.Address] = from
			}
		}
		p.ASN = c.asn(rp.ASN, pf+".asn", fail)
		p.HoldTime = c.duration(d, pf+".holdTime", rp.HoldTime, 0)
		p.RestartTime = c.duration(d, pf+".restartTime", rp.RestartTime, 0)
		if rp.Port != nil {
			if *rp.Port < 1 || *rp.Port > 65535 {
				fail(pf+".port", "must be 1..65535, got %d", *rp.Port)
			} else {
				p.Port = uint16(*rp.Port)
			}
		}
		for _, n := range c.desired.Edge.Nodes {
			if p.Address.IsValid() && p.Address == n.Address {
				fail(pf+".address", "%s is the address of node %q: a peer is a router", p.Address, n.Name)
			}
		}
		cfg.Peers = append(cfg.Peers, p)
	}
	for i, ra := range r.Announce {
		af := fmt.Sprintf("%s.announce[%d]", f, i)
		var a bgp.Announcement
		if ra.Prefix != "" {
			p, err := parsePrefix(ra.Prefix)
			if err != nil {
				fail(af+".prefix", "%v", err)
			} else {
				a.Prefix = p
			}
		}
		if ra.Track != nil {
			a.TrackProxy = ra.Track.Proxy
		}
		for j, s := range ra.Communities {
			cm, err := bgp.ParseCommunity(s)
			if err != nil {
				fail(fmt.Sprintf("%s.communities[%d]", af, j), "%v", err)
				continue
			}
			a.Communities = append(a.Communities, cm)
		}
		for _, n := range slices.Sorted(maps.Keys(ra.MED)) {
			v := ra.MED[n]
			mf := af + ".med." + n
			switch _, ok := nodes[n]; {
			case !ok && len(nodes) > 0:
				fail(mf, "node %q is not in spec.nodes", n)
			case v < 0 || v > 1<<32-1:
				fail(mf, "a MED is 0..4294967295, got %d", v)
			default:
				if a.MED == nil {
					a.MED = map[string]uint32{}
				}
				a.MED[n] = uint32(v)
			}
		}
		cfg.Announce = append(cfg.Announce, a)
	}
	c.checkAnnounced(cfg, fail)
	cfg = cfg.WithDefaults()
	// The section's own rules, then what each node adds (its router ID).
	seen := map[string]bool{}
	report := func(errs []*bgp.FieldError) {
		for _, fe := range errs {
			if reported[fe.Field] || seen[fe.Field+"\x00"+fe.Msg] {
				continue
			}
			seen[fe.Field+"\x00"+fe.Msg] = true
			l.failAt(d, fe.Field, "%s", fe.Msg)
		}
	}
	report(cfg.Validate())
	ids := map[netip.Addr]string{}
	for _, n := range slices.Sorted(maps.Keys(cfg.RouterID)) {
		ids[cfg.RouterID[n]] = n
	}
	for _, n := range c.desired.Edge.Nodes {
		nc := cfg
		nc.Node, nc.NodeAddress = n.Name, n.Address
		report(nc.Validate())
		if _, explicit := cfg.RouterID[n.Name]; explicit || !n.Address.Is4() {
			continue
		}
		if other, dup := ids[n.Address]; dup && other != n.Name {
			l.failAt(d, f+".routerID."+other, "%s is also node %q's address, its default router ID: each node needs its own", n.Address, n.Name)
		}
	}
	c.desired.BGP = cfg
}

// asn reads an AS number: 1..4294967295 (Validate refuses 0 and 23456).
// Unset stays 0, for Validate to say it is missing.
func (c *converter) asn(v *int64, field string, fail func(field, format string, args ...any)) uint32 {
	if v == nil {
		return 0
	}
	if *v < 1 || *v > 1<<32-1 {
		fail(field, "an AS number is 1..4294967295, got %d", *v)
		return 0
	}
	return uint32(*v)
}

// BGPFor resolves the bgp section for one node: its name and address,
// which pick its router ID and MEDs. The zero Config when the repository
// declares no bgp (the speaker then stops, if it ran).
func (d *Desired) BGPFor(node string) (bgp.Config, error) {
	cfg := d.BGP
	if cfg.ASN == 0 && len(cfg.Peers) == 0 && len(cfg.Announce) == 0 {
		return bgp.Config{}, nil
	}
	self, ok := d.NodeNamed(node)
	if !ok {
		names := make([]string, len(d.Edge.Nodes))
		for i, n := range d.Edge.Nodes {
			names[i] = n.Name
		}
		return bgp.Config{}, fmt.Errorf("node %q is not in the Edge's spec.nodes %v: set node in the node config to one of them", node, names)
	}
	for _, p := range cfg.Peers {
		if from, ok := d.BGPPasswordFrom[p.Address]; ok && p.Password == "" {
			return bgp.Config{}, fmt.Errorf("peer %s: password (%s) was not resolved: the repository was loaded without this node's secrets (a node config's secrets section)", p.Address, from)
		}
	}
	cfg.Node, cfg.NodeAddress = self.Name, self.Address
	// The node's config shares nothing with the repository's.
	cfg.Peers = slices.Clone(cfg.Peers)
	cfg.Announce = slices.Clone(cfg.Announce)
	for i := range cfg.Announce {
		cfg.Announce[i].Communities = slices.Clone(cfg.Announce[i].Communities)
	}
	return cfg, nil
}

// checkAnnounced refuses a prefix holding an address the node must reach
// or own otherwise: every node makes the whole prefix local (a route on
// lo), so a node's own address, a peer's or a VRRP VIP inside it would be
// taken over by that route.
func (c *converter) checkAnnounced(cfg bgp.Config, fail func(field, format string, args ...any)) {
	for i, a := range cfg.Announce {
		if !a.Prefix.IsValid() {
			continue
		}
		f := fmt.Sprintf("spec.bgp.announce[%d].prefix", i)
		p := a.Prefix.Masked()
		switch {
		case slices.ContainsFunc(c.desired.Edge.Nodes, func(n Node) bool { return p.Contains(n.Address) }):
			i := slices.IndexFunc(c.desired.Edge.Nodes, func(n Node) bool { return p.Contains(n.Address) })
			n := c.desired.Edge.Nodes[i]
			fail(f, "%s holds %s, node %q's own address: every node makes the prefix local, announce only addresses no node owns", a.Prefix, n.Address, n.Name)
		case slices.ContainsFunc(cfg.Peers, func(pr bgp.Peer) bool { return p.Contains(pr.Address) }):
			i := slices.IndexFunc(cfg.Peers, func(pr bgp.Peer) bool { return p.Contains(pr.Address) })
			fail(f, "%s holds %s, the address of peers[%d]: the nodes would no longer reach that router", a.Prefix, cfg.Peers[i].Address, i)
		default:
			for _, in := range c.desired.Edge.Failover {
				if j := slices.IndexFunc(in.VIPs, func(v netip.Prefix) bool { return p.Contains(v.Addr()) }); j >= 0 {
					fail(f, "%s holds %s, a VIP of failover instance %q: serve an address by VRRP or by BGP, not both", a.Prefix, in.VIPs[j].Addr(), in.Name)
					break
				}
			}
		}
	}
}
