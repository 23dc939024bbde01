package dataplane

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Bytes in bulk move between two *net.TCPConn with splice(2), through a
// pipe taken from a pool only while bytes are in flight. io.Copy would
// splice too, but it pins a pipe (two descriptors) for as long as the
// source is idle: 9,000 idle passthrough tunnels would need 36,000 more
// descriptors than the sockets themselves. Waiting for readability goes
// through syscall.RawConn, so the Go netpoller still parks the goroutine
// and deadlines still apply.

// pipe is one kernel pipe used as a splice buffer.
type pipe struct {
	r, w int
	data int // bytes in the pipe
}

const (
	pipeSize      = 1 << 20 // as Go's own splice: fewer calls per MiB
	maxSpliceSize = pipeSize
	maxIdlePipes  = 64
)

var pipes struct {
	sync.Mutex
	free []*pipe
}

// deadlines keeps a conn's read and write deadlines at least timeout-slack
// ahead without touching the runtime timer on every I/O: a timer update
// costs more than the rest of a small request's bookkeeping.
//
// Deadlines fall on a grid of deadlineGrid (rounded up). A deadline is a
// runtime timer, and a timer the connection moved later or stopped keeps
// its old place in the timer heap until that time comes: the proxy's
// thread and the runtime's monitor then wake up for it. Every new
// connection left one or more such wake-ups behind it (its inspect or
// request timeout, seconds later); on the grid, all the connections of
// one grid step share one.
type deadlines struct {
	rd, wd int64 // unix nanoseconds currently set; 0 none
}

// deadlineGrid is the step deadlines are rounded up to: at most about
// 60 timer wake-ups a second, whatever the connection rate; a timeout
// fires up to this much late.
const deadlineGrid = 1 << 24 // ns, 16.8 ms

// onGrid rounds a unix-nanosecond time up to the deadline grid.
func onGrid(t int64) int64 { return (t + deadlineGrid - 1) &^ (deadlineGrid - 1) }

// slack is how stale a deadline may get before it is pushed again: a
// tenth of the timeout, at most one second.
func slack(timeout time.Duration) int64 {
	return int64(min(timeout/10, time.Second))
}

func (d *deadlines) read(c sockConn, now int64, timeout time.Duration) {
	want := onGrid(now + int64(timeout))
	if d.rd > now && d.rd <= want && want-d.rd < slack(timeout) {
		return
	}
	d.rd = want
	_ = c.SetReadDeadline(time.Unix(0, want))
}

// readAt sets a read deadline at a given time (a request head's own
// timeout), on the grid.
func (d *deadlines) readAt(c sockConn, at int64) {
	at = onGrid(at)
	d.rd = at
	_ = c.SetReadDeadline(time.Unix(0, at))
}

// readBy keeps the read deadline at most slack(timeout) before at (on the
// grid), never after it: a deadline that comes early only makes its
// reader look at the clock and wait again, and moving it with every
// chunk would cost a timer update each.
func (d *deadlines) readBy(c sockConn, now, at int64, timeout time.Duration) {
	want := onGrid(at)
	if d.rd > now && d.rd <= want && want-d.rd < slack(timeout) {
		return
	}
	d.readAt(c, at)
}

func (d *deadlines) write(c sockConn, now int64, timeout time.Duration) {
	want := onGrid(now + int64(timeout))
	if d.wd > now && d.wd <= want && want-d.wd < slack(timeout) {
		return
	}
	d.wd = want
	_ = c.SetWriteDeadline(time.Unix(0, want))
}

// sockConn is a side's socket: a *net.TCPConn accepted from a listener,
// or a connection this proxy dialled (dialedConn).
type sockConn interface {
	Read([]byte) (int, error)
	Close() error
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
	SyscallConn() (syscall.RawConn, error)
}

