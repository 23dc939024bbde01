package dataplane

import (
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// An idle keep-alive connection need not own a goroutine. Once it has
// waited idleLinger with nothing buffered, the sweeper interrupts its wait
// and it parks: its goroutine ends and its httpConn (buffers, parse state)
// goes back to the pool, leaving the clientConn and the socket. The parker
// holds parked sockets in an epoll set of its own (EPOLLONESHOT), whose
// descriptor is itself waited on through Go's netpoller by one goroutine;
// when a parked socket becomes readable, that goroutine starts a new one
// to serve it. Parked connections expire at the read deadline they had
// (clientTimeout, or requestTimeout before the first request).
//
// Busy connections never park: the linger keeps the per-request path as
// it was (a wait in the netpoller), so only connections idle for longer
// than a loaded client's think time pay the park and resume (two epoll
// calls and a goroutine start).

const (
	// idleLinger is how long an idle http connection keeps its goroutine
	// before it parks; the sweeper runs every idleSweep.
	idleLinger = 5 * time.Millisecond
	idleSweep  = 5 * time.Millisecond
)

// parker holds parked connections. The zero value is ready; the epoll set
// and its goroutine start with the first park.
type parker struct {
	p *Proxy

	mu     sync.Mutex
	ep     int
	f      *os.File // ep, waited on by the netpoller
	rc     syscall.RawConn
	closed bool
	conns  map[int32]*clientConn // by parkFD
	exp    []*clientConn         // min-heap on idleAt (the expiry)
	timer  *time.Timer
	wg     sync.WaitGroup

	// Goroutines that served a woken connection wait here for the next
	// one (a go statement with an argument allocates); at most maxIdleWorkers.
	work        chan *clientConn
	idleWorkers atomic.Int32
}

const maxIdleWorkers = 64

// start creates the epoll set and its goroutine. Called under k.mu.
func (k *parker) start() error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(ep), "parker-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return err
	}
	k.ep, k.f, k.rc = ep, f, rc
	k.conns = map[int32]*clientConn{}
	k.work = make(chan *clientConn)
	k.timer = time.AfterFunc(time.Hour, k.expire)
	k.timer.Stop()
	k.wg.Add(1)
	go k.wait()
	return nil
}

// park registers an idle connection, already given back its httpConn,
// until it is readable or deadline (unix ns; 0 none) passes. false: it
// cannot be parked (the proxy is stopping); the caller closes it.
func (k *parker) park(c *clientConn, deadline int64) bool {
	fd := c.parkFD
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || c.draining.Load() {
		return false
	}
	if k.f == nil {
		if err := k.start(); err != nil {
			k.p.log.Warn("idle connections cannot be parked; they keep a goroutine", "error", err)
			k.closed = true
			return false
		}
	}
	c.idleAt.Store(deadline)
	c.parkGen++
	k.conns[fd] = c
	if deadline != 0 {
		k.push(c)
	}
	c.state.Store(stParked)
	// A drain that started meanwhile either saw stParked (and owns the
	// connection now) or is seen here.
	if c.draining.Load() && c.state.CompareAndSwap(stParked, stBusy) {
		k.take(c)
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: fd, Pad: int32(c.parkGen)}
	op := unix.EPOLL_CTL_ADD
	if c.inEpoll {
		op = unix.EPOLL_CTL_MOD
	}
	err := unix.EpollCtl(k.ep, op, int(fd), &ev)
	if err == unix.EEXIST {
		err = unix.EpollCtl(k.ep, unix.EPOLL_CTL_MOD, int(fd), &ev)
	}
	if err != nil {
		if !c.state.CompareAndSwap(stParked, stBusy) {
			return true // a drain owns it
		}
		k.take(c)
		return false
	}
	c.inEpoll = true
	if c.parkIdx == 0 {
		k.timer.Reset(time.Until(time.Unix(0, deadline)))
	}
	return true
}

// take removes c, which the caller moved out of stParked, from the
// parker. Called under k.mu.
func (k *parker) take(c *clientConn) {
	if k.conns[c.parkFD] == c {
		delete(k.conns, c.parkFD)
	}
	k.remove(c)
}

// release closes a parked connection the caller moved out of stParked (a
// drain).
func (k *parker) release(c *clientConn) {
	k.mu.Lock()
	k.take(c)
	k.mu.Unlock()
	c.cl.c.Close()
	c.done()
}

