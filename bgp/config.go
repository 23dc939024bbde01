package bgp

import (
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults, applied by Config.WithDefaults (and so by Validate and Apply).
const (
	// DefaultHoldTime is RFC 4271 §10's suggested hold time. Fast failure
	// detection wants 3s (keepalives every second).
	DefaultHoldTime = 90 * time.Second
	// DefaultPort is BGP's TCP port (RFC 4271 §8.2.1).
	DefaultPort = 179
)

// Config is the bgp section of the Edge as one node runs it. It is plain
// data: Equal compares it, WithDefaults fills what is unset, Validate
// checks it. The zero value of each field means its documented default.
type Config struct {
	// ASN is this edge's autonomous system, the same on every node:
	// 1..4294967295 except 23456 (AS_TRANS, RFC 6793). Required.
	ASN uint32
	// RouterID maps node names to their BGP identifier, an IPv4 address
	// unique among the routers' peers (RFC 6286). A node not in it uses its
	// own address (NodeAddress), which must then be IPv4.
	RouterID map[string]netip.Addr
	// Peers are the routers this node opens sessions to. At least one.
	Peers []Peer
	// Announce lists the prefixes every healthy node announces.
	Announce []Announcement
	// Node and NodeAddress are this node's name and address (spec.nodes):
	// they pick its router ID and MEDs. Node may be empty to validate the
	// section for no node in particular (gitedge validate); Apply needs it.
	Node        string
	NodeAddress netip.Addr
}

// Peer is one router, an eBGP neighbour when its ASN differs from
// Config.ASN and iBGP when equal. The session is opened by the node
// (gitedge listens on no port), over the address family of Address; it
// carries the announcements of that family only.
type Peer struct {
	Address netip.Addr
	// ASN is the router's AS: 1..4294967295 except 23456. Required.
	ASN uint32
	// HoldTime is proposed in the OPEN (RFC 4271 §4.2); the session uses
	// the smaller of both sides'. 0 means DefaultHoldTime; otherwise whole
	// seconds in 3s..65535s. Keepalives go every third of it.
	HoldTime time.Duration
	// Password enables TCP MD5 signatures (RFC 2385) with this key; ""
	// means none. At most 80 bytes (Linux's TCP_MD5SIG_MAXKEYLEN).
	Password string
	// BFD asks for a BFD session (RFC 5880) beside the BGP one. Not
	// available: Validate refuses true. GoBGP v4.8's BFD resets the
	// session as soon as it is up against FRR 8.4's bfdd (it takes the
	// router's re-initialised BFD session for a failure); a 3s hold time
	// detects a dead node in 3s meanwhile.
	BFD bool
	// Port is the router's BGP port; 0 means DefaultPort.
	Port uint16
	// RestartTime is the graceful-restart Restart Time this node announces
	// (RFC 4724 §3): how long the router keeps its routes while an upgraded
	// gitedge re-opens the session. It is also how long a crashed gitedge's
	// routes linger once the router sees the connection close. 0 means the
	// hold time; otherwise whole seconds in 1s..4095s.
	RestartTime time.Duration
}

// Announcement is one prefix every node announces while healthy.
type Announcement struct {
	// Prefix is announced as written; it must be canonical (no host bits
	// set). It is made local on the node (LinuxHost), so the node accepts
	// the traffic the routers send it.
	Prefix netip.Prefix
	// TrackProxy withdraws the prefix while this node's proxy is unhealthy
	// (Speaker.SetProxyHealthy).
	TrackProxy bool
	// Communities are attached to the route (RFC 1997), e.g. to make the
	// router prefer some nodes through its own policy.
	Communities []Community
	// MED maps node names to the MULTI_EXIT_DISC they send (RFC 4271
	// §5.1.4): the router prefers the lowest, so different values make
	// active/standby and equal values (or none) active-active. A node not in
	// it sends no MED.
	MED map[string]uint32
}

// Route is what this node announces for one Announcement: the prefix and
// its attributes, resolved for the node.
type Route struct {
	Prefix      netip.Prefix
	MED         uint32
	HasMED      bool
	Communities []Community
}

// Equal reports whether two configs are identical. It compares every
// field by reflection, so a field added later is compared without anyone
// remembering to; nil and empty slices and maps are equal.
func (c Config) Equal(o Config) bool {
	return deepEqual(reflect.ValueOf(c), reflect.ValueOf(o))
}

// Equal reports whether two peers are identical (see Config.Equal).
func (p Peer) Equal(o Peer) bool { return deepEqual(reflect.ValueOf(p), reflect.ValueOf(o)) }

// Equal reports whether two routes are identical (see Config.Equal).
func (r Route) Equal(o Route) bool { return deepEqual(reflect.ValueOf(r), reflect.ValueOf(o)) }

// deepEqual is reflect.DeepEqual for plain config data, except that a nil
// slice or map equals an empty one.
func deepEqual(a, b reflect.Value) bool {
	if a.Type() != b.Type() {
		return false
	}
	if a.Type().Comparable() && a.Kind() != reflect.Interface {
		return a.Equal(b)
	}
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !deepEqual(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if a.Len() != b.Len() {
			return false
		}
		for it := a.MapRange(); it.Next(); {
			bv := b.MapIndex(it.Key())
			if !bv.IsValid() || !deepEqual(it.Value(), bv) {
				return false
			}
		}
		return true
	case reflect.Struct:
		for i := range a.NumField() {
			if !deepEqual(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return deepEqual(a.Elem(), b.Elem())
	}
	return reflect.DeepEqual(a.Interface(), b.Interface())
}

// WithDefaults returns c with every unset field at its default: each
// peer's HoldTime, Port and RestartTime (and its Address unmapped from
// IPv4-in-IPv6). The one place defaults live;
// Validate and Apply call it, so callers need not.
func (c Config) WithDefaults() Config {
	c.Peers = slices.Clone(c.Peers)
	for i := range c.Peers {
		p := &c.Peers[i]
		p.Address = p.Address.Unmap()
		if p.HoldTime == 0 {
			p.HoldTime = DefaultHoldTime
		}
		if p.Port == 0 {
			p.Port = DefaultPort
		}
		if p.RestartTime == 0 {
			p.RestartTime = p.HoldTime
			if p.RestartTime > maxRestartTime {
				p.RestartTime = maxRestartTime
			}
		}
	}
	return c
}

// isZero reports whether c configures nothing (Node and NodeAddress
// aside): no bgp section.
func (c Config) isZero() bool {
	return c.ASN == 0 && len(c.RouterID) == 0 && len(c.Peers) == 0 && len(c.Announce) == 0
}

// LocalRouterID is this node's BGP identifier: its entry in RouterID, or
// else its address.
func (c Config) LocalRouterID() netip.Addr {
	if id, ok := c.RouterID[c.Node]; ok {
		return id
	}
	return c.NodeAddress
}

// Routes resolves the announcements for this node, in order.
func (c Config) Routes() []Route {
	out := make([]Route, 0, len(c.Announce))
	for _, a := range c.Announce {
		r := Route{Prefix: a.Prefix, Communities: slices.Clone(a.Communities)}
		r.MED, r.HasMED = a.MED[c.Node]
		out = append(out, r)
	}
	return out
}

// Field paths of the errors; the loader reports them at these places.
const pathRoot = "spec.bgp"

// Protocol limits.
const (
	asTrans        = 23456 // RFC 6793 §9
	minHoldTime    = 3 * time.Second
	maxHoldTime    = 65535 * time.Second
	maxRestartTime = 4095 * time.Second // a 12-bit field (RFC 4724 §3)
	maxPasswordLen = 80                 // TCP_MD5SIG_MAXKEYLEN
)

// FieldError is one validation problem. Field is the path from the
// document's root ("spec.bgp.peers[0].asn"), for the loader to locate.
type FieldError struct {
	Field, Msg string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Validate checks c (with defaults applied) and returns every problem, in
// field order. It checks what the section alone can tell; the loader adds
// what needs the rest of the Edge (that the node names in RouterID and
// MED are in spec.nodes, that default router IDs differ). When Node is
// set, it also checks that the node has a router ID.
func (c Config) Validate() []*FieldError {
	c = c.WithDefaults()
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: pathRoot + field, Msg: fmt.Sprintf(format, args...)})
	}
	if msg := checkASN(c.ASN); msg != "" {
		add(".asn", "%s", msg)
	}
	nodes := slices.Sorted(maps.Keys(c.RouterID))
	seenID := map[netip.Addr]string{}
	for _, n := range nodes {
		id := c.RouterID[n]
		f := ".routerID." + n
		switch {
		case !id.IsValid() || !id.Unmap().Is4():
			add(f, "a router ID is an IPv4 address (RFC 6286), got %v", orUnset(id))
		case id.Unmap().IsUnspecified():
			add(f, "0.0.0.0 is not a router ID")
		case seenID[id.Unmap()] != "":
			add(f, "%s is also node %s's router ID: each node needs its own", id, seenID[id.Unmap()])
		default:
			seenID[id.Unmap()] = n
		}
	}
	if _, explicit := c.RouterID[c.Node]; c.Node != "" && !explicit {
		if a := c.NodeAddress; !a.IsValid() || !a.Unmap().Is4() || a.Unmap().IsUnspecified() {
			add(".routerID", "node %s has no IPv4 address to use as its router ID (got %v): set routerID.%s", c.Node, orUnset(a), c.Node)
		}
	}
	if len(c.Peers) == 0 {
		add(".peers", "at least one peer is required: the router(s) to announce to")
	}
	seenPeer := map[netip.Addr]int{}
	families := map[bool]bool{} // is4 -> has a peer
	for i, p := range c.Peers {
		f := fmt.Sprintf(".peers[%d]", i)
		a := p.Address.Unmap()
		switch {
		case !a.IsValid():
			add(f+".address", "missing: the router's address")
		case a.IsUnspecified() || a.IsMulticast():
			add(f+".address", "%s is not a router's address", a)
		case c.NodeAddress.IsValid() && a == c.NodeAddress.Unmap():
			add(f+".address", "%s is this node's own address", a)
		default:
			if j, dup := seenPeer[a]; dup {
				add(f+".address", "%s is also peers[%d]", a, j)
			} else {
				seenPeer[a] = i
				families[a.Is4()] = true
			}
		}
		if msg := checkASN(p.ASN); msg != "" {
			add(f+".asn", "%s", msg)
		}
		if p.HoldTime < minHoldTime || p.HoldTime > maxHoldTime || p.HoldTime%time.Second != 0 {
			add(f+".holdTime", "must be whole seconds in 3s..65535s (RFC 4271 §4.2), got %s", p.HoldTime)
		}
		if p.RestartTime < time.Second || p.RestartTime > maxRestartTime || p.RestartTime%time.Second != 0 {
			add(f+".restartTime", "must be whole seconds in 1s..4095s (RFC 4724 §3), got %s", p.RestartTime)
		}
		if p.BFD {
			add(f+".bfd", "BFD is not available yet (GoBGP's BFD resets sessions against FRR's bfdd); use holdTime: 3s for a 3s detection")
		}
		if len(p.Password) > maxPasswordLen {
			add(f+".password", "at most %d bytes (a TCP MD5 key), got %d", maxPasswordLen, len(p.Password))
		}
	}
	seenPrefix := map[netip.Prefix]int{}
	for i, a := range c.Announce {
		f := fmt.Sprintf(".announce[%d]", i)
		p := a.Prefix
		switch {
		case !p.IsValid():
			add(f+".prefix", "missing: the prefix to announce, as 198.51.100.10/32")
			continue
		case p.Addr().Is4In6():
			add(f+".prefix", "write the IPv4 prefix %s as such", netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96))
			continue
		case p != p.Masked():
			add(f+".prefix", "%s has host bits set: announce %s/%d or the network %s", p, p.Addr(), p.Addr().BitLen(), p.Masked())
			continue
		}
		if j, dup := seenPrefix[p]; dup {
			add(f+".prefix", "%s is also announce[%d]", p, j)
		}
		seenPrefix[p] = i
		if len(c.Peers) > 0 && !families[p.Addr().Is4()] {
			fam := map[bool]string{true: "IPv4", false: "IPv6"}[p.Addr().Is4()]
			add(f+".prefix", "no %s peer to announce %s to: a session carries its own address family", fam, p)
		}
		for _, n := range slices.Sorted(maps.Keys(a.MED)) {
			if n == "" {
				add(f+".med", "an empty node name")
			}
		}
	}
	return errs
}