// side is one end of a proxied stream: the conn, its raw form for
// readiness waits, its deadlines and its inactivity timeout.
type side struct {
	c       sockConn
	rc      syscall.RawConn
	dl      deadlines
	timeout time.Duration

	rbuf   []byte
	rn     int
	rerr   error
	readCB func(uintptr) bool
	first  *buffer // readFirst's buffer, taken when bytes come, while firstOn
	acked  int64   // bytes the peer had acknowledged when a write last timed out (TCP_INFO); -1 none

	// inq: the socket has TCP_INQ set (a pooled server connection), and
	// more is what its last read said: bytes or an end were left behind.
	inq, more bool
	firstOn   bool

	w *sideWriter // made on the first write; an http client side writes through its httpConn's
}

func (s *side) init(c sockConn, timeout time.Duration) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	rcb, w := s.readCB, s.w
	*s = side{c: c, rc: rc, timeout: timeout, readCB: rcb, w: w, acked: -1}
	return nil
}

// closeWrite half-closes the socket: its FIN goes out.
func (s *side) closeWrite() { _ = s.rc.Control(shutdownWrite) }

// shutdown ends the socket both ways (its FIN goes out; a read returns
// EOF, a write EPIPE), leaving the descriptor to its owner.
func (s *side) shutdown() { _ = s.rc.Control(shutdownBoth) }

// write writes all of p, waiting in the netpoller while the socket is
// full. Unlike c.Write, its syscalls are raw (sys_linux.go).
func (s *side) write(p []byte) (int, error) {
	if s.w == nil {
		s.w = new(sideWriter)
	}
	return s.w.write(s, p)
}

// sideWriter is the state of a write in progress, kept apart from side so
// that an idle client connection does not carry it (its httpConn, pooled,
// has one).
type sideWriter struct {
	buf []byte
	n   int
	err error
	cb  func(uintptr) bool
	s   *side // the side written to, during a write

	later  []byte // writeRead: bytes to write at the read's first call
	laterN int    // writeRead: bytes of later written
}

func (w *sideWriter) write(s *side, p []byte) (int, error) {
	w.buf, w.n, w.err, w.s = p, 0, nil, s
	if w.cb == nil {
		w.cb = w.onWritable // bound once, on first use
	}
	err := s.rc.Write(w.cb)
	for err != nil && w.err == nil && isTimeout(err) && !s.stalled() {
		err = s.rc.Write(w.cb)
	}
	n := w.n
	w.buf, w.s = nil, nil
	if err != nil {
		return n, unwrapOp(err)
	}
	return n, w.err
}

func (w *sideWriter) onWritable(fd uintptr) bool {
	moved := false
	for len(w.buf) > 0 {
		n, err := rawWrite(int(fd), w.buf)
		switch err {
		case nil:
			w.n += n
			w.buf = w.buf[n:]
			moved = true
		case syscall.EINTR:
		case syscall.EAGAIN:
			w.s.waiting(moved)
			return false
		default:
			w.err = os.NewSyscallError("write", err)
			return true
		}
	}
	return true
}

// A write timeout is for a peer that stopped reading, not for one
// reading slowly: a 1 MiB chunk to a client reading at 80 KB/s outlasts
// any clientTimeout, and the kernel wakes a writer waiting on a full send
// buffer only once a third of it has drained, which at that pace can take
// longer than the timeout too. So a write that has to wait moves its
// deadline on when it moved bytes first; when the deadline passes, it
// notes how many bytes the peer has acknowledged (TCP_INFO) and waits one
// timeout more, then again as long as that grows (stalled). A peer that
// stopped is cut two timeouts after its socket last took a byte; no
// system call is added to a write that does not time out. Bytes the socket took are no
// sign of the peer: the kernel grows a socket's send buffer while the
// peer reads nothing, and a check of what the socket held (SIOCOUTQ,
// forgotten at each write that moved bytes) let a client that never read
// hold its connection for as long as the buffer grew.

// waiting is called by a write that found the socket full, after moving
// some bytes or none.
func (s *side) waiting(moved bool) {
	if moved && s.dl.wd != 0 && s.timeout > 0 {
		s.movedAt(time.Now().UnixNano())
	}
}

// movedAt is waiting's deadline move, for a caller that read the clock.
func (s *side) movedAt(now int64) {
	if s.dl.wd != 0 && s.timeout > 0 {
		s.dl.write(s.c, now, s.timeout)
	}
}

