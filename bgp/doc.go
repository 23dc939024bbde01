// Package bgp announces an edge's virtual IPs by BGP from every healthy
// node, so the upstream routers spread flows over the nodes (ECMP), the
// way kube-vip, MetalLB and Cilium do it. The BGP implementation is GoBGP
// (github.com/osrg/gobgp/v4), embedded as a library.
//
// A Speaker runs one node's part: a session to each configured router,
// the announced prefixes held as local routes on the node (Host), a
// route per prefix announced once the proxy is ready and withdrawn while
// it is unhealthy, a withdrawal with a bounded wait before a clean stop,
// and a hand-over of the sessions to the next process on an in-place
// upgrade by BGP graceful restart (RFC 4724).
//
// Errors name the peer or prefix once each and never the package: the
// caller says "bgp".
package bgp
