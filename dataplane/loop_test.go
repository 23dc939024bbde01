package dataplane

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// openFDs counts this process's open descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// fdBound is how many more descriptors than before a loop test may leave
// open: a handful of kept-alive and draining connections, never the
// thousands of an unbounded loop.
const fdBound = 40

// loopConfig has an http and a tls listener whose "loop.test" route goes
// to backends at loopHTTP and loopTLS, and whose other hosts go to working
// backends.
func loopConfig(bind Bind, good, goodTLS, loopHTTP, loopTLS netip.AddrPort) Config {
	web := httpListener("web", "good")
	web.Bind = bind
	tl := tlsListener("tls", "goodtls")
	tl.Bind = bind
	return Config{
		Listeners: []Listener{web, tl},
		Routes: []Route{
			routeHTTP("loop-http", "loop", "loop.test"),
			routeTLS("loop-tls", "looptls", "loop.test"),
		},
		Backends: []Backend{
			backendOf("good", srv("g1", good)),
			backendOf("goodtls", srv("t1", goodTLS)),
			backendOf("loop", srv("self", loopHTTP)),
			backendOf("looptls", srv("self", loopTLS)),
		},
	}
}

// startLoopRig starts a proxy whose loop backends point at what target
// returns for its own listeners' addresses.
func startLoopRig(t *testing.T, bind Bind, target func(web, tl netip.AddrPort) (netip.AddrPort, netip.AddrPort), opts ...func(*Options)) (*proxyRig, string, string) {
	t.Helper()
	good := startHTTPBackend(t, "good", false)
	goodTLS := startTLSBackend(t, "goodtls", false)
	dead := deadAddr(t)
	p := startProxy(t, loopConfig(bind, good.addr, goodTLS, dead, dead), opts...)
	web, _ := p.Addr("web")
	tl, _ := p.Addr("tls")
	// Dial the listeners on loopback, whatever they are bound to.
	web = netip.AddrPortFrom(loopback, web.Port())
	tl = netip.AddrPortFrom(loopback, tl.Port())
	lh, lt := target(web, tl)
	cfg := loopConfig(bind, good.addr, goodTLS, lh, lt)
	cfg.Listeners[0].Bind.Port, cfg.Listeners[1].Bind.Port = 0, 0
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	return p, web.String(), tl.String()
}

// checkLoop sends one request of each mode to loop.test and asserts what
// the client sees, that descriptors stay bounded, and that other routes
// still work.
func checkLoop(t *testing.T, p *proxyRig, web, tl string, wantHTTP int, kind string) {
	t.Helper()
	before := openFDs(t)
	start := time.Now()
	code, body := rawRequest(t, web, "GET / HTTP/1.1\r\nHost: loop.test\r\nConnection: close\r\n\r\n")
	if code != wantHTTP {
		t.Fatalf("http request to a looping backend: %d %q, want %d", code, body, wantHTTP)
	}
	if strings.Contains(strings.ToLower(body), "gitedge-hop") {
		t.Errorf("the hop mark reached the client: %q", body)
	}
	line, _ := tlsHello(t, tl, "loop.test")
	if line != "" {
		t.Fatalf("tls connection to a looping backend reached %q", line)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("loop answered after %v", d)
	}
	if code, body := get(t, web, "other.test", "/"); code != 200 || !strings.HasPrefix(body, "good ") {
		t.Fatalf("other route during a loop: %d %q", code, body)
	}
	if line, _ := tlsHello(t, tl, "other.test"); !strings.HasPrefix(line, "goodtls ") {
		t.Fatalf("other tls route during a loop: %q", line)
	}
	// Descriptors: the loop's connections close (poll: closing is async).
	deadline := time.Now().Add(waitFor)
	for {
		n := openFDs(t)
		if n <= before+fdBound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open after one looping request, %d before", n, before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := p.metric(t, MetricLoops, map[string]string{"kind": kind}); v < 1 {
		t.Errorf("%s{kind=%q} = %v, want >= 1", MetricLoops, kind, v)
	}
}

// TestLoopSelfServer is issue 10 defect 2: a backend whose server is the
// proxy's own listener answers 508 (http) or closes (tls) at once instead
// of looping until descriptors run out.
func TestLoopSelfServer(t *testing.T) {
	self := func(web, tl netip.AddrPort) (netip.AddrPort, netip.AddrPort) { return web, tl }
	anyAddr := func(web, tl netip.AddrPort) (netip.AddrPort, netip.AddrPort) {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), web.Port()), netip.AddrPortFrom(netip.IPv4Unspecified(), tl.Port())
	}
	tests := []struct {
		name   string
		bind   Bind
		target func(web, tl netip.AddrPort) (netip.AddrPort, netip.AddrPort)
	}{
		{"server is the bound address", Bind{Addr: loopback}, self},
		{"server on a wildcard bind", Bind{}, self},
		{"server 0.0.0.0 reaches the bound address", Bind{Addr: loopback}, anyAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, web, tl := startLoopRig(t, tt.bind, tt.target)
			checkLoop(t, p, web, tl, 508, loopSelfAddr)
		})
	}
}

