package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"strconv"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// acceptor accepts with a raw accept4(2) on a duplicate of the listening
// descriptor, which the netpoller waits on (a *net.TCPListener's raw
// connection cannot wait). net.TCPListener.Accept does more per
// connection than a proxy needs: accept4 and the TCP_NODELAY setsockopt
// go through syscall.Syscall, and the first such call after the proxy
// idled wakes the runtime's monitor thread, which then ticks every 20 µs
// while the proxy works (a tenth of the proxy's CPU and a third of its
// context switches in a profile of new TLS connections); it also asks
// the kernel for the local address, which a listener bound to one address
// already knows. Here the accepted socket inherits TCP_NODELAY from the
// listener (set once, in open), and the peer's address comes with the
// accept.
type acceptor struct {
	ln *net.TCPListener // accepts instead while f is nil (open failed)
	f  *os.File         // the duplicate; closing it ends a waiting accept
	rc syscall.RawConn
	// local is the address every accepted connection has when the
	// listener is bound to one address; invalid for a wildcard bind.
	local netip.AddrPort

	// The last accept, filled in by onReadable.
	nfd int
	sa  unix.RawSockaddrAny
	err error
	cb  func(uintptr) bool
}

// open duplicates ln's descriptor for the accept loop. ln stays the
// socket's owner (Sockets hands it on in an upgrade); close closes both.
func (a *acceptor) open(ln *net.TCPListener, b Bind) error {
	a.ln = ln
	rc, err := ln.SyscallConn()
	if err != nil {
		return err
	}
	dup := -1
	var serr error
	err = rc.Control(func(fd uintptr) {
		if dup, serr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); serr != nil {
			serr = os.NewSyscallError("fcntl", serr)
			return
		}
		// The accept below must never block with the proxy's only P:
		// the mode is the socket's, shared with every duplicate (an
		// inherited socket's too), so set it rather than assume it.
		if serr = unix.SetNonblock(dup, true); serr != nil {
			serr = os.NewSyscallError("fcntl", serr)
			return
		}
		// Accepted sockets inherit it: no setsockopt per connection.
		if serr = unix.SetsockoptInt(dup, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); serr != nil {
			serr = os.NewSyscallError("setsockopt", serr)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		if dup >= 0 {
			unix.Close(dup)
		}
		return err
	}
	f := os.NewFile(uintptr(dup), "listener") // non-blocking: the netpoller waits on it
	if a.rc, err = f.SyscallConn(); err != nil {
		f.Close()
		return err
	}
	a.f = f
	if b.Addr.IsValid() && !b.Addr.IsUnspecified() {
		ap := ln.Addr().(*net.TCPAddr).AddrPort()
		a.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	a.cb = a.onReadable
	return nil
}

// close ends the accept loop's wait; the listener itself is the caller's.
func (a *acceptor) close() {
	if a.f != nil {
		a.f.Close()
	}
}

// accept waits for a connection. A closed acceptor is net.ErrClosed.
func (a *acceptor) accept() (c sockConn, peer, local netip.AddrPort, err error) {
	if a.f == nil {
		return acceptNet(a.ln)
	}
	a.err = nil
	if err := a.rc.Read(a.cb); err != nil {
		return nil, peer, local, net.ErrClosed
	}
	if a.err != nil {
		return nil, peer, local, a.err
	}
	peer = sockaddrAddrPort(&a.sa)
	local = a.local
	if !local.IsValid() {
		var sa unix.RawSockaddrAny
		l := uint32(unsafe.Sizeof(sa))
		if _, _, e := unix.RawSyscall(unix.SYS_GETSOCKNAME, uintptr(a.nfd), uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&l))); e != 0 {
			unix.Close(a.nfd)
			return nil, peer, local, os.NewSyscallError("getsockname", e)
		}
		local = sockaddrAddrPort(&sa)
	}
	return dialedConn{newSockFile(a.nfd, "tcp")}, peer, local, nil
}

// onReadable is the RawConn.Read callback: one accept4, raw (it never
// blocks on a non-blocking socket).
func (a *acceptor) onReadable(fd uintptr) bool {
	for {
		l := uint32(unsafe.Sizeof(a.sa))
		nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, fd, uintptr(unsafe.Pointer(&a.sa)), uintptr(unsafe.Pointer(&l)),
			unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch e {
		case 0:
			a.nfd = int(nfd)
			touchIdlePoll()
			return true
		case unix.EINTR, unix.ECONNABORTED,
			unix.EPROTO, unix.ENOPROTOOPT, unix.EHOSTDOWN, unix.ENONET, unix.EHOSTUNREACH,
			unix.EOPNOTSUPP, unix.ENETDOWN, unix.ENETUNREACH:
			// The queued connection failed before it was taken (reset,
			// or a network error Linux passes on from it): accept(2)
			// says to take the next, as after EAGAIN. Not the listener's
			// fault, which would otherwise stop accepting.
			continue
		case unix.EAGAIN:
			return false
		default:
			a.err = os.NewSyscallError("accept4", e)
			return true
		}
	}
}

// sockaddrAddrPort is an IPv4 or IPv6 socket address as an AddrPort,
// IPv4-mapped addresses unmapped; the zero AddrPort for another family.
func sockaddrAddrPort(sa *unix.RawSockaddrAny) netip.AddrPort {
	switch sa.Addr.Family {
	case unix.AF_INET:
		p := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(p.Addr), port)
	case unix.AF_INET6:
		p := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p.Port))[:])
		a := netip.AddrFrom16(p.Addr).Unmap()
		if p.Scope_id != 0 && a.Is6() {
			// As net names it: a link-local peer's zone (rare, so the
			// lookup may cost).
			zone := strconv.FormatUint(uint64(p.Scope_id), 10)
			if ifi, err := net.InterfaceByIndex(int(p.Scope_id)); err == nil {
				zone = ifi.Name
			}
			a = a.WithZone(zone)
		}
		return netip.AddrPortFrom(a, port)
	}
	return netip.AddrPort{}
}
