package dataplane

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lifeTLS starts a proxy with one TLS listener whose tunnels go to a raw
// server, with the backend's idle timeout idle. It returns the proxy, the
// listener's address and a ClientHello to send; the server reads it, runs
// fn and closes the connection.
func lifeTLS(t *testing.T, idle time.Duration, fn func(net.Conn)) (*proxyRig, string, []byte) {
	t.Helper()
	hello := clientHelloBytes(t, "a.test")
	addr := rawServer(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * waitFor))
		if _, err := io.ReadFull(c, make([]byte, len(hello))); err == nil {
			fn(c)
		}
	})
	be := backendOf("tls-a", srv("s", addr))
	be.IdleTimeout = idle
	p := startProxy(t, Config{
		Listeners: []Listener{tlsListener("tls", "")},
		Routes:    []Route{routeTLS("a", "tls-a", "a.test")},
		Backends:  []Backend{be},
	})
	return p, p.addr(t, "tls"), hello
}

// lifeUpgrade starts a proxy with one http listener whose requests go to
// a raw server that answers 101 Switching Protocols and then runs fn.
func lifeUpgrade(t *testing.T, idle time.Duration, fn func(net.Conn)) string {
	t.Helper()
	addr := rawServer(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * waitFor))
		b := make([]byte, 4096)
		n := 0
		for !strings.Contains(string(b[:n]), "\r\n\r\n") {
			m, err := c.Read(b[n:])
			if err != nil {
				return
			}
			n += m
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		fn(c)
	})
	be := backendOf("ws", srv("s", addr))
	be.IdleTimeout = idle
	p := startProxy(t, Config{Listeners: []Listener{httpListener("http", "ws")}, Backends: []Backend{be}})
	return p.addr(t, "http")
}

// noParker makes p's parker as it is after its epoll set failed: nothing
// parks, and the sweeper stops asking.
func noParker(p *Proxy) {
	p.park.mu.Lock()
	p.park.closed = true
	p.park.failed.Store(true)
	p.park.mu.Unlock()
}

// tunnelsOf returns p's running tunnels.
func tunnelsOf(p *Proxy) []*tunnel {
	var ts []*tunnel
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.socks {
		s.mu.Lock()
		for c := range s.conns {
			if t := c.tun.Load(); t != nil {
				ts = append(ts, t)
			}
		}
		s.mu.Unlock()
	}
	return ts
}

// TestTunnelSlowReader: a client that reads steadily but slowly keeps its
// tunnel, however long a chunk takes to drain into it, while the other
// direction is silent: the bytes the proxy's socket takes are activity.
// The proxy's socket to the client has a small send buffer (the kernel
// wakes a waiting writer every few KB) or a large one (wake-ups further
// apart than the idle timeout: the wait itself keeps the tunnel).
func TestTunnelSlowReader(t *testing.T) {
	const (
		idle  = 500 * time.Millisecond
		total = 2 << 20
		step  = 8 << 10               // bytes per client read
		pause = 20 * time.Millisecond // between reads: about 400 KB/s
	)
	for _, tc := range []struct {
		name   string
		park   bool
		sndbuf int // the proxy's client socket's SO_SNDBUF
	}{
		{"parking, small send buffer", true, 16 << 10},
		{"parking, large send buffer", true, 512 << 10},
		{"no parker, small send buffer", false, 16 << 10},
		{"no parker, large send buffer", false, 512 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var p *proxyRig
			ready := make(chan struct{})
			done := make(chan struct{})
			p, addr, hello := lifeTLS(t, idle, func(c net.Conn) {
				<-ready
				// The tunnel is made after the ClientHello went out.
				var ts []*tunnel
				for end := time.Now().Add(waitFor); len(ts) == 0 && time.Now().Before(end); time.Sleep(time.Millisecond) {
					ts = tunnelsOf(p.Proxy)
				}
				for _, tun := range ts {
					tun.a.rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, tc.sndbuf) })
					tun.b.rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 2<<20) })
				}
				c.Write(make([]byte, total))
				<-done
			})
			defer close(done)
			if tc.park {
				p.young.Store(1) // parks at once
			} else {
				noParker(p.Proxy)
			}
			close(ready)
			d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
				rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, step) })
				return nil
			}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write(hello)
			start := time.Now()
			b := make([]byte, step)
			for got := 0; got < total; {
				c.SetReadDeadline(time.Now().Add(waitFor))
				n, err := c.Read(b)
				got += n
				if err != nil {
					t.Fatalf("after %v: %d of %d bytes, then %v (idle timeout %v)", time.Since(start), got, total, err, idle)
				}
				time.Sleep(pause)
			}
		})
	}
}

