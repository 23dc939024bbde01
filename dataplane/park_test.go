package dataplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"
)

// parkedCount is how many connections sit in the parker.
func (p *Proxy) parkedCount() int {
	p.park.mu.Lock()
	defer p.park.mu.Unlock()
	return len(p.park.held)
}

// goroutines counts the goroutines but the proxy's idle workers (a pool
// of at most maxIdleWorkers, which parked connections do not hold).
func goroutines(p *Proxy) int {
	return runtime.NumGoroutine() - int(p.workers.idle.Load())
}

// waitParked polls (bounded) until n connections are parked.
func waitParked(t *testing.T, p *Proxy, n int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for p.parkedCount() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections parked, want %d", p.parkedCount(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIdleParking: idle keep-alive connections give up their goroutines
// and come back when the client sends its next request, routed by the
// table current then.
func TestIdleParking(t *testing.T) {
	a := startHTTPBackend(t, "a", false)
	b := startHTTPBackend(t, "b", false)
	cfg := Config{
		Listeners: []Listener{httpListener("web", "a")},
		Backends:  []Backend{backendOf("a", srv("a1", a.addr)), backendOf("b", srv("b1", b.addr))},
	}
	p := startProxy(t, cfg)
	addr := p.addr(t, "web")
	const n = 50
	clients := make([]*client, n)
	for i := range clients {
		clients[i] = dialClient(t, addr)
		r := clients[i].do("GET", "x.test", "/", "")
		if body := bodyOf(r); r.StatusCode != 200 || !strings.HasPrefix(body, "a ") {
			t.Fatalf("first request: %d %q", r.StatusCode, body)
		}
	}
	waitParked(t, p.Proxy, n)
	// Parked connections hold no goroutine: far fewer than one each.
	if g := goroutines(p.Proxy); g > n {
		t.Logf("goroutines with %d parked connections: %d", n, g)
	}
	before := goroutines(p.Proxy)
	// A reload while they are parked: their next request takes the new table.
	cfg.Listeners = []Listener{cfg.Listeners[0]}
	cfg.Listeners[0].DefaultBackend = "b"
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		r := c.do("GET", "x.test", "/", "")
		if body := bodyOf(r); r.StatusCode != 200 || !strings.HasPrefix(body, "b ") {
			t.Fatalf("client %d after parking: %d %q", i, r.StatusCode, body)
		}
	}
	if before >= n {
		t.Errorf("%d goroutines while %d connections were parked", before, n)
	}
	// They park again, and a pipelined pair is served whole.
	waitParked(t, p.Proxy, n)
	c := clients[0]
	if _, err := io.WriteString(c.c, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := c.read("GET"); r.StatusCode != 200 {
			t.Fatalf("pipelined after parking: %d", r.StatusCode)
		}
	}
}

// TestParkedExpiry: a parked connection closes at its clientTimeout, and
// one that never sent a request at its requestTimeout.
func TestParkedExpiry(t *testing.T) {
	a := startHTTPBackend(t, "a", false)
	l := httpListener("web", "a")
	// Both park after idleLinger plus a sweep (70 ms) and must still be
	// parked together when waitParked looks, on a loaded machine too.
	l.ClientTimeout = 600 * time.Millisecond
	l.RequestTimeout = 700 * time.Millisecond
	p := startProxy(t, Config{Listeners: []Listener{l}, Backends: []Backend{backendOf("a", srv("a1", a.addr))}})
	addr := p.addr(t, "web")
	kept := dialClient(t, addr)
	if r := kept.do("GET", "x", "/", ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitParked(t, p.Proxy, 2)
	for name, c := range map[string]net.Conn{"kept-alive": kept.c, "silent": silent} {
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(waitFor))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("%s: read %d, %v; want EOF", name, n, err)
		}
		// Room for -race on a loaded machine: a connection never closed
		// meets the read deadline instead.
		if d := time.Since(start); d > waitFor/2 {
			t.Errorf("%s closed after %v", name, d)
		}
	}
	deadline := time.Now().Add(waitFor)
	for p.parkedCount() != 0 || p.metric(t, MetricActiveConns, map[string]string{"listener": "web"}) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("parked %d, active %v after expiry", p.parkedCount(), p.metric(t, MetricActiveConns, nil))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestParkedDrain: removing a listener closes its parked connections at
