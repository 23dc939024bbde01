package bgp

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/gitedge/gitedge/internal/testkit/nstest"
)

// localRoutes lists the local-table routes on lo with their protocol.
func localRoutes(t *testing.T) []string {
	t.Helper()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	rl, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_LOCAL, LinkIndex: lo.Attrs().Index},
		netlink.RT_FILTER_TABLE|netlink.RT_FILTER_OIF)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rl {
		if r.Dst == nil || r.Protocol == unix.RTPROT_KERNEL {
			continue
		}
		out = append(out, r.Dst.String()+" proto "+r.Protocol.String())
	}
	slices.Sort(out)
	return out
}

// LinuxHost on the real kernel: the prefixes become local routes on lo
// (marked proto 240), traffic to any address in them is delivered
// locally, a route removed by hand comes back, a foreign local route is
// never touched, and Close removes exactly its own.
func TestLinuxHost(t *testing.T) {
	if !nstest.InNetns(t) {
		return
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	foreign := &netlink.Route{LinkIndex: lo.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("203.0.113.0/24")),
		Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Protocol: unix.RTPROT_BOOT}
	if err := netlink.RouteAdd(foreign); err != nil {
		t.Fatal(err)
	}
	h := &LinuxHost{}
	want := func(routes ...string) {
		t.Helper()
		routes = append(routes, "203.0.113.0/24 proto boot")
		slices.Sort(routes)
		if got := localRoutes(t); !slices.Equal(got, routes) {
			t.Fatalf("local routes on lo:\n%v\nwant\n%v", got, routes)
		}
	}
	if err := h.SetPrefixes([]netip.Prefix{pfx1, pfx2, pfx6}); err != nil {
		t.Fatal(err)
	}
	want("198.51.100.10/32 proto 240", "198.51.100.16/28 proto 240", "2001:db8:100::10/128 proto 240")
	if err := h.SetPrefixes([]netip.Prefix{pfx1, pfx2, pfx6}); err != nil {
		t.Fatalf("again: %v", err)
	}
	want("198.51.100.10/32 proto 240", "198.51.100.16/28 proto 240", "2001:db8:100::10/128 proto 240")

	// Delivered locally: an IPv4 listener binds the host prefix without
	// IP_FREEBIND, and a connection to an address inside the /28 arrives.
	ln, err := net.Listen("tcp4", "198.51.100.10:0")
	if err != nil {
		t.Fatalf("binding an announced address: %v", err)
	}
	defer ln.Close()
	ln2, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	c, err := net.DialTimeout("tcp4", net.JoinHostPort("198.51.100.20", strconv.Itoa(ln2.Addr().(*net.TCPAddr).Port)), time.Second)
	if err != nil {
		t.Fatalf("connecting to an address inside the /28: %v", err)
	}
	c.Close()

	if err := netlink.RouteDel(localRoute(lo.Attrs().Index, pfx2)); err != nil {
		t.Fatal(err)
	}
	if err := h.SetPrefixes([]netip.Prefix{pfx1, pfx2, pfx6}); err != nil {
		t.Fatal(err)
	}
	want("198.51.100.10/32 proto 240", "198.51.100.16/28 proto 240", "2001:db8:100::10/128 proto 240")

	if err := h.SetPrefixes([]netip.Prefix{pfx6}); err != nil {
		t.Fatal(err)
	}
	want("2001:db8:100::10/128 proto 240")
	if err := h.SetPrefixes([]netip.Prefix{pfx1}); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	want()
	if err := h.Close(); err != nil {
		t.Fatalf("Close again: %v", err)
	}
}
