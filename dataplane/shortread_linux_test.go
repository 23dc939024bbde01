package dataplane

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestReadInq: the TCP_INQ hint tells a read that left nothing from one
// that left bytes or an end behind; without the option it always says
// more (the caller then reads on, as before).
func TestReadInq(t *testing.T) {
	cases := []struct {
		name     string
		inq      bool
		send     string
		close    bool
		wantMore bool
	}{
		{"bytes only", true, "abc", false, false},
		{"bytes and FIN", true, "abc", true, true},
		{"no TCP_INQ", false, "abc", false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			rc, err := b.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			if tc.inq {
				rc.Control(func(fd uintptr) { setInq(fd) })
			}
			a.Write([]byte(tc.send))
			if tc.close {
				a.Close()
			}
			buf := make([]byte, 64)
			var n int
			var more bool
			deadline := time.Now().Add(waitFor)
			for n == 0 && time.Now().Before(deadline) {
				rc.Control(func(fd uintptr) { n, more, err = rawReadInq(int(fd), buf) })
				if err != nil {
					n = 0
					time.Sleep(time.Millisecond)
				}
			}
			if string(buf[:n]) != tc.send || more != tc.wantMore {
				t.Fatalf("read %q more=%v, want %q more=%v", buf[:n], more, tc.send, tc.wantMore)
			}
		})
	}
}

// inqMover is a parking tunnel direction's mover from a socket with
// TCP_INQ set (as a tunnel of age sets it) to dst, with no sweeper; it
// returns the source's peer.
func inqMover(t *testing.T, dst *net.TCPConn) (*mover, net.Conn) {
	t.Helper()
	c, peer := tcpPair(t)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { setInq(fd) })
	var src, out side
	if err := src.init(c, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := out.init(dst, time.Second); err != nil {
		t.Fatal(err)
	}
	m := &mover{src: &src, dst: &out, inq: true, park: &parkFields{parkIdx: -1},
		lingering: &lingerCount{kick: make(chan struct{}, 1)}}
	m.bind()
	return m, peer
}

// TestShortReadStop: a tunnel direction that stops reading at a short
// read still sees an end that came with the last bytes (the hint), and
// bytes that come while it waits. A reset that came with them is the one
// thing the hint does not tell: without the parker, the wait runs to its
// deadline (the case TestTunnelResetWithBytes covers with it).
func TestShortReadStop(t *testing.T) {
	t.Run("bytes and FIN in one go", func(t *testing.T) {
		dst, far := tcpPair(t)
		m, peer := inqMover(t, dst)
		peer.Write([]byte("hello"))
		peer.Close()
		time.Sleep(20 * time.Millisecond) // both arrive before the first read
		n, err := m.move(-1)
		if n != 5 || err != nil {
			t.Fatalf("moved %d, %v; want 5 and the EOF (nil)", n, err)
		}
		far.SetReadDeadline(time.Now().Add(waitFor))
		if b, err := io.ReadAll(io.LimitReader(far, 5)); string(b) != "hello" {
			t.Fatalf("got %q %v", b, err)
		}
	})
	t.Run("bytes, a pause, bytes, FIN", func(t *testing.T) {
		dst, _ := tcpPair(t)
		m, peer := inqMover(t, dst)
		go func() {
			peer.Write([]byte("one"))
			time.Sleep(50 * time.Millisecond)
			peer.Write([]byte("two"))
			time.Sleep(50 * time.Millisecond)
			peer.Close()
		}()
		if n, err := m.move(-1); n != 6 || err != nil {
			t.Fatalf("moved %d, %v; want 6 and the EOF (nil)", n, err)
		}
	})
	t.Run("bytes and a reset in one go", func(t *testing.T) {
		dst, _ := tcpPair(t)
		m, peer := inqMover(t, dst)
		peer.Write([]byte("hello"))
		peer.(*net.TCPConn).SetLinger(0)
		peer.Close()
		time.Sleep(20 * time.Millisecond)
		n, err := m.move(-1)
		if n != 5 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("moved %d, %v; want 5 and the read deadline", n, err)
		}
	})
}

// TestTunnelResetWithBytes: a server that answers and resets at once
// (its bytes and its RST read by the proxy in one wake-up, where the
// short-read stop cannot see the reset) still has its client's
// connection ended at once in a young tunnel (which reads until a read
// finds nothing), and within tunnelLinger and a sweep in one of age,
// never at the backend's idleTimeout. tunnelYoung is shortened so that
// a tunnel comes of age at once.
func TestTunnelResetWithBytes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		young int64
		max   time.Duration
	}{
		{"young tunnel", 0, 500 * time.Millisecond},
		{"tunnel of age", 1, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) { testTunnelResetWithBytes(t, tc.young, tc.max) })
	}
}

func testTunnelResetWithBytes(t *testing.T, young int64, max time.Duration) {
	hello := clientHelloBytes(t, "a.test")
	addr := rawServer(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(waitFor))
		if _, err := io.ReadFull(c, make([]byte, len(hello))); err != nil {
			return
		}
		// A first message, read the old way (the tunnel comes of age
		// on it), then one with the reset.
		c.Write([]byte("x"))
		time.Sleep(30 * time.Millisecond)
		c.Write([]byte("y"))
		c.(*net.TCPConn).SetLinger(0)
	})
	be := backendOf("tls-a", srv("s", addr))
	be.IdleTimeout = time.Minute
	p := startProxy(t, Config{
		Listeners: []Listener{tlsListener("tls", "")},
		Routes:    []Route{routeTLS("a", "tls-a", "a.test")},
		Backends:  []Backend{be},
	})
	p.young.Store(young)
	to := netip.MustParseAddrPort(p.addr(t, "tls"))
	for i := range 20 {
		c, err := net.DialTCP("tcp", nil, net.TCPAddrFromAddrPort(to))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		c.SetDeadline(start.Add(waitFor))
		c.Write(hello)
		b := make([]byte, 8)
		n, err := io.ReadAtLeast(c, b, 2)
		if string(b[:n]) != "xy" {
			t.Fatalf("connection %d: got %q %v", i, b[:n], err)
		}
		if _, err := c.Read(b); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("connection %d: %v after %v, want its end", i, err, time.Since(start))
		}
		// The bound leaves room for -race on a loaded machine; the
		// idleTimeout is a minute.
		if el := time.Since(start); el > max {
			t.Errorf("connection %d ended after %v, want within %v", i, el, max)
		}
		c.Close()
	}
}
