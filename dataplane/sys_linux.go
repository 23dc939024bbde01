package dataplane

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The calls a connection makes on its non-blocking sockets and pipes go
// through RawSyscall, not Syscall: they never block, and on loopback a
// write or a splice can spend tens of microseconds delivering the bytes
// to the peer. Through Syscall the runtime's monitor then takes the P
// away from the calling thread and wakes another thread to run the
// scheduler (two thread switches on the proxy's one core), for nothing:
// the call returns a moment later.

// rawRead is recv(2) on a non-blocking socket, as HAProxy and nginx
// read: recvfrom without an address goes straight to the socket, where
// read(2) first passes through the file layer (vfs_read and its checks).
// Here that is 50 to 80 ns less for a read that finds nothing and 270 to
// 370 ns less for a write and the read of its bytes, 3 to 5 %
// (BenchmarkSocketCalls).
func rawRead(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(ptr), uintptr(len(p)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	touchIdlePoll()
	return int(n), nil
}

// rawReadInq is recvmsg(2) on a non-blocking TCP socket with TCP_INQ set
// (setInq): besides the bytes it tells whether more is there to read now,
// bytes that came meanwhile or an end (Linux counts a received FIN as one
// byte to read). A socket without the option, or a kernel without the
// hint, says more.
func rawReadInq(fd int, p []byte) (n int, more bool, err error) {
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
	}
	iov.SetLen(len(p))
	var oob [24]byte // unix.CmsgSpace(4): one int's control message
	var msg unix.Msghdr
	msg.Iov = &iov
	msg.Iovlen = 1
	msg.Control = &oob[0]
	msg.SetControllen(len(oob))
	r, _, e := unix.RawSyscall(unix.SYS_RECVMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), 0)
	if e != 0 {
		return 0, false, e
	}
	touchIdlePoll()
	more = true
	if int(msg.Controllen) >= unix.CmsgLen(4) {
		h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
		if h.Level == unix.SOL_TCP && h.Type == unix.TCP_CM_INQ {
			more = *(*int32)(unsafe.Pointer(&oob[unix.CmsgLen(0)])) != 0
		}
	}
	return int(r), more, nil
}

// setInq asks a socket for the TCP_INQ hint of rawReadInq (the listeners
// do not set it, so an accepted socket has not inherited it) and reports
// whether the kernel took it.
func setInq(fd uintptr) bool {
	one := int32(1)
	_, _, e := unix.RawSyscall6(unix.SYS_SETSOCKOPT, fd, unix.SOL_TCP, unix.TCP_INQ, uintptr(unsafe.Pointer(&one)), 4, 0)
	return e == 0
}

// rawPeekEmpty reports whether a non-blocking socket has nothing to read
// and has not ended: recv(MSG_PEEK|MSG_DONTWAIT) of one byte finds EAGAIN.
func rawPeekEmpty(fd int) bool {
	var b [1]byte
	_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	return e == unix.EAGAIN
}

// rawUnacked is how many bytes written on a connected TCP socket its
// peer has not acknowledged (TCP_INFO: bytes_sent and bytes_retrans need
// Linux 4.19), or -1.
func rawUnacked(fd int) int64 {
	info, err := unix.GetsockoptTCPInfo(fd, unix.SOL_TCP, unix.TCP_INFO)
	if err != nil {
		return -1
	}
	// bytes_sent counts retransmissions again; bytes_acked counts the SYN.
	return int64(info.Bytes_sent-info.Bytes_retrans) - (int64(info.Bytes_acked) - 1)
}

// rawAcked returns the bytes the peer of a TCP socket has acknowledged
// (TCP_INFO's tcpi_bytes_acked, Linux 4.2 and later), or -1.
func rawAcked(fd int) int64 {
	info, err := unix.GetsockoptTCPInfo(fd, unix.SOL_TCP, unix.TCP_INFO)
	if err != nil {
		return -1
	}
	return int64(info.Bytes_acked)
}

// rawSplice is splice(2) between non-blocking descriptors, no offsets.
func rawSplice(rfd, wfd, n int) (int, error) {
	m, _, e := unix.RawSyscall6(unix.SYS_SPLICE, uintptr(rfd), 0, uintptr(wfd), 0, uintptr(n), unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if e != 0 {
		return 0, e
	}
	return int(m), nil
}

// rawWrite is send(2) on a non-blocking socket, for the reason rawRead
// is recv. MSG_NOSIGNAL: a write to a peer that reset returns EPIPE
// without raising SIGPIPE, which the runtime would only catch and ignore.
func rawWrite(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(ptr), uintptr(len(p)), unix.MSG_NOSIGNAL, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// ackNow sends the ACK fd owes, if any, now rather than at the delayed-ACK
// timer. TCP_QUICKACK with an even value (Linux: __tcp_sock_set_quickack)
// sends it and puts the socket back in interactive (pingpong) mode, where
// ACKs are delayed as before (with none owed, the socket stays out of that
// mode until the proxy next writes on it). 1 would leave the mode in
// every case, and each read of the rest of a body would then send an ACK
// of its own (bench big: 0.8x to 0.9x the throughput, the server's core
// busy with them).
func ackNow(fd int) {
	two := int32(2)
	_, _, _ = unix.RawSyscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_QUICKACK, uintptr(unsafe.Pointer(&two)), 4, 0)
}