// stalled reports, after a write to s timed out, whether its peer took
// nothing for a whole timeout; if not, the deadline moves on and the
// write may wait again.
func (s *side) stalled() bool {
	if s.timeout <= 0 {
		return true
	}
	var a int64 = -1
	_ = s.rc.Control(func(fd uintptr) { a = rawAcked(int(fd)) })
	if a < 0 || (s.acked >= 0 && a <= s.acked) {
		return true
	}
	s.acked = a
	s.dl.wd = 0
	s.dl.write(s.c, time.Now().UnixNano(), s.timeout)
	return false
}

// Read is read, for readers of a PROXY header.
func (s *side) Read(p []byte) (int, error) { return s.read(p) }

// read reads into p. Reading through RawConn rather than c.Read keeps
// the error values plain (no *net.OpError allocated on a deadline).
func (s *side) read(p []byte) (int, error) {
	s.rbuf, s.rn, s.rerr = p, 0, nil
	if s.readCB == nil {
		s.readCB = s.onReadable // bound once, on first use
	}
	err := s.rc.Read(s.readCB)
	s.rbuf = nil
	if err != nil {
		return 0, unwrapOp(err)
	}
	return s.rn, s.rerr
}

// writeRead writes all of w, then reads into r what the peer sends back,
// and tells how much of w went out. The write is made from the read's
// RawConn.Read callback, after the netpoller forgot any earlier
// readiness of the socket: an answer can only follow the write, so its
// arrival wakes the wait, and no read is tried before it (a read that
// would find nothing: one wasted system call per request, a tenth of a
// kept-alive request's CPU). A socket too full to take w at once makes
// the write wait for it there, as httpConn.sendAnswer does.
func (s *side) writeRead(w, r []byte) (written, n int, err error) {
	if s.w == nil {
		s.w = new(sideWriter)
	}
	s.w.later, s.w.laterN = w, 0
	n, err = s.read(r)
	written = s.w.laterN
	s.w.later = nil
	return written, n, err
}

// readFirst waits for a connection's first bytes and reads them into a
// pooled buffer taken only once the socket is readable (nil when the
// wait ended first; an end or an error comes with a buffer and no
// bytes): a client that sends nothing holds no buffer while it waits, as
// an http connection waiting for a request holds none
// (httpConn.onReadable).
func (s *side) readFirst() (*buffer, int, error) {
	s.firstOn = true
	n, err := s.read(nil)
	b := s.first
	s.first, s.firstOn = nil, false
	return b, n, err
}

func (s *side) onReadable(fd uintptr) bool {
	if s.w != nil && s.w.later != nil {
		return s.writeLater()
	}
	if s.firstOn && s.first == nil {
		s.first = getBuf()
		s.rbuf = s.first.b
	}
	for {
		var n int
		var err error
		if s.inq {
			n, s.more, err = rawReadInq(int(fd), s.rbuf)
		} else {
			n, err = rawRead(int(fd), s.rbuf)
		}
		switch err {
		case nil:
			s.rn = n
			if n == 0 {
				s.rerr = io.EOF
			}
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			if s.first != nil {
				putBuf(s.first)
				s.first, s.rbuf = nil, nil
			}
			return false
		default:
			s.rerr = os.NewSyscallError("read", err)
			return true
		}
	}
}