// once, and stopping the proxy with parked connections returns.
func TestParkedDrain(t *testing.T) {
	a := startHTTPBackend(t, "a", false)
	cfg := Config{
		Listeners: []Listener{httpListener("web", "a"), httpListener("other", "a")},
		Backends:  []Backend{backendOf("a", srv("a1", a.addr))},
	}
	p := startProxy(t, cfg)
	c := dialClient(t, p.addr(t, "web"))
	if r := c.do("GET", "x", "/", ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	o := dialClient(t, p.addr(t, "other"))
	if r := o.do("GET", "x", "/", ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	waitParked(t, p.Proxy, 2)
	cfg.Listeners = cfg.Listeners[1:]
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.c.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := c.c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("parked connection of a removed listener: %v, want EOF", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("closed after %v", d)
	}
	// The other listener's parked connection still serves.
	if r := o.do("GET", "x", "/", ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
}

// TestSilentTLSParking: TLS clients that send nothing park after the
// linger and hold no goroutine; one that then sends its ClientHello is
// routed by it, and one that stays silent is cut at inspectTimeout from
// its accept and counted as an inspect timeout.
func TestSilentTLSParking(t *testing.T) {
	be := startTLSBackend(t, "t1", false)
	l := tlsListener("tls", "tb")
	// Long enough for all to park, and for half to shake hands, before
	// it, under the race detector on a loaded machine.
	l.InspectTimeout = 2 * time.Second
	p := startProxy(t, Config{Listeners: []Listener{l}, Backends: []Backend{backendOf("tb", srv("t1", be))}})
	addr := p.addr(t, "tls")
	const n = 20
	g0 := goroutines(p.Proxy)
	start := time.Now() // before the dials: the proxy's clock starts at its accept
	conns := dialMany(t, addr, n)
	waitParked(t, p.Proxy, n)
	if g := goroutines(p.Proxy) - g0; g >= n {
		t.Errorf("%d more goroutines with %d silent connections parked", g, n)
	}
	for i, c := range conns[:n/2] {
		tc := tls.Client(c, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(waitFor))
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "t1 sni=a.test") {
			t.Fatalf("connection %d, parked before its ClientHello: %q %v", i, line, err)
		}
	}
	for i, c := range conns[n/2:] {
		c.SetReadDeadline(time.Now().Add(waitFor))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("silent connection %d: %v, want EOF", i, err)
		}
	}
	// The upper bound only tells a cut at the timeout from none.
	if el := time.Since(start); el < l.InspectTimeout-100*time.Millisecond || el > l.InspectTimeout+waitFor/2 {
		t.Errorf("the silent connections closed after %v, inspectTimeout %v", el, l.InspectTimeout)
	}
	if v := p.metric(t, MetricListenerErrors, map[string]string{"listener": "tls", "kind": errKindInspect}); v != n/2 {
		t.Errorf("inspect_timeout %v, want %d", v, n/2)
	}
}

// TestIdleWithoutParker: when the parker cannot start (its epoll set
// failed, as in a flood of connections), the sweeper stops asking idle
// connections to park, and they wait with their goroutines: a kept-alive
// http client sends its next request after 600 ms idle, a tls client
// its ClientHello after 600 ms silent, and both are served.
func TestIdleWithoutParker(t *testing.T) {
	cases := []struct {
		name string
		// start makes the proxy's config; open connects (and makes a
		// first request) and returns what the client does after its
		// idle time.
		start func(t *testing.T) Config
		open  func(t *testing.T, addr string) (after func())
	}{
		{"http", func(t *testing.T) Config {
			be := startHTTPBackend(t, "a", false)
			return Config{Listeners: []Listener{httpListener("web", "a")}, Backends: []Backend{backendOf("a", srv("a1", be.addr))}}
		}, func(t *testing.T, addr string) func() {
			cl := dialClient(t, addr)
			if r := cl.do("GET", "x.test", "/", ""); r.StatusCode != 200 {
				t.Fatalf("first request: %d", r.StatusCode)
			}
			return func() {
				if r := cl.do("GET", "x.test", "/", ""); r.StatusCode != 200 {
					t.Fatalf("kept-alive request after 600 ms idle with no parker: %d", r.StatusCode)
				}
			}
		}},
		{"tls", func(t *testing.T) Config {
			be := startTLSBackend(t, "t1", false)
			return Config{Listeners: []Listener{tlsListener("web", "tb")}, Backends: []Backend{backendOf("tb", srv("t1", be))}}
		}, func(t *testing.T, addr string) func() {
			c := dialMany(t, addr, 1)[0]
			return func() {
				tc := tls.Client(c, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
				tc.SetDeadline(time.Now().Add(waitFor))
				line, err := bufio.NewReader(tc).ReadString('\n')
				if err != nil || !strings.HasPrefix(line, "t1 sni=a.test") {
					t.Fatalf("ClientHello after 600 ms silent with no parker: %q %v", line, err)
				}
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, tc.start(t))
			p.park.mu.Lock()
			p.park.closed = true // as park does when it cannot start
			p.park.failed.Store(true)
			p.park.mu.Unlock()
			p.linger.Store(int64(time.Millisecond))
			after := tc.open(t, p.addr(t, "web"))
			time.Sleep(50 * time.Millisecond) // idle well past the linger
			if next := p.sweepIdle(); next != 0 {
				t.Errorf("a sweep with no parker asks to sweep again in %v, want 0 (nothing to ask)", next)
			}
			// Were it asked to park, it would be at every sweep (20 ms
			// apart at most while it waits).
			time.Sleep(600 * time.Millisecond)
			after()
			if n := p.parkedCount(); n != 0 {
				t.Errorf("%d connections parked with no parker", n)
			}
		})
	}
}

// TestTunnelParking: idle passthrough tunnels give up both directions'
// goroutines, carry bytes again when either side sends, and still end at
// their idle timeout or when their listener is removed.
func TestTunnelParking(t *testing.T) {
	be := startTLSBackend(t, "t1", false)
	b := backendOf("tb", srv("t1", be))
	// Long enough for twenty handshakes through the proxy under the race
	// detector on a loaded machine (up to 250 ms each seen): all tunnels
	// must be alive and parked at once.
	b.IdleTimeout = 4 * time.Second
	l := tlsListener("tls", "tb")
	l.DrainTimeout = 300 * time.Millisecond
	cfg := Config{Listeners: []Listener{l, httpListener("web", "tb")}, Backends: []Backend{b}}
	p := startProxy(t, cfg)
	// Tunnels park from their birth here (TestYoungTunnel covers the
	// first second): with twenty handshakes under the race detector on a
	// loaded machine, the first tunnels could otherwise reach their idle
	// timeout before the last ones are old enough to park.
	p.young.Store(-1)
	addr := p.addr(t, "tls")
	const n = 20
	type tc struct {
		br *bufio.Reader
		c  io.Writer
	}
	var conns []tc
	g0 := goroutines(p.Proxy)
	for range n {
		line, c := tlsHello(t, addr, "a.test")
		if !strings.HasPrefix(line, "t1 ") {
			t.Fatalf("greeting %q", line)
		}
		conns = append(conns, tc{bufio.NewReader(c), c})
	}
	waitParked(t, p.Proxy, 2*n)
	g := goroutines(p.Proxy)
	// Bytes both ways on every parked tunnel.
	for i, c := range conns {
		fmt.Fprintf(c.c, "ping %d\n", i)
		c.c.(*tls.Conn).SetReadDeadline(time.Now().Add(waitFor))
		got, err := c.br.ReadString('\n')
		if err != nil || got != fmt.Sprintf("t1: ping %d\n", i) {
			t.Fatalf("tunnel %d after parking: %q %v", i, got, err)
		}
	}
	// The backend's handlers, in this process, are n of them; tunnels
	// that kept their goroutines would add 2n more.
	if g-g0 >= 2*n {
		t.Errorf("%d more goroutines with %d tunnels parked", g-g0, n)
	}
	// They park again and end at the idle timeout.
	waitParked(t, p.Proxy, 2*n)
	start := time.Now()
	for i, c := range conns {
		c.c.(*tls.Conn).SetReadDeadline(time.Now().Add(waitFor))
		if _, err := c.br.ReadString('\n'); err == nil {
			t.Fatalf("tunnel %d still open", i)
		}
	}
	if d := time.Since(start); d > 7*time.Second {
		t.Errorf("idle tunnels ended after %v, idle timeout 4s", d)
	}
	deadline := time.Now().Add(waitFor)
	for p.parkedCount() != 0 || p.metric(t, MetricActiveConns, map[string]string{"listener": "tls"}) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("parked %d, active %v after the idle timeout", p.parkedCount(), p.metric(t, MetricActiveConns, map[string]string{"listener": "tls"}))
		}
		time.Sleep(time.Millisecond)
	}
	// A parked tunnel of a removed listener is cut at its drain timeout.
	line, c := tlsHello(t, addr, "a.test")
	if !strings.HasPrefix(line, "t1 ") {
		t.Fatalf("greeting %q", line)
	}
	waitParked(t, p.Proxy, 2)
	cfg.Listeners = cfg.Listeners[1:]
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(waitFor))
	if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatal("tunnel of a removed listener still open")
	}
}

