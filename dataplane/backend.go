package dataplane

import (
	"errors"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors of server selection; the HTTP side answers both with 503.
var (
	errNoServer     = errors.New("no server is up")
	errQueueTimeout = errors.New("every server is at maxConn and the queue timed out")
	errQueueFull    = errors.New("every server is at maxConn and maxQueue requests already wait")
	// errLeftQueue is a queued request whose connection a drain cut
	// (drainTimeout passed): it leaves the queue then, not at queueTimeout.
	errLeftQueue = errors.New("the connection was closed by the drain while it waited in the queue")
	// errBackendGone: a reload removed the backend after the request
	// was routed to it; the caller routes it again.
	errBackendGone = errors.New("a reload removed the backend this request was routed to")
)

// queuer is the connection a queued request belongs to, which a drain
// may call away from the queue (clientConn).
type queuer interface {
	// waitOn records ch as the request's wake-up while it is queued (nil
	// once it is not); false: the connection was cut, the request leaves.
	waitOn(ch chan struct{}) bool
}

// backendState is what outlives config generations for a backend name:
// its servers' health and counters, and the queue of requests waiting for
// a free slot. Its mutex also guards the per-generation balancing state,
// so two generations of one backend never race on a server's slots.
type backendState struct {
	name string
	m    *backendMetrics

	mu      sync.Mutex
	waiters []*waiter
	// handing counts the waiters a release woke for its slot that have
	// not run yet: a new request takes a slot only when more are free
	// than that, else it queues behind them (first come, first served).
	handing int
	// cur is the backend of the applied generation (under mu): a request
	// queued under an older one picks from it when woken, so that
	// capacity a reload adds (a server, a higher maxConn) serves the queue.
	cur *backend
	// servers is changed only by Apply (under Proxy.mu).
	servers map[serverKey]*serverState
}

// serverKey identifies a server across generations: the same name at the
// same address keeps its health and counters; a new address is a new server.
type serverKey struct {
	name string
	addr netip.AddrPort
}

// serverState is one server's life across generations.
type serverState struct {
	b    *backendState
	name string
	addr netip.AddrPort
	m    *serverMetrics

	active int // in-flight requests or tunnels; guarded by b.mu

	up      atomic.Bool
	hmu     sync.Mutex
	hc      HealthCheck // current check settings
	okRun   int         // consecutive successes
	failRun int         // consecutive failures
	trial   bool        // up again after connect failures, not announced yet (retryPassive)
	retry   *time.Timer // passive-down expiry when there is no active check
	checker *checker

	pool    idlePool
	removed atomic.Bool
}

// backend is one generation's view of a backend: its settings and its
// servers with their weights, over the shared state.
type backend struct {
	cfg     Backend
	st      *backendState
	servers []*server
	pp      byte // PROXY protocol version sent to servers; 0 none
	lcNext  int  // leastconn tie-break rotation; guarded by st.mu
	loops   bool // every server is this proxy's own listener (loop.go)
}

// server is a server in one generation.
type server struct {
	cfg Server
	st  *serverState
	b   *backend
	cw  int // smooth weighted round robin current weight; guarded by st.b.mu
	// self: the address is this proxy's own listener; never dialled.
	// Set before the generation is published.
	self bool
	// mayLoop: a wildcard listener shares the port; tunnels to this
	// server register their dials (loop.go).
	mayLoop bool
}

// eligible reports whether s can take a request now; tried are servers
// this request failed to connect to.
func (s *server) eligible(tried []*serverState) bool {
	return s.cfg.Weight > 0 && !s.self && s.st.up.Load() && !s.st.removed.Load() &&
		(s.cfg.MaxConn == 0 || s.st.active < s.cfg.MaxConn) && (len(tried) == 0 || !slices.Contains(tried, s.st))
}

// pick chooses a server with a free slot; nil when none. Called with st.mu.
func (b *backend) pick(hash uint32, exclude []*serverState) *server {
	switch b.cfg.Balance {
	case BalanceLeastConn:
		var best *server
		n := len(b.servers)
		for i := range n {
			s := b.servers[(b.lcNext+i)%n]
			if !s.eligible(exclude) {
				continue
			}
			// active/weight, compared without division
			if best == nil || s.st.active*best.cfg.Weight < best.st.active*s.cfg.Weight {
				best = s
			}
		}
		b.lcNext++
		return best
	case BalanceSource:
		total := 0
		for _, s := range b.servers {
			if s.eligible(exclude) {
				total += s.cfg.Weight
			}
		}
		if total == 0 {
			return nil
		}
		x := int(hash % uint32(total))
		for _, s := range b.servers {
			if !s.eligible(exclude) {
				continue
			}
			if x < s.cfg.Weight {
				return s
			}
			x -= s.cfg.Weight
		}
		return nil
	default:
		// Smooth weighted round robin (as nginx): every eligible server gains
		// its weight, the richest is picked and pays the total.
		var best *server
		total := 0
		for _, s := range b.servers {
			if !s.eligible(exclude) {
				continue
			}
			s.cw += s.cfg.Weight
			total += s.cfg.Weight
			if best == nil || s.cw > best.cw {
				best = s
			}
		}
		if best != nil {
			best.cw -= total
		}
		return best
	}
}

// anyUp reports whether some server could ever take a request now.
func (b *backend) anyUp() bool {
	for _, s := range b.servers {
		if s.cfg.Weight > 0 && !s.self && s.st.up.Load() && !s.st.removed.Load() {
			return true
		}
	}
	return false
}

// acquire takes a slot on a server, waiting in the backend's queue up to
// QueueTimeout when every server is at maxConn (refused at once when
// MaxQueue already wait). exclude are the servers this request failed to
// connect to; one is used again only if nothing else is up. q, when not nil, is
// the connection the request belongs to: a drain that cuts it ends the
// wait (errLeftQueue).
func (b *backend) acquire(hash uint32, exclude []*serverState, q queuer) (*server, error) {
	st := b.st
	st.mu.Lock()
	if st.cur != b {
		// A reload came between the request's route and now: it takes
		// the servers the reload left this backend, as a queued request
		// does, not the ones it retired.
		if st.cur == nil {
			st.mu.Unlock()
			return nil, errBackendGone
		}
		b = st.cur
	}
	if len(st.waiters) == 0 && b.spareBeyond(st.handing) {
		if s := b.pickOrAny(hash, exclude); s != nil {
			s.st.active++
			st.mu.Unlock()
			s.st.m.active.Inc()
			return s, nil
		}
	}
	if !b.anyUp() {
		st.mu.Unlock()
		return nil, errNoServer
	}
	if b.cfg.MaxQueue > 0 && len(st.waiters) >= b.cfg.MaxQueue {
		st.mu.Unlock()
		return nil, errQueueFull
	}
	// Queue: the slow path, allowed to allocate.
	deadline := time.Now().Add(b.cfg.QueueTimeout)
	w := &waiter{ch: make(chan struct{}, 1)}
	ch := w.ch
	if q != nil && !q.waitOn(ch) {
		st.mu.Unlock()
		return nil, errLeftQueue
	}
	st.waiters = append(st.waiters, w)
	st.m.queued.Inc()
	st.mu.Unlock()
	if q != nil {
		defer q.waitOn(nil)
	}
	timer := time.NewTimer(b.cfg.QueueTimeout)
	defer timer.Stop()
	for {
		select {
		case <-ch:
		case <-timer.C:
		}
		st.mu.Lock()
		if w.handed {
			w.handed = false
			st.handing--
		}
		if q != nil && !q.waitOn(ch) {
			// Cut by a drain. A release may have chosen this waiter for
			// its slot: the next one gets the chance instead.
			st.removeWaiter(w)
			st.wakeFirst()
			st.mu.Unlock()
			st.m.queued.Dec()
			return nil, errLeftQueue
		}
		if st.cur == nil {
			// A reload removed the backend: routed again by the caller.
			st.removeWaiter(w)
			st.mu.Unlock()
			st.m.queued.Dec()
			return nil, errBackendGone
		}
		b = st.cur // a reload may have added capacity, or removed servers
		if s := b.pickOrAny(hash, exclude); s != nil {
			s.st.active++
			st.removeWaiter(w)
			st.mu.Unlock()
			st.m.queued.Dec()
			s.st.m.active.Inc()
			return s, nil
		}
		if !time.Now().Before(deadline) || !b.anyUp() {
			st.removeWaiter(w)
			st.mu.Unlock()
			st.m.queued.Dec()
			if !b.anyUp() {
				return nil, errNoServer
			}
			return nil, errQueueTimeout
		}
		// Woken but no slot fits this request (another server's, or a
		// wakeAll's re-pick): wait again at the front.
		st.removeWaiter(w)
		st.waiters = append(st.waiters, nil)
		copy(st.waiters[1:], st.waiters)
		st.waiters[0] = w
		st.mu.Unlock()
	}
}

// spareBeyond reports whether the servers have more free slots than the n
// kept for woken waiters (a server without maxConn has any number); true
// for n = 0 without a look, the fast path's case. Called with st.mu.
func (b *backend) spareBeyond(n int) bool {
	if n == 0 {
		return true
	}
	free := 0
	for _, s := range b.servers {
		if !s.eligible(nil) {
			continue
		}
		if s.cfg.MaxConn == 0 {
			return true
		}
		if free += s.cfg.MaxConn - s.st.active; free > n {
			return true
		}
	}
	return false
}

func (b *backend) pickOrAny(hash uint32, exclude []*serverState) *server {
	if s := b.pick(hash, exclude); s != nil || len(exclude) == 0 {
		return s
	}
	return b.pick(hash, nil)
}

// waiter is a request queued in acquire.
type waiter struct {
	ch chan struct{}
	// handed: a release woke it for its slot (counted in handing).
	handed bool
}

func (st *backendState) removeWaiter(w *waiter) {
	for i, x := range st.waiters {
		if x == w {
			st.waiters = append(st.waiters[:i], st.waiters[i+1:]...)
			return
		}
	}
}

// release frees a slot taken by acquire and hands the chance to take it
// to the first waiter, which leaves the queue: each slot freed wakes a
// waiter of its own. (Signalling the first waiter without dequeuing it
// lost every release that came before it ran: of 32 slots freed at once,
// 15 to 26 took a queued request, the others' waiters staying queued
// beside free slots until their queueTimeout.) A waiter that finds the slot taken
// queues again at the front. One whose wake-up is already pending (a
// wakeAll) would not run twice: the next is woken instead.
func (s *server) release() {
	st := s.st.b
	st.mu.Lock()
	s.st.active--
	st.wakeFirst()
	st.mu.Unlock()
	s.st.m.active.Dec()
}

// wakeFirst takes the first waiter whose wake-up is not already pending
// out of the queue and wakes it, the slot kept for it until it runs
// (handing). Called under st.mu.
func (st *backendState) wakeFirst() {
	for len(st.waiters) > 0 {
		w := st.waiters[0]
		st.waiters = st.waiters[1:]
		select {
		case w.ch <- struct{}{}:
			w.handed = true
			st.handing++
			return
		default:
		}
	}
}

// wakeAll wakes every waiter (a server came up or left: they re-pick).
func (st *backendState) wakeAll() {
	st.mu.Lock()
	for _, w := range st.waiters {
		select {
		case w.ch <- struct{}{}:
		default:
		}
	}
	st.mu.Unlock()
}

// sourceHash hashes a client address for balance: source.
func sourceHash(a netip.Addr) uint32 {
	b := a.As16()
	h := uint32(2166136261) // FNV-1a
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// dial connects to a server within the backend's connect timeout. Not
// Dialer.DialTCP: its local address, even the zero one, is bound before
// connecting, which costs a system call and takes a port from the whole
// ephemeral range instead of the range per server address (under
// thousands of tunnels the connects failed with EADDRINUSE). first, if
// any, is sent as soon as the connection is made (dialTCP).
func (b *backend) dial(s *server, first []byte) (sockConn, int, error) {
	return dialTCP(s.cfg.Address, b.cfg.ConnectTimeout, first)
}

// upConn is a connection to a server.
type upConn struct {
	side
	srv    *serverState
	idleAt int64    // unix nanoseconds it went idle in a pool
	uses   int      // requests served
	own    dialEnds // registered in Proxy.dials (tunnels); zero if none
	sent   int      // bytes of connectServer's first sent by the dial

	peekFn func(uintptr) // u.peek, bound once: Control takes it without allocating
	empty  bool          // peek's answer
	// quiet: its last answer came whole in one read that left nothing
	// behind (TCP_INQ), so it was clean at idleAt.
	quiet bool
}

// quietFresh is how long after its answer a quiet connection is taken as
// still clean without a look (the peek: a system call per request under
// keep-alive load, a fifth of the proxy's). A server's stray bytes or
// close in that time would be caught by the look only if they came before
// the reuse, a race either way, and a closed connection costs a retry (an
// idempotent request) or a 502, as it does when the close comes just
// after the look. Under load a pooled connection is mostly reused within
// a millisecond: with the proxy's core saturated (ka), a quarter of a
// millisecond spared 43 % of the looks, a millisecond 71 %.
const quietFresh = time.Millisecond

// clean reports whether an idle connection can carry a new request:
// nothing arrived on it since its last answer. Bytes would be an answer to
// no request (a server's extra bytes, a body sent after a HEAD's head, or
// late), which the next client would read as its own; an end is a server
// that closed it while idle. HAProxy and nginx close an idle server
// connection as soon as it becomes readable; gitedge's wait for it would
// cost two epoll_ctl calls a request, this check one recv, and none for a
// quiet connection within fresh (quietFresh) of its answer.
func (u *upConn) clean(now, fresh int64) bool {
	if u.quiet {
		u.quiet = false
		if now-u.idleAt < fresh {
			return true
		}
	}
	u.empty = false
	if u.peekFn == nil {
		u.peekFn = u.peek
	}
	if err := u.rc.Control(u.peekFn); err != nil {
		return false
	}
	return u.empty
}

func (u *upConn) peek(fd uintptr) { u.empty = rawPeekEmpty(int(fd)) }

func (u *upConn) setInq(fd uintptr) { u.inq = setInq(fd) }

// quietFresh is the proxy's quietFresh (tests set another).
func (p *Proxy) quietFresh() int64 {
	if f := p.fresh.Load(); f != 0 {
		return max(f, 0)
	}
	return int64(quietFresh)
}

// idlePool keeps a server's idle keep-alive connections, most recently
// used first (warm, and the others age out).
type idlePool struct {
	mu     sync.Mutex
	conns  []*upConn
	closed bool
}

const (
	maxIdlePerServer = 512
	// poolIdleMax bounds how long an idle server connection is kept
	// (HAProxy's pool-purge-delay is 5s; servers close theirs after 60-75s).
	poolIdleMax = 10 * time.Second
)

// get returns a pooled connection, dropping ones idle longer than maxIdle
// and ones that are not clean.
func (p *idlePool) get(now int64, maxIdle time.Duration, fresh int64) *upConn {
	p.mu.Lock()
	for n := len(p.conns); n > 0; n = len(p.conns) {
		c := p.conns[n-1]
		p.conns[n-1] = nil
		p.conns = p.conns[:n-1]
		p.mu.Unlock()
		if now-c.idleAt < int64(maxIdle) && c.clean(now, fresh) {
			return c
		}
		c.c.Close()
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

// put keeps c for reuse; false when the pool is full or closed (the caller
// closes c).
func (p *idlePool) put(c *upConn, now int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.conns) >= maxIdlePerServer {
		return false
	}
	c.idleAt = now
	p.conns = append(p.conns, c)
	return true
}

// sweep closes connections idle longer than maxIdle (oldest first).
func (p *idlePool) sweep(now int64, maxIdle time.Duration) {
	p.mu.Lock()
	i := 0
	for i < len(p.conns) && now-p.conns[i].idleAt >= int64(maxIdle) {
		i++
	}
	stale := make([]*upConn, i)
	copy(stale, p.conns[:i])
	p.conns = append(p.conns[:0], p.conns[i:]...)
	p.mu.Unlock()
	for _, c := range stale {
		c.c.Close()
	}
}

func (p *idlePool) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns, p.closed = nil, true
	p.mu.Unlock()
	for _, c := range conns {
		c.c.Close()
	}
}

func (p *idlePool) len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// closeIdle closes the pooled connections of a server that went down; the
// pool stays open for when it comes back.
func (p *idlePool) closeIdle() {
	p.mu.Lock()
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	for _, c := range conns {
		c.c.Close()
	}
}

// acquireServer takes a slot on one given server (a private connection's
// server, preferred for the client's next request) if it can take one.
func (b *backend) acquireServer(s *server) bool {
	st := b.st
	st.mu.Lock()
	ok := len(st.waiters) == 0 && b.spareBeyond(st.handing) && s.eligible(nil)
	if ok {
		s.st.active++
	}
	st.mu.Unlock()
	if ok {
		s.st.m.active.Inc()
	}
	return ok
}
