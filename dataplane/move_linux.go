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
func (m *mover) copyIn(fd uintptr) bool {
	if m.buf == nil {
		m.buf = getBuf()
	}
	for {
		n, err := rawRead(int(fd), m.buf.b[:min(m.want(), len(m.buf.b))])
		switch err {
		case nil:
			m.n, m.off = n, 0
			if n == len(m.buf.b) {
				m.bulk = true
			}
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
				m.dst.waiting(moved)
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
			m.dst.waiting(moved)
			return false
		default:
			m.err = os.NewSyscallError("splice", err)
			return true
		}
	}
	return true
}