// TestYoungTunnel: outside a crowd, a tunnel keeps its goroutines for its
// first second (a handshake's round trips would otherwise each cost a park
// and a wake-up), and parks once it is older.
func TestYoungTunnel(t *testing.T) {
	be := startTLSBackend(t, "t1", false)
	cfg := Config{Listeners: []Listener{tlsListener("tls", "tb")}, Backends: []Backend{backendOf("tb", srv("t1", be))}}
	p := startProxy(t, cfg)
	// Young for 3s here, not 1s: the handshake below may take a good part
	// of a second under the race detector on a loaded machine, and the
	// tunnel must still be young when the test looks at it.
	const young = 3 * tunnelYoung
	p.young.Store(int64(young))
	// Before the dial: the tunnel is born later, so its age is at most
	// time.Since(born).
	born := time.Now()
	line, _ := tlsHello(t, p.addr(t, "tls"), "a.test")
	if !strings.HasPrefix(line, "t1 ") {
		t.Fatalf("greeting %q", line)
	}
	// Both directions wait idle, well past tunnelLinger, and stay unparked
	// while the tunnel is young.
	for time.Since(born) < young/2 {
		if n := p.parkedCount(); n != 0 {
			t.Fatalf("%d directions of a tunnel %v old parked", n, time.Since(born))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.lingering.Load(); n != 2 {
		t.Fatalf("%d goroutines waiting idle, want the tunnel's 2", n)
	}
	waitParked(t, p.Proxy, 2)
	if age := time.Since(born); age < young-100*time.Millisecond {
		t.Errorf("a tunnel %v old parked", age)
	}
}