func checkASN(asn uint32) string {
	switch asn {
	case 0:
		return "missing: an AS number, 1..4294967295 (private: 64512..65534, 4200000000..4294967294)"
	case asTrans:
		return "23456 is AS_TRANS (RFC 6793), not a real AS"
	}
	return ""
}

func orUnset(a netip.Addr) any {
	if !a.IsValid() {
		return "nothing"
	}
	return a
}

// Community is a BGP community (RFC 1997): an AS number in the high 16
// bits and a value in the low 16, written "65010:100".
type Community uint32

// Well-known communities (RFC 1997, RFC 3765, RFC 7999, RFC 8326).
const (
	CommunityGracefulShutdown  Community = 0xFFFF0000
	CommunityBlackhole         Community = 0xFFFF029A
	CommunityNoExport          Community = 0xFFFFFF01
	CommunityNoAdvertise       Community = 0xFFFFFF02
	CommunityNoExportSubconfed Community = 0xFFFFFF03
	CommunityNoPeer            Community = 0xFFFFFF04
)

var wellKnown = []struct {
	name string
	c    Community
}{
	{"graceful-shutdown", CommunityGracefulShutdown},
	{"blackhole", CommunityBlackhole},
	{"no-export", CommunityNoExport},
	{"no-advertise", CommunityNoAdvertise},
	{"no-export-subconfed", CommunityNoExportSubconfed},
	{"no-peer", CommunityNoPeer},
}

// ParseCommunity reads "ASN:VALUE" (each 0..65535) or a well-known name
// (no-export, no-advertise, no-export-subconfed, no-peer, blackhole,
// graceful-shutdown).
func ParseCommunity(s string) (Community, error) {
	for _, w := range wellKnown {
		if strings.EqualFold(s, w.name) {
			return w.c, nil
		}
	}
	hi, lo, ok := strings.Cut(s, ":")
	if ok {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 == nil && err2 == nil {
			return Community(h<<16 | l), nil
		}
	}
	return 0, fmt.Errorf("community %q: expected ASN:VALUE with each part 0..65535 (as 65010:100) or no-export, no-advertise, no-export-subconfed, no-peer, blackhole, graceful-shutdown", s)
}

// String writes the community as ParseCommunity reads it.
func (c Community) String() string {
	for _, w := range wellKnown {
		if c == w.c {
			return w.name
		}
	}
	return fmt.Sprintf("%d:%d", uint32(c)>>16, uint32(c)&0xFFFF)
}

// MarshalText writes String.
func (c Community) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

// UnmarshalText reads what ParseCommunity reads.
func (c *Community) UnmarshalText(b []byte) error {
	v, err := ParseCommunity(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}