// relay forwards every connection to target: a loop the Apply-time check
// cannot see (another host, a NAT, a second node).
func relay(t *testing.T, target func() string) netip.AddrPort {
	return rawServer(t, func(c net.Conn) {
		defer c.Close()
		to := target()
		u, err := net.DialTimeout("tcp", to, waitFor)
		if err != nil {
			return
		}
		defer u.Close()
		done := make(chan struct{})
		go func() {
			io.Copy(u, c)
			u.(*net.TCPConn).CloseWrite()
			close(done)
		}()
		io.Copy(c, u)
		c.(*net.TCPConn).CloseWrite()
		<-done
	})
}

// TestLoopHopMark: an http loop through a relay is stopped by the hop
// mark at the second pass: the client gets 508, never a storm.
func TestLoopHopMark(t *testing.T) {
	var web atomic.Pointer[string]
	r := relay(t, func() string { return *web.Load() })
	// The tls side loops straight back (caught by the Apply check).
	p, w, tl := startLoopRig(t, Bind{Addr: loopback}, func(_, tl netip.AddrPort) (netip.AddrPort, netip.AddrPort) { return r, tl })
	web.Store(&w)
	checkLoop(t, p, w, tl, 508, loopHopMark)
	if v := p.metric(t, MetricLoops, map[string]string{"kind": loopHopMark}); v != 1 {
		t.Errorf("hop-mark loops counted %v, want exactly 1 for one request", v)
	}
}

// TestLoopOwnDial: with the Apply-time check off, a tls tunnel to the
// proxy's own listener is recognised by its source address (the local
// address of the proxy's own dial) and closed.
func TestLoopOwnDial(t *testing.T) {
	self := func(web, tl netip.AddrPort) (netip.AddrPort, netip.AddrPort) { return web, tl }
	// A wildcard bind: the case the Apply-time check is backed up for.
	p, web, tl := startLoopRig(t, Bind{}, self)
	_ = web
	p.mu.Lock()
	p.noSelfCheck = true
	p.mu.Unlock()
	// Re-apply a changed config so markSelf runs without the check.
	cfg := p.cfg
	cfg.Backends = append([]Backend(nil), cfg.Backends...)
	cfg.Backends[3].ConnectTimeout++
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	before := openFDs(t)
	line, _ := tlsHello(t, tl, "loop.test")
	if line != "" {
		t.Fatalf("tls connection to itself reached %q", line)
	}
	if line, _ := tlsHello(t, tl, "other.test"); !strings.HasPrefix(line, "goodtls ") {
		t.Fatalf("other tls route during a loop: %q", line)
	}
	deadline := time.Now().Add(waitFor)
	for openFDs(t) > before+fdBound {
		if time.Now().After(deadline) {
			t.Fatalf("%d descriptors open, %d before", openFDs(t), before)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := p.metric(t, MetricLoops, map[string]string{"kind": loopSelfConn}); v != 1 {
		t.Errorf("self connections counted %v, want 1", v)
	}
}

// TestHopMarkForwarded: servers see the mark; clients never do.
func TestHopMarkForwarded(t *testing.T) {
	seen := make(chan string, 1)
	be := rawServer(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		var head strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return
			}
			head.WriteString(l)
			if l == "\r\n" {
				break
			}
		}
		seen <- head.String()
		io.WriteString(c, "HTTP/1.1 200 OK\r\nGitedge-Hop: echoed\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
	p := startProxy(t, Config{Listeners: []Listener{httpListener("web", "be")}, Backends: []Backend{backendOf("be", srv("s", be))}})
	code, resp := rawRequest(t, p.addr(t, "web"), "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
	if code != 200 || strings.Contains(strings.ToLower(resp), "gitedge-hop") {
		t.Fatalf("client got %d %q", code, resp)
	}
	head := <-seen
	if !strings.Contains(head, "\r\nGitedge-Hop: "+p.hopID+"\r\n\r\n") {
		t.Fatalf("server saw %q, want the hop mark %s", head, p.hopID)
	}
}

// TestOwnDialsBothEnds: one local port serves connections to different
// servers, so a client connection whose source port equals that of one of
// our dials is not our own (it was taken for a loop, found by the memory
// benchmark); only the same two ends are.
func TestOwnDialsBothEnds(t *testing.T) {
	ln1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln1.Close()
	ln2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	reuse := func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1) })
		return serr
	}
	d := net.Dialer{Control: reuse}
	c1, err := d.Dial("tcp", ln1.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	d.LocalAddr = c1.LocalAddr() // the same source address and port, to another server
	c2, err := d.Dial("tcp", ln2.Addr().String())
	if err != nil {
		t.Skipf("cannot share a source port here: %v", err)
	}
	defer c2.Close()
	var dials ownDials
	ap := func(a net.Addr) netip.AddrPort { return unmapped(a.(*net.TCPAddr).AddrPort()) }
	e, err := dials.add(c1.(*net.TCPConn), ap(c1.RemoteAddr()))
	if err != nil {
		t.Fatal(err)
	}
	if !dials.has(ap(c1.LocalAddr()), ap(c1.RemoteAddr())) {
		t.Error("our own dial not recognised")
	}
	if dials.has(ap(c2.LocalAddr()), ap(c2.RemoteAddr())) {
		t.Error("another connection from the same source port taken for our own dial")
	}
	dials.remove(e)
	if dials.has(ap(c1.LocalAddr()), ap(c1.RemoteAddr())) {
		t.Error("removed dial still recognised")
	}
}