// mover moves bytes one way, from src to dst. It is embedded in a
// long-lived value and its callbacks are bound once, so moving costs no
// allocation.
type mover struct {
	src, dst *side
	// tun, when set, is the tunnel direction moving: its clock is told
	// the time after every chunk and arms the source's read deadline.
	tun *tunDir

	// park, when set, marks each wait for the source as idle, so that
	// the sweeper may ask this direction to park (move then returns
	// errParkAsked); lingering counts idle waits.
	park      *parkFields
	lingering *lingerCount

	// A move copies through a pooled buffer until a read fills it, and
	// splices through a pipe from then on (HAProxy's splice-auto): for
	// the few small messages of a TLS handshake or a short answer, two
	// copies cost the kernel less than moving pipe buffers around.
	buf *buffer
	off int // bytes of buf already written

	p      *pipe
	n      int
	err    error
	readFn func(uintptr) bool
	outFn  func(uintptr) bool

	// The move in progress (move, onSrc).
	limit int64 // bytes left to move; < 0: until EOF
	moved int64
	eof   bool // the source ended

	// bulk: splicing (see above).
	bulk bool
	// unacked: a bulk move read bytes since its source was last drained;
	// spliceIn acknowledges them before the wait. lazyAck (a tunnel's
	// directions) leaves ACKs to the kernel: a tunnel's large transfer
	// did not stall without them (a 1 MiB download through the TLS
	// passthrough) and cost 6 % more CPU with them.
	unacked, lazyAck bool
	// readTimedOut tells, after move returned a deadline error, that it
	// came from waiting for the source (idle), not from a stuck destination.
	readTimedOut bool
	// errOut tells that m.err came from writing to dst, not reading src.
	errOut bool
	// drained: the chunk just read left the source empty (copyIn).
	// inq: the source socket has TCP_INQ set, whose reads can tell that;
	// onSrc sets it on the first chunk from inqFrom on (unix ns; 0 never).
	drained, inq bool
	inqFrom      int64
	// waited: the chunk's write waited for dst (waitOut).
	waited bool
}

func (m *mover) bind() {
	m.readFn = m.onSrc
	m.outFn = m.spliceOut
}

// errShortBody is a source that ended before the bytes it announced.
var errShortBody = io.ErrUnexpectedEOF

// move moves limit bytes (limit < 0: until EOF) and returns how many it
// moved. With a limit, an early EOF is errShortBody; without one, EOF ends
// the move with a nil error. Deadline errors are os.ErrDeadlineExceeded.
//
// The bytes move inside the source's RawConn.Read (onSrc): read a chunk,
// write it out, read again, until a read finds nothing and the wait
// begins. The netpoller forgot the source's readiness once, when the
// Read began, before the first read: bytes that arrive at any time since
// wake the wait, so no read is tried only to find nothing after each
// chunk (a system call per chunk: per message of a TLS handshake). A
// destination too full to take a chunk at once makes the write wait for
// it there, as side.writeRead and httpConn.sendAnswer do.
func (m *mover) move(limit int64) (int64, error) {
	defer m.release()
	m.bulk, m.unacked, m.errOut, m.drained = false, false, false, false
	m.limit, m.moved = limit, 0
	for m.limit != 0 {
		now := time.Now().UnixNano()
		if m.tun != nil {
			// Until the tunnel is idle by its clock, whichever way bytes
			// last moved: a timeout from now would end it up to one late.
			m.src.dl.readBy(m.src.c, now, max(m.tun.t.last.Load()+int64(m.tun.t.idle), now), m.tun.t.idle)
		} else {
			m.src.dl.read(m.src.c, now, m.src.timeout)
		}
		m.n, m.err, m.eof = 0, nil, false
		var err error
		if m.park != nil {
			m.park.enterIdle(m.lingering, now)
			err = m.src.rc.Read(m.readFn)
			if poked, asked := m.park.leaveIdle(m.lingering); poked {
				m.src.dl.rd = 0
				// Only the sweeper's deadline: a closed conn's descriptor
				// may be another's by now.
				if asked && err != nil && isTimeout(err) {
					return m.moved, errParkAsked
				}
			}
		} else {
			err = m.src.rc.Read(m.readFn)
		}
		if err != nil {
			m.readTimedOut = true
			return m.moved, unwrapOp(err)
		}
		m.readTimedOut = false
		if m.err != nil {
			return m.moved, m.err
		}
		if m.eof {
			if m.limit > 0 {
				return m.moved, errShortBody
			}
			return m.moved, nil
		}
	}
	return m.moved, nil
}

// want is the most the next read takes: a pipe, at most what is left.
func (m *mover) want() int {
	if m.limit > 0 && m.limit < maxSpliceSize {
		return int(m.limit)
	}
	return maxSpliceSize
}