// wait is the parker's goroutine: it waits for the epoll set to be
// readable through the netpoller, then hands each readable connection to
// a new goroutine.
func (k *parker) wait() {
	defer k.wg.Done()
	evs := make([]unix.EpollEvent, 128)
	n := 0
	poll := func(uintptr) bool {
		for {
			m, err := unix.EpollWait(k.ep, evs, 0)
			if err == unix.EINTR {
				continue
			}
			n = max(m, 0)
			return m > 0 || err != nil
		}
	}
	for {
		n = 0
		if err := k.rc.Read(poll); err != nil {
			return // closed
		}
		if n == 0 {
			return // epoll_wait failed
		}
		k.mu.Lock()
		for i := range evs[:n] {
			ev := &evs[i]
			c := k.conns[ev.Fd]
			if c == nil || int32(c.parkGen) != ev.Pad || !c.state.CompareAndSwap(stParked, stBusy) {
				continue // stale: the connection left meanwhile
			}
			k.take(c)
			select {
			case k.work <- c:
			default:
				go k.worker(c)
			}
		}
		k.mu.Unlock()
	}
}

// worker serves woken connections: c, then whatever the parker hands it
// while it waits as one of at most maxIdleWorkers idle workers.
func (k *parker) worker(c *clientConn) {
	for {
		c.resume()
		if k.idleWorkers.Add(1) > maxIdleWorkers {
			k.idleWorkers.Add(-1)
			return
		}
		var ok bool
		c, ok = <-k.work
		k.idleWorkers.Add(-1)
		if !ok {
			return
		}
	}
}

// expire closes the parked connections whose deadline passed.
func (k *parker) expire() {
	now := time.Now().UnixNano()
	var due []*clientConn
	k.mu.Lock()
	for len(k.exp) > 0 && k.exp[0].idleAt.Load() <= now {
		c := k.exp[0]
		k.remove(c)
		if c.state.CompareAndSwap(stParked, stBusy) {
			k.take(c)
			due = append(due, c)
		}
	}
	if len(k.exp) > 0 && !k.closed {
		k.timer.Reset(time.Until(time.Unix(0, k.exp[0].idleAt.Load())))
	}
	k.mu.Unlock()
	for _, c := range due {
		c.cl.c.Close()
		c.done()
	}
}

// close stops the parker once no connection is parked any more.
func (k *parker) close() {
	k.mu.Lock()
	k.closed = true
	if k.timer != nil {
		k.timer.Stop()
	}
	if k.f != nil {
		k.f.Close()
	}
	k.mu.Unlock()
	k.wg.Wait()
	if k.work != nil {
		close(k.work) // idle workers end; wait has ended, so no send races this
	}
}

// The expiry heap, ordered by idleAt (the expiry); each connection knows its index.

func (k *parker) push(c *clientConn) {
	c.parkIdx = int32(len(k.exp))
	k.exp = append(k.exp, c)
	k.up(int(c.parkIdx))
}

func (k *parker) remove(c *clientConn) {
	i := int(c.parkIdx)
	if i < 0 {
		return
	}
	last := len(k.exp) - 1
	if i != last {
		k.swap(i, last)
	}
	k.exp[last] = nil
	k.exp = k.exp[:last]
	c.parkIdx = -1
	if i != last {
		k.down(i)
		k.up(i)
	}
}

func (k *parker) swap(i, j int) {
	k.exp[i], k.exp[j] = k.exp[j], k.exp[i]
	k.exp[i].parkIdx, k.exp[j].parkIdx = int32(i), int32(j)
}

func (k *parker) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if k.exp[p].idleAt.Load() <= k.exp[i].idleAt.Load() {
			return
		}
		k.swap(i, p)
		i = p
	}
}

func (k *parker) down(i int) {
	n := len(k.exp)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && k.exp[r].idleAt.Load() < k.exp[l].idleAt.Load() {
			m = r
		}
		if k.exp[i].idleAt.Load() <= k.exp[m].idleAt.Load() {
			return
		}
		k.swap(i, m)
		i = m
	}
}

// sweepIdle asks the http connections idle for idleLinger to park.
func (p *Proxy) sweepIdle() {
	if p.lingering.Load() == 0 {
		return
	}
	linger := idleLinger
	if p.linger > 0 {
		linger = p.linger
	}
	cut := time.Now().UnixNano() - int64(linger)
	p.mu.Lock()
	for _, s := range p.socks {
		s.mu.Lock()
		for c := range s.conns {
			if c.httpMode && c.state.Load() == stIdle && c.idleAt.Load() <= cut {
				c.askPark()
			}
		}
		s.mu.Unlock()
	}
	p.mu.Unlock()
}
