// Package dataplane is gitedge's reverse proxy: plain HTTP/1.x routed by
// Host, TLS routed by SNI without terminating it, PROXY protocol v1/v2 to
// and from trusted peers, and hot reload by building a new routing table
// and swapping it in while the listening sockets and the connections stay.
// It parses only what routing and framing need and forwards heads as
// bytes, so a kept-alive request costs no allocation. Linux only (splice,
// IP_FREEBIND).
package dataplane
