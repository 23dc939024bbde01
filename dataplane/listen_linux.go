package dataplane

import (
	"fmt"
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// listenControl sets a listening socket's options: IP_FREEBIND
// (IPV6_FREEBIND), so a VIP this node does not hold yet can be bound before
// VRRP moves it here, and TCP keep-alive probes, which accepted sockets
// inherit (no per-connection setsockopt).
func listenControl(b Bind) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			ifd := int(fd)
			if network == "tcp6" || (network == "tcp" && !b.Addr.Is4()) {
				// Ignore an error: old kernels lack IPV6_FREEBIND; binding still works for held addresses.
				_ = unix.SetsockoptInt(ifd, unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
			}
			if network != "tcp6" {
				if err := unix.SetsockoptInt(ifd, unix.SOL_IP, unix.IP_FREEBIND, 1); err != nil && b.Addr.Is4() {
					serr = fmt.Errorf("setting IP_FREEBIND: %w", err)
					return
				}
			}
			_ = unix.SetsockoptInt(ifd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
			_ = unix.SetsockoptInt(ifd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 60)
			_ = unix.SetsockoptInt(ifd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
			_ = unix.SetsockoptInt(ifd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 4)
		})
		if err != nil {
			return err
		}
		return serr
	}
}

// deferAcceptSecs is the TCP_DEFER_ACCEPT a listener asks for: the kernel
// rounds it up to one retransmission of its SYN-ACK, after which (about a
// second) a client that completed its handshake but sent nothing is
// handed over all the same, and the listener's own timeouts apply to it.
const deferAcceptSecs = 1

// setDeferAccept sets or clears TCP_DEFER_ACCEPT on a listening socket
// (any time: it applies to connections that complete after it).
func setDeferAccept(ln *net.TCPListener, on bool) error {
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	secs := 0
	if on {
		secs = deferAcceptSecs
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, secs)
	}); err != nil {
		return err
	}
	return serr
}
