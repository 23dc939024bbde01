package bgp

import "net/netip"

// Host makes the announced prefixes local on the node, so the proxy can
// bind them and the kernel delivers their traffic to it. The Speaker
// calls it from one goroutine; every method is idempotent.
type Host interface {
	// SetPrefixes makes exactly these prefixes local: it adds the missing
	// ones and removes the others it holds, whatever happened to them in
	// between (a route deleted by hand comes back).
	SetPrefixes(ps []netip.Prefix) error
	// Close removes every prefix it holds.
	Close() error
}

// RouteProtocol marks the routes LinuxHost adds ("proto 240" in ip
// route), so it finds its own and never touches another's.
const RouteProtocol = 240