// TestTunnelIdleEnd: an idle tunnel ends about its idle timeout after the
// last byte it moved, whether it parks or not (an upgrade never does; a
// TLS tunnel does not without a parker), also after one direction talked
// on while the other was silent for longer than the timeout.
func TestTunnelIdleEnd(t *testing.T) {
	const idle = time.Second
	for _, tc := range []struct {
		name string
		n    int // bytes the server sends
		open func(t *testing.T, n int) net.Conn
	}{
		{"upgrade", 1, upgradeClient},
		{"upgrade, server talks for 1.5 s", 7, upgradeClient},
		{"tls, no parker", 1, tlsClient(false)},
		{"tls, no parker, server talks for 1.5 s", 7, tlsClient(false)},
		{"tls, parked", 1, tlsClient(true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := tc.open(t, tc.n)
			defer c.Close()
			c.SetReadDeadline(time.Now().Add(waitFor))
			var got []byte
			b := make([]byte, 4096)
			var last time.Time
			for {
				n, err := c.Read(b)
				if n > 0 {
					got = append(got, b[:n]...)
					last = time.Now()
				}
				if err != nil {
					if err != io.EOF {
						t.Fatalf("got %q, then %v", got, err)
					}
					break
				}
			}
			if !strings.HasSuffix(string(got), strings.Repeat("x", tc.n)) {
				t.Fatalf("got %q before the end, want %d x", got, tc.n)
			}
			// Up to a grid step late, and room for a loaded machine; a
			// tunnel cut late by up to a timeout more took 1.95 s.
			if el := time.Since(last); el < idle-100*time.Millisecond || el > idle+300*time.Millisecond {
				t.Errorf("ended %v after the last byte, idle timeout %v", el, idle)
			}
		})
	}
}

// upgradeClient opens an upgraded (101) connection through a proxy whose
// server sends n bytes (serverTalks) after its answer.
func upgradeClient(t *testing.T, n int) net.Conn {
	addr := lifeUpgrade(t, time.Second, serverTalks(n))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	return c
}

