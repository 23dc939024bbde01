package dataplane

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// fixedBackend answers every request head with the same small response,
// without allocating, so a benchmark's allocations are the proxy's.
func fixedBackend(tb testing.TB) netip.AddrPort {
	resp := []byte("HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\na1\n")
	return rawServer(tb, func(c net.Conn) {
		buf := make([]byte, 4096)
		n := 0
		for {
			r, err := c.Read(buf[n:])
			if err != nil {
				return
			}
			n += r
			for {
				i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
				if i < 0 {
					break
				}
				if _, err := c.Write(resp); err != nil {
					return
				}
				n = copy(buf, buf[i+4:n])
			}
		}
	})
}

// benchConfig routes nRoutes hosts (h0.test ...) to one backend.
func benchConfig(backend netip.AddrPort, nRoutes int) Config {
	cfg := Config{
		Listeners: []Listener{httpListener("http", "be")},
		Backends:  []Backend{backendOf("be", srv("s1", backend))},
	}
	cfg.Routes = make([]Route, nRoutes)
	for i := range cfg.Routes {
		cfg.Routes[i] = routeHTTP(fmt.Sprintf("r%d", i), "be", fmt.Sprintf("h%d.test", i), fmt.Sprintf("*.w%d.test", i))
	}
	return cfg
}

// benchKeepAlive sends b.N requests over 16 kept-alive connections, dialed
// and warmed up before the clock starts so only steady state is measured.
func benchKeepAlive(b *testing.B, nRoutes int, host string, parkAfter time.Duration) {
	be := fixedBackend(b)
	p := startProxy(b, benchConfig(be, nRoutes), func(o *Options) { o.Logger = nil })
	p.linger.Store(int64(parkAfter))
	addr := p.addr(b, "http")
	req := []byte("GET / HTTP/1.1\r\nHost: " + host + "\r\nUser-Agent: bench\r\n\r\n")
	const respLen = 80
	const parallel = 16
	conns := make(chan net.Conn, parallel)
	buf := make([]byte, respLen)
	all := make([]net.Conn, 0, parallel)
	for range parallel {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		all = append(all, c)
	}
	// Warm up with every connection busy at once, so the server pool holds
	// a connection per client before the clock starts (dialling one costs
	// allocations that are not the keep-alive path's).
	for range 3 {
		for _, c := range all {
			if _, err := c.Write(req); err != nil {
				b.Fatal(err)
			}
		}
		for _, c := range all {
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, c := range all {
		conns <- c
	}
	b.ReportAllocs()
	b.SetParallelism(parallel)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := <-conns
		defer func() { conns <- c }()
		buf := make([]byte, respLen)
		n := 0
		for pb.Next() {
			n++
			if _, err := c.Write(req); err != nil {
				b.Error(err)
				return
			}
			if _, err := io.ReadFull(c, buf); err != nil {
				b.Error(err)
				return
			}
		}
		if n > 0 && !bytes.HasSuffix(buf, []byte("a1\n")) {
			b.Errorf("unexpected response %q", buf)
		}
	})
}

// BenchmarkKeepAlive is the `ka` path: small requests on kept-alive client
// connections, pooled server connections. Run with -benchmem: it must
// report 0 allocs/op. routes=10000 must stay within 5% of routes=10.
func BenchmarkKeepAlive(b *testing.B) {
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("routes=%d", n), func(b *testing.B) {
			benchKeepAlive(b, n, fmt.Sprintf("h%d.test", n/2), 0)
		})
	}
	b.Run("routes=10000/wildcard", func(b *testing.B) {
		benchKeepAlive(b, 10000, "x.y.w5000.test", 0)
	})
}

// TestKeepAliveNoAllocs pins the zero-allocation keep-alive path in the
// test suite, so a regression fails `make test`, not only a benchmark.
// Connections must stay busy for that: under the race detector on a
// loaded machine a client's think time can pass the 5 ms after which an
// idle connection parks (and parking costs net's RawConn one error value),
// so the parking delay is lifted here; park_test.go covers parking. It
// runs on one P, as the proxy is measured (GOMAXPROCS=1): with two, the
// race detector's slowness makes the free lists' mutexes contended, and a
// contended mutex allocates its waiter record after a GC emptied the
// runtime's cache (0.07 allocs per request seen before this test ran on
// one P).
func TestKeepAliveNoAllocs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	res := testing.Benchmark(func(b *testing.B) { benchKeepAlive(b, 10, "h5.test", time.Minute) })
	if res.N == 0 {
		t.Fatal("benchmark did not run")
	}
	// Let a stray allocation (a timer, a GC-emptied pool) pass: the bound
	// is far below one allocation per request.
	if per := float64(res.MemAllocs) / float64(res.N); per > 0.05 {
		t.Fatalf("%.3f allocations per kept-alive request (%d over %d), want 0", per, res.MemAllocs, res.N)
	}
}
