package dataplane

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestIPv6AndFreebind(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	v6 := httpListener("v6", "a")
	v6.Bind = Bind{Addr: netip.MustParseAddr("::1")}
	p := startProxy(t, Config{Listeners: []Listener{httpListener("v4", "a"), v6}, Backends: []Backend{backendOf("a", srv("a1", a.addr))}})
	addr := p.addr(t, "v6")
	if !strings.HasPrefix(addr, "[::1]:") {
		t.Fatalf("v6 listener on %s", addr)
	}
	if code, body := get(t, addr, "a.test", "/"); code != 200 || body != "a1 a.test" {
		t.Fatalf("over IPv6: %d %q", code, body)
	}
	// Both sockets carry IP(V6)_FREEBIND, so a VIP not held yet could be bound.
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.socks {
		rc, err := s.ln.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		rc.Control(func(fd uintptr) {
			if s.bind.Addr.Is6() {
				v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND)
			} else {
				v, gerr = unix.GetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND)
			}
		})
		if gerr != nil || v != 1 {
			t.Errorf("listener %s: freebind=%d %v", s.bind, v, gerr)
		}
	}
}