// onSrc is the source's RawConn.Read callback: it moves chunks until a
// read finds nothing (false: the Read waits), or the move ends (true;
// move tells how).
func (m *mover) onSrc(fd uintptr) bool {
	for {
		m.n = 0
		if !m.spliceIn(fd) {
			return false // nothing to read: wait
		}
		if m.err != nil {
			return true
		}
		if m.n == 0 {
			m.eof = true
			return true
		}
		now := time.Now().UnixNano()
		m.dst.dl.write(m.dst.c, now, m.dst.timeout)
		err := m.dst.rc.Write(m.outFn)
		for err != nil && m.err == nil && isTimeout(err) && !m.dst.stalled() {
			err = m.dst.rc.Write(m.outFn)
		}
		if m.waited {
			// The write waited (for as long as a slow reader took):
			// what follows is from now, not from the chunk's start.
			m.waited = false
			now = time.Now().UnixNano()
			if m.tun != nil {
				m.tun.out.Store(false)
			}
		}
		if err != nil && m.err == nil {
			m.err = unwrapOp(err)
		}
		if m.err != nil {
			m.errOut = true
			return true
		}
		m.moved += int64(m.n)
		if m.limit > 0 {
			m.limit -= int64(m.n)
		}
		if m.tun != nil {
			m.tun.t.touch(now)
		}
		if m.limit == 0 {
			return true
		}
		// Still busy: keep the source's deadline ahead, and the sweeper
		// off a direction that is not idle.
		m.src.dl.read(m.src.c, now, m.src.timeout)
		if m.park != nil {
			m.park.idleAt.Store(now)
		}
		if m.inqFrom != 0 && now >= m.inqFrom {
			m.inqFrom = 0
			m.inq = m.parkerUp() && setInq(fd)
		}
		if m.drained {
			m.drained = false
			if m.parkerUp() {
				// Nothing left to read: wait, holding no buffer (copyIn).
				putBuf(m.buf)
				m.buf = nil
				return false
			}
			// Nothing parks now, and only the parker sees a reset that
			// came with the bytes: read until a read finds nothing.
			m.inq = false
		}
	}
}

// parkerUp reports that the parker may take this direction (copyIn's
// short-read stop relies on it).
func (m *mover) parkerUp() bool {
	return m.tun == nil || !m.tun.t.p.park.failed.Load()
}

// waitOut is spliceOut finding dst full, having moved some bytes first or
// none. In a tunnel, bytes a slow reader took are activity, and the wait
// keeps the tunnel from idling (tunnel.due).
func (m *mover) waitOut(moved bool) {
	if !m.waited {
		m.waited = true
		if m.tun != nil {
			m.tun.out.Store(true)
		}
	}
	if m.tun == nil || !moved {
		m.dst.waiting(moved)
		return
	}
	now := time.Now().UnixNano() // one clock read for both
	m.tun.t.touch(now)
	m.dst.movedAt(now)
}

// gone is the side whose peer reset the connection, by the error move
// returned; nil for any other error.
func (m *mover) gone(err error) *side {
	if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
		return nil
	}
	if m.errOut {
		return m.dst
	}
	return m.src
}

func (m *mover) release() {
	if m.p != nil {
		putPipe(m.p)
		m.p = nil
	}
	if m.buf != nil {
		putBuf(m.buf)
		m.buf = nil
	}
}

// unwrapOp turns a *net.OpError from a RawConn call into its cause, so
// callers can test for os.ErrDeadlineExceeded and net.ErrClosed.
func unwrapOp(err error) error {
	if op, ok := err.(*net.OpError); ok { // not errors.As: its target escapes, an allocation
		return op.Err
	}
	return err
}

// isTimeout reports a deadline error.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// writeLater writes writeRead's bytes from the read's callback. All
// written: the read waits for the answer (false); an error ends it (true).
func (s *side) writeLater() bool {
	w := s.w.later
	s.w.later = nil
	n, err := s.write(w)
	s.w.laterN = n
	if err != nil {
		s.rerr = err
		return true
	}
	return false
}