// tlsClient opens a TLS tunnel through a proxy whose server sends n bytes
// (serverTalks) after the ClientHello; park: the tunnel may park (from its
// birth), else the parker is off.
func tlsClient(park bool) func(t *testing.T, n int) net.Conn {
	return func(t *testing.T, n int) net.Conn {
		p, addr, hello := lifeTLS(t, time.Second, serverTalks(n))
		if park {
			p.young.Store(1)
		} else {
			noParker(p.Proxy)
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.Write(hello)
		return c
	}
}

// serverTalks sends n bytes, then waits for the proxy's end: n-1 bytes
// 250 ms apart, then one 50 ms after the others. A byte that comes
// sooner than the deadlines' slack (a tenth of the timeout) after the
// read deadline was last moved leaves it where it was: before that
// byte's time plus the timeout.
func serverTalks(n int) func(net.Conn) {
	return func(c net.Conn) {
		for i := range n {
			if i < n-1 {
				time.Sleep(250 * time.Millisecond)
			} else {
				time.Sleep(50 * time.Millisecond)
			}
			c.Write([]byte("x"))
		}
		c.SetReadDeadline(time.Now().Add(waitFor))
		c.Read(make([]byte, 1))
	}
}

// TestTunnelParkFD: a parking tunnel's direction has no descriptor to park
// on until its first read saw one, and the parker refuses it until then
// (a sweeper's poke between its idle mark and that read used to park it
// on descriptor 0); a read tells it its source's.
func TestTunnelParkFD(t *testing.T) {
	p := New(Options{})
	t.Cleanup(p.park.close)
	a, aPeer := tcpPair(t)
	b, _ := tcpPair(t)
	tun := newTunnel(p, sideOf(t, a, time.Minute), sideOf(t, b, time.Minute), time.Minute, true)
	tun.touch(time.Now().UnixNano())
	for _, d := range []*tunDir{&tun.ab, &tun.ba} {
		if d.parkFD >= 0 {
			t.Fatalf("a direction that never read parks on descriptor %d", d.parkFD)
		}
	}
	if p.park.park(&tun.ab, tun.ab.due()) {
		t.Fatalf("a direction that never read parked (on descriptor %d)", tun.ab.parkFD)
	}
	if n := p.parkedCount(); n != 0 {
		t.Fatalf("%d parked", n)
	}
	// One read: the direction knows its source.
	aPeer.Write([]byte("x"))
	aPeer.CloseWrite()
	if n, err := tun.ab.m.move(-1); n != 1 || err != nil {
		t.Fatalf("move: %d, %v", n, err)
	}
	var fd int32 = -1
	tun.a.rc.Control(func(f uintptr) { fd = int32(f) })
	if tun.ab.parkFD != fd {
		t.Fatalf("after a read, parkFD %d, want the source's %d", tun.ab.parkFD, fd)
	}
}

// TestTunnelResetNoParker: a server that answers and resets at once (its
// bytes and its RST read in one wake-up, which the short-read stop cannot
// tell from bytes alone) has its client's connection ended at once when
// nothing can park, whether the parker failed before the tunnels began
// or after they came of age (the stop already on); not at the idle
// timeout, which only the parker's epoll would have cut short.
func TestTunnelResetNoParker(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after bool // the parker fails once the tunnel moved its first bytes
	}{
		{"parker failed before", false},
		{"parker failed after the tunnels came of age", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			const conns = 20
			var p *proxyRig
			var fail sync.Once
			ready := make(chan struct{})
			p, addr, hello := lifeTLS(t, time.Minute, func(c net.Conn) {
				<-ready
				c.Write([]byte("x"))
				if tc.after {
					// The first chunk set the stop on; the direction
					// parks only after tunnelLinger idle.
					time.Sleep(5 * time.Millisecond)
					fail.Do(func() { noParker(p.Proxy) })
				}
				time.Sleep(30 * time.Millisecond)
				c.Write([]byte("y"))
				c.(*net.TCPConn).SetLinger(0)
			})
			p.young.Store(1) // of age at once: the short-read stop is on
			if !tc.after {
				noParker(p.Proxy)
			}
			close(ready)
			errs := make(chan error, conns)
			for i := range conns {
				go func() { errs <- resetClient(addr, hello, i) }()
			}
			for range conns {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}

// resetClient sends hello, reads "xy" and expects the connection's end
// within a second (the idle timeout is a minute).
func resetClient(addr string, hello []byte, i int) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(2 * time.Second))
	c.Write(hello)
	b := make([]byte, 8)
	n, err := io.ReadAtLeast(c, b, 2)
	if string(b[:n]) != "xy" {
		return fmt.Errorf("connection %d: got %q %v", i, b[:n], err)
	}
	if _, err := c.Read(b); err == nil || errors.Is(err, syscall.ETIMEDOUT) || isTimeout(err) {
		return fmt.Errorf("connection %d: %v after %v, want its end at once", i, err, time.Since(start))
	}
	if el := time.Since(start); el > time.Second {
		return fmt.Errorf("connection %d ended after %v, want at once", i, el)
	}
	return nil
}
