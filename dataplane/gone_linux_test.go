package dataplane

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// resetBy closes peer with an RST (SO_LINGER 0) and waits until the
// proxy's end of that connection has taken it (its state is CLOSE), so
// that the move below meets the reset, not a race with it.
func resetBy(t *testing.T, peer, proxyEnd *net.TCPConn) {
	t.Helper()
	if err := peer.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	peer.Close()
	rc, err := proxyEnd.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		var state uint8
		_ = rc.Control(func(fd uintptr) {
			if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
				state = info.State
			}
		})
		if state == unix.BPF_TCP_CLOSE { // TCP_CLOSE; x/sys names the states for BPF only
			return
		}
	}
	t.Fatal("the reset never reached the proxy's end")
}

// TestMoverGone: the side a tunnel skips when it cuts (tunnel.cut) is
// the one whose peer reset, whether the move met the reset reading its
// source or writing to its destination; an EOF names no side.
func TestMoverGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		// act breaks the connections: src and dst are the peers' ends,
		// srcP and dstP the proxy's.
		act  func(t *testing.T, src, srcP, dst, dstP *net.TCPConn)
		want string // "src", "dst" or "" (no side gone, no error)
	}{
		{"source resets", func(t *testing.T, src, srcP, dst, dstP *net.TCPConn) {
			resetBy(t, src, srcP)
		}, "src"},
		{"destination reset before the write", func(t *testing.T, src, srcP, dst, dstP *net.TCPConn) {
			resetBy(t, dst, dstP)
			if _, err := src.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
		}, "dst"},
		{"source ends", func(t *testing.T, src, srcP, dst, dstP *net.TCPConn) {
			if _, err := src.Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			src.CloseWrite()
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src, srcP := tcpPair(t)
			dstP, dst := tcpPair(t)
			m := mover{src: sideOf(t, srcP, time.Minute), dst: sideOf(t, dstP, time.Minute)}
			m.bind()
			tc.act(t, src, srcP, dst, dstP)
			_, err := m.move(-1)
			got := map[*side]string{m.src: "src", m.dst: "dst"}[m.gone(err)]
			if got != tc.want || (tc.want == "") != (err == nil) {
				t.Fatalf("move: %v; gone side %q, want %q", err, got, tc.want)
			}
		})
	}
}
