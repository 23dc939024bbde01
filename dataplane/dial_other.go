//go:build !linux

package dataplane

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"time"
)

// dialTCP connects to a server (off Linux, where the proxy does not run,
// through net.Dialer; the package builds for validate and plan).
// first is left to the caller (sent is 0).
func dialTCP(addr netip.AddrPort, timeout time.Duration, first []byte) (c sockConn, sent int, err error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: -1}
	nc, err := d.Dial("tcp", addr.String())
	if err != nil {
		return nil, 0, err
	}
	return nc.(*net.TCPConn), 0, nil
}

func localAddr(syscall.RawConn) (netip.AddrPort, error) {
	return netip.AddrPort{}, errors.New("dataplane: local address of a dialled connection needs Linux")
}

func shutdownWrite(uintptr) {}

func shutdownBoth(uintptr) {}
