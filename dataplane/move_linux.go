package dataplane

import (
	"os"

	"golang.org/x/sys/unix"
)

func getPipe() (*pipe, error) {
	pipes.Lock()
	if n := len(pipes.free); n > 0 {
		p := pipes.free[n-1]
		pipes.free = pipes.free[:n-1]
		pipes.Unlock()
		return p, nil
	}
	pipes.Unlock()
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, os.NewSyscallError("pipe2", err)
	}
	// A larger pipe moves more per call; the kernel may refuse, which is fine.
	_, _ = unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, pipeSize)
	return &pipe{r: fds[0], w: fds[1]}, nil
}

// putPipe returns an empty pipe to the pool; one still holding bytes (a
// failed write) is closed, since its bytes belong to a dead transfer.
func putPipe(p *pipe) {
	if p.data == 0 {
		pipes.Lock()
		if len(pipes.free) < maxIdlePipes {
			pipes.free = append(pipes.free, p)
			pipes.Unlock()
			return
		}
		pipes.Unlock()
	}
	unix.Close(p.r)
	unix.Close(p.w)
}

// spliceIn is called by RawConn.Read when src may be readable. It takes a
// pipe when there are bytes and gives it back before the goroutine parks.
func (m *mover) spliceIn(fd uintptr) bool {
	if m.park != nil {
		m.park.parkFD = int32(fd)
	}
	if !m.bulk {
		return m.copyIn(fd)
	}
	if m.buf != nil {
		putBuf(m.buf)
		m.buf = nil
	}
	if m.p == nil {
		p, err := getPipe()
		if err != nil {
			m.err = err
			return true
		}
		m.p = p
	}
	for {
		n, err := rawSplice(int(fd), m.p.w, m.want())
		switch err {
		case nil:
			m.n = int(n)
			m.p.data += int(n)
			m.unacked = n > 0 && !m.lazyAck
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			putPipe(m.p)
			m.p = nil
			// About to wait for more: acknowledge what was read now.
			// A kept-alive server connection is in the kernel's
			// interactive mode (the proxy writes a request, then
			// reads), where an ACK waits to ride on data that a body
			// never sends back; a server that needs it to send on
			// then stalls up to the 40 ms delayed-ACK timer (bench
			// big: p99 61 ms, 10 ms with this).
			if m.unacked {
				m.unacked = false
				ackNow(int(fd))
			}
			return false
		default:
			m.err = os.NewSyscallError("splice", err)
			return true
		}
	}
}

// copyIn reads what src has into a pooled buffer, taken only when there
// are bytes; a read that fills it turns the move to splicing.
//
// A tunnel's direction a second old (tunnelYoung: one that may park)
// asks its source for the TCP_INQ hint and reads with it, noting when a
// read left nothing behind (drained): onSrc then waits at once instead of
// reading again only to find nothing, as HAProxy and nginx stop at a
// short read: one system call less per message, per request on a
// kept-alive TLS connection. Bytes or an end that come later wake the
// wait (the netpoller keeps their readiness within one RawConn.Read); a
// FIN that came with the bytes is in the hint. A reset that came with
// them is not: the direction then waits as an idle one, and the sweeper
// parks it within tunnelLinger, where the parker's epoll sees the reset
// at once (park.go; TestTunnelResetWithBytes); with no parker (it
// failed), onSrc reads on instead (TestTunnelResetNoParker). A young
// tunnel reads until a read finds nothing, as before: its setsockopt
// would cost the read it saves, and it would wait for the reset until it
// came of age.
func (m *mover) copyIn(fd uintptr) bool {
	if m.buf == nil {
		m.buf = getBuf()
	}
	for {
		want := min(m.want(), len(m.buf.b))
		var n int
		var err error
		more := true
		if m.inq {
			n, more, err = rawReadInq(int(fd), m.buf.b[:want])
		} else {
			n, err = rawRead(int(fd), m.buf.b[:want])
		}
		switch err {
		case nil:
			m.n, m.off = n, 0
			if n == len(m.buf.b) {
				m.bulk = true
			}
			m.drained = n > 0 && n < want && !more
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			putBuf(m.buf)
			m.buf = nil
			return false
		default:
			m.err = os.NewSyscallError("read", err)
			return true
		}
	}
}

// spliceOut drains the pipe (or the buffer) into dst; RawConn.Write waits
// while dst is full.
func (m *mover) spliceOut(fd uintptr) bool {
	moved := false
	if m.p == nil {
		for m.off < m.n {
			n, err := rawWrite(int(fd), m.buf.b[m.off:m.n])
			switch err {
			case nil:
				m.off += n
				moved = true
			case unix.EINTR:
			case unix.EAGAIN:
				m.waitOut(moved)
				return false
			default:
				m.err = os.NewSyscallError("write", err)
				return true
			}
		}
		return true
	}
	for m.p.data > 0 {
		n, err := rawSplice(m.p.r, int(fd), m.p.data)
		switch err {
		case nil:
			m.p.data -= int(n)
			moved = true
		case unix.EINTR:
		case unix.EAGAIN:
			m.waitOut(moved)
			return false
		default:
			m.err = os.NewSyscallError("splice", err)
			return true
		}
	}
	return true
}
