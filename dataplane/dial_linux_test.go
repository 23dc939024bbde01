package dataplane

import (
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tinyListener listens on loopback with a backlog of 1: its accept
// queue then holds two connections, and a SYN that comes while they wait
// is dropped, so a connect to it stays in progress until the queue frees
// and the SYN is sent again (a second later).
func tinyListener(t *testing.T) (fd int, addr netip.AddrPort) {
	t.Helper()
	fd, addr = boundLoopback(t)
	if err := unix.Listen(fd, 1); err != nil {
		t.Fatal(err)
	}
	return fd, addr
}

// sendRest writes rest to the dialled connection c, half-closes it, and
// checks that the server's end s read want in all.
func sendRest(t *testing.T, c sockConn, s net.Conn, rest, want string) {
	t.Helper()
	var w side
	if err := w.init(c, time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := w.write([]byte(rest)); err != nil {
		t.Fatal(err)
	}
	w.closeWrite()
	s.SetReadDeadline(time.Now().Add(waitFor))
	if got, _ := io.ReadAll(s); string(got) != want {
		t.Fatalf("server read %q, want %q", got, want)
	}
}

// TestDialFirst: dialTCP sends the caller's first bytes with the
// connect when the connection is made at once, reports a refusal as the
// connect's error, and leaves the bytes to the caller while the
// handshake is still under way, waiting for it as without them.
func TestDialFirst(t *testing.T) {
	t.Run("made at once", func(t *testing.T) {
		for _, first := range []string{"hello", ""} {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c, sent, err := dialTCP(netip.MustParseAddrPort(ln.Addr().String()), time.Second, []byte(first))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if sent != len(first) {
				t.Fatalf("first %q: sent %d bytes, want all", first, sent)
			}
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			sendRest(t, c, s, "|rest", first+"|rest")
		}
	})

	t.Run("refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := netip.MustParseAddrPort(ln.Addr().String())
		ln.Close() // nothing listens there now
		for _, first := range []string{"hello", ""} {
			c, sent, err := dialTCP(addr, time.Second, []byte(first))
			if err == nil {
				c.Close()
				t.Fatalf("first %q: connected to a closed port", first)
			}
			if sent != 0 || !strings.Contains(err.Error(), "connect") || !strings.Contains(err.Error(), "refused") {
				t.Fatalf("first %q: sent %d, error %v; want 0 and a refused connect", first, sent, err)
			}
		}
	})

	t.Run("still connecting", func(t *testing.T) {
		lfd, addr := tinyListener(t)
		// Two connections fill the accept queue.
		for range 2 {
			filler, err := net.DialTimeout("tcp", addr.String(), 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer filler.Close()
		}
		time.Sleep(50 * time.Millisecond)
		go func() {
			// Free the queue once the dial below has sent its SYN.
			time.Sleep(200 * time.Millisecond)
			if nfd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC); err == nil {
				unix.Close(nfd)
			}
		}()
		start := time.Now()
		c, sent, err := dialTCP(addr, 5*time.Second, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if took := time.Since(start); took < 200*time.Millisecond {
			t.Fatalf("dialTCP returned after %v, before the listener's queue freed: a connection still being made was taken as made (or the queue was not full)", took)
		}
		if sent != 0 {
			t.Fatalf("sent %d bytes on a connection still being made, want 0", sent)
		}
		// The second filler is still queued ahead of this connection.
		rc, err := c.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		local, err := localAddr(rc)
		if err != nil {
			t.Fatal(err)
		}
		nfd := -1
		for nfd < 0 {
			fd, sa, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
			if err != nil {
				t.Fatal(err)
			}
			if p, ok := sa.(*unix.SockaddrInet4); ok && p.Port == int(local.Port()) {
				nfd = fd
			} else {
				unix.Close(fd)
			}
		}
		f := os.NewFile(uintptr(nfd), "server")
		s, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		sendRest(t, c, s, "hello", "hello")
	})
}
