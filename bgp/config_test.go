package bgp

import (
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   []string
	}{
		{"valid", func(*Config) {}, nil},
		{"valid without a node", func(c *Config) { c.Node, c.NodeAddress = "", netip.Addr{} }, nil},
		{"no ASN", func(c *Config) { c.ASN = 0 }, []string{
			"spec.bgp.asn: missing: an AS number, 1..4294967295 (private: 64512..65534, 4200000000..4294967294)"}},
		{"AS_TRANS", func(c *Config) { c.ASN = 23456; c.Peers[0].ASN = 23456 }, []string{
			"spec.bgp.asn: 23456 is AS_TRANS (RFC 6793), not a real AS",
			"spec.bgp.peers[0].asn: 23456 is AS_TRANS (RFC 6793), not a real AS"}},
		{"router IDs", func(c *Config) {
			c.RouterID = map[string]netip.Addr{"lb-0": netip.MustParseAddr("192.0.2.9"), "lb-1": netip.MustParseAddr("192.0.2.9"),
				"lb-2": netip.MustParseAddr("2001:db8::9"), "lb-3": netip.MustParseAddr("0.0.0.0"), "lb-4": {}}
		}, []string{
			"spec.bgp.routerID.lb-1: 192.0.2.9 is also node lb-0's router ID: each node needs its own",
			"spec.bgp.routerID.lb-2: a router ID is an IPv4 address (RFC 6286), got 2001:db8::9",
			"spec.bgp.routerID.lb-3: 0.0.0.0 is not a router ID",
			"spec.bgp.routerID.lb-4: a router ID is an IPv4 address (RFC 6286), got nothing"}},
		{"an IPv6 node without a router ID", func(c *Config) { c.NodeAddress = netip.MustParseAddr("2001:db8::11") }, []string{
			"spec.bgp.routerID: node lb-0 has no IPv4 address to use as its router ID (got 2001:db8::11): set routerID.lb-0"}},
		{"an IPv6 node with a router ID", func(c *Config) {
			c.NodeAddress = netip.MustParseAddr("2001:db8::11")
			c.RouterID = map[string]netip.Addr{"lb-0": netip.MustParseAddr("192.0.2.11")}
		}, nil},
		{"no peers", func(c *Config) { c.Peers = nil }, []string{
			"spec.bgp.peers: at least one peer is required: the router(s) to announce to"}},
		{"peer addresses", func(c *Config) {
			c.Peers = []Peer{{ASN: 1}, {Address: netip.MustParseAddr("0.0.0.0"), ASN: 1}, {Address: netip.MustParseAddr("192.0.2.11"), ASN: 1},
				{Address: peerA, ASN: 1}, {Address: peerA, ASN: 1}}
		}, []string{
			"spec.bgp.peers[0].address: missing: the router's address",
			"spec.bgp.peers[1].address: 0.0.0.0 is not a router's address",
			"spec.bgp.peers[2].address: 192.0.2.11 is this node's own address",
			"spec.bgp.peers[4].address: 192.0.2.1 is also peers[3]"}},
		{"peer timers and keys", func(c *Config) {
			c.Peers[0].HoldTime = 2 * time.Second
			c.Peers[0].RestartTime = 4096 * time.Second
			c.Peers[0].Password = strings.Repeat("k", 81)
			c.Peers[0].ASN = 0
		}, []string{
			"spec.bgp.peers[0].asn: missing: an AS number, 1..4294967295 (private: 64512..65534, 4200000000..4294967294)",
			"spec.bgp.peers[0].holdTime: must be whole seconds in 3s..65535s (RFC 4271 §4.2), got 2s",
			"spec.bgp.peers[0].restartTime: must be whole seconds in 1s..4095s (RFC 4724 §3), got 1h8m16s",
			"spec.bgp.peers[0].password: at most 80 bytes (a TCP MD5 key), got 81"}},
		{"fractional hold time", func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, []string{
			"spec.bgp.peers[0].holdTime: must be whole seconds in 3s..65535s (RFC 4271 §4.2), got 3.5s",
			"spec.bgp.peers[0].restartTime: must be whole seconds in 1s..4095s (RFC 4724 §3), got 3.5s"}},
		{"a long hold time caps the default restart time", func(c *Config) { c.Peers[0].HoldTime = 5000 * time.Second }, nil},
		{"BFD", func(c *Config) { c.Peers[0].BFD = true }, []string{
			"spec.bgp.peers[0].bfd: BFD is not available yet (GoBGP's BFD resets sessions against FRR's bfdd); use holdTime: 3s for a 3s detection"}},
		{"prefixes", func(c *Config) {
			c.Announce = []Announcement{{}, {Prefix: netip.MustParsePrefix("198.51.100.10/24")}, {Prefix: pfx1}, {Prefix: pfx1},
				{Prefix: pfx6}, {Prefix: netip.MustParsePrefix("::ffff:198.51.100.1/128")}, {Prefix: pfx2, MED: map[string]uint32{"": 1}}}
		}, []string{
			"spec.bgp.announce[0].prefix: missing: the prefix to announce, as 198.51.100.10/32",
			"spec.bgp.announce[1].prefix: 198.51.100.10/24 has host bits set: announce 198.51.100.10/32 or the network 198.51.100.0/24",
			"spec.bgp.announce[3].prefix: 198.51.100.10/32 is also announce[2]",
			"spec.bgp.announce[4].prefix: no IPv6 peer to announce 2001:db8:100::10/128 to: a session carries its own address family",
			"spec.bgp.announce[5].prefix: write the IPv4 prefix 198.51.100.1/32 as such",
			"spec.bgp.announce[6].med: an empty node name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := baseConfig()
			tt.modify(&c)
			var got []string
			for _, fe := range c.Validate() {
				got = append(got, fe.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("Validate:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	mapped := netip.MustParseAddr("::ffff:192.0.2.1")
	c := Config{Peers: []Peer{{Address: mapped}, {HoldTime: 3 * time.Second, Port: 1179, RestartTime: 10 * time.Second}, {HoldTime: time.Hour * 2}}}
	d := c.WithDefaults()
	want := []Peer{
		{Address: peerA, HoldTime: DefaultHoldTime, Port: DefaultPort, RestartTime: DefaultHoldTime},
		{HoldTime: 3 * time.Second, Port: 1179, RestartTime: 10 * time.Second},
		{HoldTime: 2 * time.Hour, Port: DefaultPort, RestartTime: maxRestartTime},
	}
	if !reflect.DeepEqual(d.Peers, want) {
		t.Errorf("WithDefaults: %+v, want %+v", d.Peers, want)
	}
	if c.Peers[0].HoldTime != 0 {
		t.Error("WithDefaults changed its receiver's peers")
	}
	if !d.WithDefaults().Equal(d) {
		t.Error("WithDefaults is not idempotent")
	}
}

func TestResolve(t *testing.T) {
	c := baseConfig()
	if id := c.LocalRouterID(); id != c.NodeAddress {
		t.Errorf("default router ID %v", id)
	}
	c.RouterID = map[string]netip.Addr{"lb-0": netip.MustParseAddr("192.0.2.99")}
	if id := c.LocalRouterID(); id.String() != "192.0.2.99" {
		t.Errorf("router ID %v", id)
	}
	rs := c.Routes()
	if len(rs) != 2 || !rs[0].HasMED || rs[0].MED != 10 || rs[1].HasMED {
		t.Errorf("routes for lb-0: %+v", rs)
	}
	c.Node = "lb-9"
	if rs := c.Routes(); rs[0].HasMED {
		t.Errorf("a node without a MED got one: %+v", rs[0])
	}
}

// Equal compares every field, however deep: changing any one makes two
// configs differ. The walk finds the fields by reflection, so a field
// added later is covered without editing this test.
func TestEqualCoversEveryField(t *testing.T) {
	base := baseConfig()
	base.RouterID = map[string]netip.Addr{"lb-0": netip.MustParseAddr("192.0.2.99")}
	n := 0
	flipEach(reflect.ValueOf(&base).Elem(), "Config", func(path string, undo func()) {
		n++
		fresh := baseConfig()
		fresh.RouterID = map[string]netip.Addr{"lb-0": netip.MustParseAddr("192.0.2.99")}
		if base.Equal(fresh) {
			t.Errorf("changing %s leaves the configs Equal", path)
		}
		undo()
		if !base.Equal(fresh) {
			t.Fatalf("undoing %s did not restore the config", path)
		}
	})
	if n < 15 {
		t.Fatalf("only %d fields flipped", n)
	}
	// nil and empty are the same.
	a, b := baseConfig(), baseConfig()
	a.RouterID, b.RouterID = nil, map[string]netip.Addr{}
	a.Announce[1].Communities, b.Announce[1].Communities = nil, []Community{}
	if !a.Equal(b) {
		t.Error("nil and empty differ")
	}
}

// flipEach changes every leaf field reachable from v in turn, calls f,
// and lets f undo it. Slices and maps are flipped by changing their first
// element's leaves, and also by growing them.
func flipEach(v reflect.Value, path string, f func(path string, undo func())) {
	switch v.Kind() {
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[netip.Addr]() || v.Type() == reflect.TypeFor[netip.Prefix]() {
			old := reflect.ValueOf(v.Interface())
			var nv any = netip.MustParseAddr("203.0.113.1")
			if v.Type() == reflect.TypeFor[netip.Prefix]() {
				nv = netip.MustParsePrefix("203.0.113.0/24")
			}
			v.Set(reflect.ValueOf(nv))
			f(path, func() { v.Set(old) })
			return
		}
		for i := range v.NumField() {
			flipEach(v.Field(i), path+"."+v.Type().Field(i).Name, f)
		}
	case reflect.Slice:
		old := reflect.ValueOf(v.Interface())
		v.Set(reflect.Append(reflect.MakeSlice(v.Type(), 0, v.Len()+1), append(sliceValues(v), reflect.Zero(v.Type().Elem()))...))
		f(path+"+", func() { v.Set(old) })
		if old.Len() > 0 {
			cp := reflect.MakeSlice(v.Type(), old.Len(), old.Len())
			reflect.Copy(cp, old)
			v.Set(cp)
			flipEach(cp.Index(0), path+"[0]", func(p string, undo func()) { f(p, undo) })
			v.Set(old)
		}
	case reflect.Map:
		old := reflect.ValueOf(v.Interface())
		cp := reflect.MakeMap(v.Type())
		for it := old.MapRange(); it.Next(); {
			cp.SetMapIndex(it.Key(), it.Value())
		}
		cp.SetMapIndex(reflect.ValueOf("zz-new"), reflect.Zero(v.Type().Elem()))
		v.Set(cp)
		f(path+"+", func() { v.Set(old) })
		// Each value in turn, through an addressable copy.
		for _, k := range old.MapKeys() {
			elem := reflect.New(v.Type().Elem()).Elem()
			elem.Set(old.MapIndex(k))
			flipEach(elem, fmt.Sprintf("%s[%v]", path, k), func(p string, undo func()) {
				m := reflect.MakeMap(v.Type())
				for it := old.MapRange(); it.Next(); {
					m.SetMapIndex(it.Key(), it.Value())
				}
				m.SetMapIndex(k, elem)
				v.Set(m)
				f(p, func() { undo(); v.Set(old) })
			})
		}
	case reflect.String:
		old := v.String()
		v.SetString(old + "x")
		f(path, func() { v.SetString(old) })
	case reflect.Bool:
		old := v.Bool()
		v.SetBool(!old)
		f(path, func() { v.SetBool(old) })
	case reflect.Int, reflect.Int64:
		old := v.Int()
		v.SetInt(old + 1)
		f(path, func() { v.SetInt(old) })
	case reflect.Uint16, reflect.Uint32:
		old := v.Uint()
		v.SetUint(old + 1)
		f(path, func() { v.SetUint(old) })
	default:
		panic("flipEach: add the kind " + v.Kind().String() + " at " + path)
	}
}

func sliceValues(v reflect.Value) []reflect.Value {
	out := make([]reflect.Value, v.Len())
	for i := range out {
		out[i] = v.Index(i)
	}
	return out
}

func TestCommunity(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Community
		out  string
	}{
		{"65010:100", 65010<<16 | 100, "65010:100"},
		{"0:0", 0, "0:0"},
		{"65535:65535", 0xFFFFFFFF, "65535:65535"},
		{"no-export", CommunityNoExport, "no-export"},
		{"NO-ADVERTISE", CommunityNoAdvertise, "no-advertise"},
		{"65535:65281", CommunityNoExport, "no-export"},
		{"blackhole", CommunityBlackhole, "blackhole"},
	} {
		c, err := ParseCommunity(tt.in)
		if err != nil || c != tt.want || c.String() != tt.out {
			t.Errorf("ParseCommunity(%q) = %v (%d), %v; want %d, %s", tt.in, c, uint32(c), err, tt.want, tt.out)
		}
	}
	for _, bad := range []string{"", "65010", "65536:1", "1:65536", "-1:2", "a:b", "1:2:3", "no_export"} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
	var c Community
	if err := c.UnmarshalText([]byte("65010:7")); err != nil || c != 65010<<16|7 {
		t.Errorf("UnmarshalText: %v %v", c, err)
	}
}

// Whatever ParseCommunity accepts, String writes back in a form it reads
// to the same value.
func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65010:100", "no-export", "0:0", "65535:65535", "1:", ":1", "99999:1", "graceful-shutdown"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err != nil {
			return
		}
		back, err := ParseCommunity(c.String())
		if err != nil || back != c {
			t.Fatalf("%q → %v → %q → %v, %v", s, uint32(c), c.String(), uint32(back), err)
		}
	})
}
