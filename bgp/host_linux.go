package bgp

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// LinuxHost holds each prefix as a local route on lo, in the local table
// ("AnyIP": ip route add local PREFIX dev lo table local proto 240). The
// kernel then takes every address of the prefix as its own: traffic to
// it is delivered locally, and an IPv4 listener can bind it; an IPv6 one
// needs IPV6_FREEBIND, which gitedge's proxy sets (other software:
// net.ipv6.ip_nonlocal_bind=1).
//
// Why lo and a route rather than an address on a dummy interface: lo is
// on every node, while a dummy interface needs the kernel's dummy driver,
// which minimal and container kernels lack; the route's protocol marks
// what is gitedge's, for IPv4 and IPv6 alike (IPv6 addresses have no
// label), so removing what left the config never guesses; and one
// mechanism serves a /32 as well as a /28. `ip route show table local
// proto 240` (and `ip -6 …`) lists what the node holds.
type LinuxHost struct {
	// Interface is where the routes point; "" means lo.
	Interface string
}

var _ Host = (*LinuxHost)(nil)

// hostSystem is the Host of this system.
func hostSystem() Host { return &LinuxHost{} }

func (h *LinuxHost) name() string {
	if h.Interface == "" {
		return "lo"
	}
	return h.Interface
}

func (h *LinuxHost) link() (netlink.Link, error) {
	l, err := netlink.LinkByName(h.name())
	if err != nil {
		return nil, hostErr("interface "+h.name(), err)
	}
	return l, nil
}

func (h *LinuxHost) SetPrefixes(ps []netip.Prefix) error {
	l, err := h.link()
	if err != nil {
		return err
	}
	held, err := h.held()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range held {
		if !slices.Contains(ps, r.prefix) || r.ifindex != l.Attrs().Index {
			errs = append(errs, h.del(r))
		}
	}
	for _, p := range ps {
		if !slices.ContainsFunc(held, func(r heldRoute) bool { return r.prefix == p && r.ifindex == l.Attrs().Index }) {
			if err := netlink.RouteReplace(localRoute(l.Attrs().Index, p)); err != nil {
				errs = append(errs, hostErr(fmt.Sprintf("adding the local route %s on %s", p, h.name()), err))
			}
		}
	}
	return errors.Join(errs...)
}

func (h *LinuxHost) Close() error {
	held, err := h.held()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range held {
		errs = append(errs, h.del(r))
	}
	return errors.Join(errs...)
}

type heldRoute struct {
	prefix  netip.Prefix
	ifindex int
}

// held lists the local routes marked as ours, on any interface.
func (h *LinuxHost) held() ([]heldRoute, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL, Protocol: RouteProtocol}
	rl, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	if err != nil {
		return nil, hostErr("listing the local routes", err)
	}
	var out []heldRoute
	for _, r := range rl {
		if r.Dst == nil || r.Type != unix.RTN_LOCAL {
			continue
		}
		if ip, ok := netip.AddrFromSlice(r.Dst.IP); ok {
			ones, _ := r.Dst.Mask.Size()
			out = append(out, heldRoute{netip.PrefixFrom(ip.Unmap(), ones), r.LinkIndex})
		}
	}
	return out, nil
}

func (h *LinuxHost) del(r heldRoute) error {
	if err := netlink.RouteDel(localRoute(r.ifindex, r.prefix)); err != nil && !errors.Is(err, unix.ESRCH) {
		return hostErr(fmt.Sprintf("removing the local route %s", r.prefix), err)
	}
	return nil
}

func localRoute(ifindex int, p netip.Prefix) *netlink.Route {
	return &netlink.Route{LinkIndex: ifindex, Dst: ipNet(p), Table: unix.RT_TABLE_LOCAL,
		Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Protocol: RouteProtocol}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// hostErr adds what to do when the process may not change the network.
func hostErr(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s: %w: the process lacks CAP_NET_ADMIN; run gitedge as root or grant it CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
