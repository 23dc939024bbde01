package dataplane

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestQuietReuse: a pooled server connection whose answer came whole in a
// read that left nothing behind is reused without a look within
// quietFresh (here a minute, so that only the read's TCP_INQ hint
// decides). A server that closes right after answering, the end in the
// answer's own segment and no "Connection: close", is not reused: the
// read saw the end, and a POST, never sent twice, goes on a new
// connection. One that keeps its connection open serves every request on
// it.
func TestQuietReuse(t *testing.T) {
	tests := []struct {
		name      string
		closes    bool
		wantConns int64
	}{
		{"the end came with the answer", true, 3},
		{"the connection stays open", false, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, conns := scriptedServer(t, func(r scriptedReq, c net.Conn) bool {
				if tt.closes {
					// Corked, the answer waits for the close and leaves
					// in one segment with the FIN.
					rc, _ := c.(*net.TCPConn).SyscallConn()
					rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_CORK, 1) })
				}
				echoPath(r, c)
				return !tt.closes
			})
			p := startProxy(t, Config{
				Listeners: []Listener{httpListener("http", "a")},
				Backends:  []Backend{backendOf("a", s)},
			})
			p.fresh.Store(int64(time.Minute))
			c := dialClient(t, p.addr(t, "http"))
			for _, path := range []string{"/a", "/b", "/c"} {
				if r := c.do("POST", "a.test", path, "x"); r.StatusCode != 200 || bodyOf(r) != path {
					t.Fatalf("POST %s: %d %q", path, r.StatusCode, bodyOf(r))
				}
			}
			if n := conns.Load(); n != tt.wantConns {
				t.Fatalf("the server saw %d connections, want %d", n, tt.wantConns)
			}
		})
	}
}
