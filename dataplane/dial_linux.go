package dataplane

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dialTCP connects to a server. It does what a net.Dialer does for a
// literal address, minus what a proxy dialling the same servers all day
// does not need: no address parsing, no context and its timer and
// goroutine hand-off, no getsockname and getpeername, and no wait in the
// netpoller when the connection is made within the connect call itself
// (on loopback and often on a LAN). Its syscalls are raw (sys_linux.go).
// A profile of new TLS connections showed a third of the proxy's CPU in
// net.Dialer.DialContext, a third of that outside the kernel.
//
// first, when not empty, is sent as soon as connect returns, as HAProxy
// does, and the send tells whether the connection is made: it succeeds
// on a connection made within the connect call (on loopback, the
// handshake completes before connect returns), fails with connect's
// error (a refusal) on one that failed, or finds the connection still
// being made (EAGAIN), which is then awaited as without first. That
// replaces a getpeername with the send the caller would make anyway
// (and, while the handshake is under way, a getpeername and a
// getsockopt). sent is how much of first went out; the caller writes the
// rest.
func dialTCP(addr netip.AddrPort, timeout time.Duration, first []byte) (c sockConn, sent int, err error) {
	var sa unsafe.Pointer
	var salen uintptr
	var sa4 unix.RawSockaddrInet4
	var sa6 unix.RawSockaddrInet6
	family := unix.AF_INET6
	if a := addr.Addr(); a.Is4() || a.Is4In6() {
		family = unix.AF_INET
		sa4.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], addr.Port())
		sa4.Addr = a.Unmap().As4()
		sa, salen = unsafe.Pointer(&sa4), unsafe.Sizeof(sa4)
	} else {
		sa6.Family = unix.AF_INET6
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa6.Port))[:], addr.Port())
		sa6.Addr = a.As16()
		if z := a.Zone(); z != "" {
			if ifi, err := net.InterfaceByName(z); err == nil {
				sa6.Scope_id = uint32(ifi.Index)
			}
		}
		sa, salen = unsafe.Pointer(&sa6), unsafe.Sizeof(sa6)
	}
	fd, _, e := unix.RawSyscall(unix.SYS_SOCKET, uintptr(family), unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if e != 0 {
		return nil, 0, os.NewSyscallError("socket", e)
	}
	one := int32(1)
	_, _, _ = unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, uintptr(unsafe.Pointer(&one)), 4, 0)
	for {
		_, _, e = unix.RawSyscall(unix.SYS_CONNECT, fd, uintptr(sa), salen)
		if e != unix.EINTR {
			break
		}
	}
	if e != 0 && e != unix.EINPROGRESS {
		unix.Close(int(fd))
		return nil, 0, os.NewSyscallError("connect", e)
	}
	made := e == 0
	if !made && len(first) > 0 {
		n, werr := rawWrite(int(fd), first)
		switch werr {
		case nil:
			made, sent = true, n
		case unix.EAGAIN:
			// Still connecting: wait below.
		default:
			unix.Close(int(fd))
			return nil, 0, os.NewSyscallError("connect", werr)
		}
	}
	f := newSockFile(int(fd), "tcp") // non-blocking: registered with the netpoller
	c = dialedConn{f}
	if made {
		return c, sent, nil
	}
	// In progress: made already within the connect call (the usual case
	// on loopback; the send above told so when there was one), or wait
	// until the socket is writable, within the connect timeout (a timer
	// only then).
	if len(first) == 0 {
		if done, err := connectDone(fd); done || err != nil {
			if err != nil {
				f.Close()
				return nil, 0, err
			}
			return c, 0, nil
		}
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	_ = f.SetWriteDeadline(time.Now().Add(timeout))
	var cerr error
	err = rc.Write(func(fd uintptr) bool {
		done, err := connectDone(fd)
		cerr = err
		return done || err != nil
	})
	if err == nil {
		err = cerr
	}
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	_ = f.SetWriteDeadline(time.Time{})
	return c, 0, nil
}

// connectDone reports whether a non-blocking connect has completed, or
// its error.
func connectDone(fd uintptr) (bool, error) {
	var peer unix.RawSockaddrAny
	plen := uint32(unsafe.Sizeof(peer))
	if _, _, e := unix.RawSyscall(unix.SYS_GETPEERNAME, fd, uintptr(unsafe.Pointer(&peer)), uintptr(unsafe.Pointer(&plen))); e == 0 {
		return true, nil
	}
	soerr := int32(0)
	olen := uint32(4)
	if _, _, e := unix.RawSyscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_ERROR, uintptr(unsafe.Pointer(&soerr)), uintptr(unsafe.Pointer(&olen)), 0); e != 0 {
		return false, os.NewSyscallError("getsockopt", e)
	}
	if soerr != 0 {
		return false, os.NewSyscallError("connect", syscall.Errno(soerr))
	}
	return false, nil
}

// dialedConn is a connection this proxy dialled: an *os.File over the
// socket, which the netpoller serves as it serves a net.Conn.
type dialedConn struct{ *os.File }

// localAddr returns the connection's local address.
func localAddr(rc syscall.RawConn) (netip.AddrPort, error) {
	var sa unix.Sockaddr
	var serr error
	err := rc.Control(func(fd uintptr) { sa, serr = unix.Getsockname(int(fd)) })
	if err == nil {
		err = serr
	}
	if err != nil {
		return netip.AddrPort{}, err
	}
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port)), nil
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port)), nil
	}
	return netip.AddrPort{}, os.NewSyscallError("getsockname", unix.EAFNOSUPPORT)
}

// shutdownWrite half-closes a socket (its FIN goes out); an error is
// ignored, as it is for net.TCPConn.CloseWrite in a relay.
func shutdownWrite(fd uintptr) {
	_, _, _ = unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_WR, 0)
}

// shutdownBoth shuts a socket down both ways; an error (not connected)
// is ignored.
func shutdownBoth(fd uintptr) {
	_, _, _ = unix.RawSyscall(unix.SYS_SHUTDOWN, fd, unix.SHUT_RDWR, 0)
}
