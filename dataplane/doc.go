// Package dataplane is gitedge's reverse proxy: plain HTTP/1.x routed by
// Host, TLS routed by SNI without terminating it, PROXY protocol v1/v2 to
// servers and from trusted peers, and hot reload without dropping a
// connection. Linux only (splice, IP_FREEBIND).
//
// # Speed
//
// A request is parsed once (httphead: request line, Host and the framing
// fields) and its head is forwarded as the bytes that came, rebuilt only
// when hop-by-hop or forwarding fields must change. Server connections are
// kept alive in a per-server pool (a PROXY-protocol connection stays with
// its client instead). Buffers come from a free list only while bytes are
// in flight, and callbacks are bound once per connection: a kept-alive
// request allocates nothing (BenchmarkKeepAlive). Bodies past the first
// buffer, upgraded connections and TLS tunnels are copied through a pooled
// buffer until a read fills it, then move with splice(2) through pipes
// taken only while bytes flow. New connections and tunnel directions run
// on pooled worker goroutines; connections are accepted and servers
// dialled with raw syscalls, and every per-connection call the runtime
// would see is raw or batched (a finished tunnel's closes), since such a
// call wakes the runtime's monitor thread (BenchmarkNewConn: allocations,
// CPU, context switches and system calls per connection).
//
// # Idle connections
//
// A keep-alive connection idle for 50 ms, or a tunnel direction idle for
// 20 ms once its tunnel is a second old (either 5 ms when hundreds wait
// at once), parks: its goroutine ends and its buffers go back, and the
// socket waits in an epoll set of the proxy's own (EPOLLONESHOT), itself
// waited on through Go's netpoller by one goroutine that hands readable
// sockets to workers (park.go). An idle HTTP connection then costs about
// 1.7 KB and an idle passthrough connection about 3.2 KB (docs/benchmarks.md).
//
// # Reload
//
// Apply compiles a whole generation (routers, backends over server state
// that outlives generations) and opens new listeners before anything
// changes; a failure leaves the running generation untouched. Each
// listening socket, keyed by its bind, then gets the new listener config
// with one atomic store. A connection reads that config when it is accepted
// and again before each request, so a request in flight finishes on the
// server it started on and the next request uses the new routes. Removed
// listeners stop accepting at once and drain within their drainTimeout.
//
// # Loops
//
// A server that is the proxy's own listener is never dialled (508 in http
// mode, a close in tls mode); every forwarded request carries the proxy's
// random id in a Gitedge-Hop field, and a request that comes back with it
// is answered 508; a tunnel connection whose source is one of the proxy's
// own dials is closed. So a looping config costs one hop, not every
// descriptor (loop.go, MetricLoops).
package dataplane
