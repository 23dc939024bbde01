package dataplane

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHealthDownReasonSaysConnectOnce: the reason a check gives for a
// server that refuses connections names the failed step once ("connect:
// connection refused"), not "connect: connect: connection refused" (the
// syscall error already says "connect").
func TestHealthDownReasonSaysConnectOnce(t *testing.T) {
	addr := refusingAddr(t)
	be := backendOf("be", srv("s1", addr))
	be.HealthCheck = HealthCheck{Type: CheckTCP, Interval: 30 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
	reasons := make(chan string, 100)
	startProxy(t, Config{Listeners: []Listener{httpListener("http", "be")}, Backends: []Backend{be}},
		func(o *Options) {
			o.OnServerHealth = func(backend, server string, up bool, reason string) {
				if !up {
					reasons <- reason
				}
			}
		})
	select {
	case r := <-reasons:
		if !strings.Contains(r, "connect: connection refused") || strings.Contains(r, "connect: connect:") {
			t.Errorf("down reason %q, want one \"connect: connection refused\"", r)
		}
	case <-time.After(waitFor):
		t.Fatal("the server refusing connections was never reported down")
	}
}

// refusingAddr returns a loopback address whose port is held by a bound
// socket that never listens: every connect to it is refused, and no other
// process can listen there while the test runs.
func refusingAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	_, addr := boundLoopback(t)
	return addr
}

// boundLoopback returns a TCP socket bound to a free port of 127.0.0.1,
// not listening, and its address; the test's cleanup closes it.
func boundLoopback(t *testing.T) (fd int, addr netip.AddrPort) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	return fd, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(sa.(*unix.SockaddrInet4).Port))
}
