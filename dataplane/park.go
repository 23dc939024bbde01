package dataplane

import (
	"math"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// An idle keep-alive connection need not own a goroutine. Once it has
// waited idleLinger with nothing buffered, the sweeper interrupts its wait
// and it parks: its goroutine ends and its httpConn (buffers, parse state)
// goes back to the pool, leaving the clientConn and the socket. The parker
// holds parked sockets in an epoll set of its own (EPOLLONESHOT), whose
// descriptor is itself waited on through Go's netpoller by one goroutine;
// when a parked socket becomes readable, that goroutine starts a new one
// to serve it. Parked connections expire at the read deadline they had
// (clientTimeout, or requestTimeout before the first request, or a tls
// connection's inspectTimeout before its ClientHello).
//
// Busy connections never park: the linger keeps the per-request path as
// it was (a wait in the netpoller), so only connections idle for longer
// than a loaded client's think time pay the park and resume (two epoll
// calls and a hand-over to a worker goroutine).
//
// A TLS tunnel parks the same way, one direction at a time (tunnel.go):
// an idle passthrough connection then holds no goroutine either. So does
// a TLS connection whose client has not sent its ClientHello after the
// linger (a scanner, or a client holding connections open for later):
// it holds no buffer either until its first bytes come.

const (
	// idleLinger is how long an idle connection or tunnel direction keeps
	// its goroutine before it parks: longer than a loaded client's think
	// time or a TLS handshake's round trip, so that busy connections never
	// pay a park and a wake-up per request (with a 5 ms linger, a CPU
	// profile of keep-alive load on a loaded machine showed most requests
	// served on woken connections). When more than manyIdle waits linger at once (a crowd
	// of new or idle connections), they park after busyLinger instead, so
	// that lingering goroutines never add up to much memory. The sweeper
	// runs every idleSweep, every crowdSweep in a crowd: so a wait parks
	// within half a linger of its due time, and a proxy with a few
	// connections open is not woken up 200 times a second (each wake-up
	// of the proxy's thread also wakes the Go runtime's monitor thread:
	// that was a third of the context switches per new TLS connection).
	idleLinger = 50 * time.Millisecond
	busyLinger = 5 * time.Millisecond
	// tunnelLinger is the linger of a tunnel direction outside a crowd:
	// shorter, since a passthrough connection costs twice the goroutines,
	// and still past a handshake's round trip on a loaded machine.
	tunnelLinger = 20 * time.Millisecond
	// tunnelYoung: outside a crowd, a tunnel younger than this never
	// parks. Its first waits are a TLS handshake's round trips (tens of
	// milliseconds on the Internet, or on a loaded machine), each of
	// which would otherwise cost a park and a wake-up per direction (an
	// epoll_ctl, a timer, a hand-over to a worker): most of a short
	// connection's CPU in a profile of new TLS connections under load.
	tunnelYoung = time.Second
	manyIdle    = 256
	idleSweep   = 20 * time.Millisecond
	crowdSweep  = busyLinger
	// quietSweep bounds the sweeper's sleep while only young tunnels
	// (and connections waiting for a ClientHello) wait idle: no tunnel
	// may park before the oldest comes of age, a ClientHello comes
	// within a round trip, and a tick 50 times a second
	// for nothing was a wake-up of the proxy's thread and of the
	// runtime's monitor each (a tenth of the context switches per new
	// TLS connection). A crowd, or a new http connection, wakes the
	// sweeper at once.
	quietSweep = 250 * time.Millisecond
)

// parkFields is the state the parker and the sweeper need of something
// that can park: an idle http connection, a tls one before its
// ClientHello, or one direction of a tunnel.
type parkFields struct {
	state atomic.Int32 // stBusy, stIdle, stPoking, stPoked, stParked
	// idleAt is when the current idle wait began (unix ns), or while
	// parked, when it expires (0: never).
	idleAt  atomic.Int64
	parkReq atomic.Bool // the sweeper asks the waiting goroutine to park
	inEpoll bool        // registered in the parker's epoll set
	parkIdx int32       // index in the expiry heap; -1 outside. Guarded by parker.mu
	parkFD  int32       // the descriptor waited on, as the last read saw it
	parkGen uint32      // counts parkings, to tell a stale readiness event
}

// lingerCount counts the goroutines waiting idle (that the sweeper may
// ask to park). The sweeper runs only while there are some: an idle proxy
// wakes up for nothing (a 5 ms ticker cost an idle proxy 1.3% of its core,
// 160 µs per connection at 80 new connections a second). The first
// waiter kicks it.
type lingerCount struct {
	n    atomic.Int64
	kick chan struct{} // buffered (1): a kick is never lost
}

func (l *lingerCount) Add(d int64) {
	if n := l.n.Add(d); d > 0 && (n == 1 || n == manyIdle+1) { // the first, or a crowd forming
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

func (l *lingerCount) Load() int64 { return l.n.Load() }

// enterIdle marks a wait for bytes, since now; lingering counts them.
func (f *parkFields) enterIdle(lingering *lingerCount, now int64) {
	f.idleAt.Store(now)
	f.state.Store(stIdle)
	lingering.Add(1)
}

// leaveIdle marks the wait over. poked: a drain or the sweeper set a read
// deadline in the past meanwhile (the caller forgets its own deadline
// bookkeeping); parkAsked: that was the sweeper, asking to park.
func (f *parkFields) leaveIdle(lingering *lingerCount) (poked, parkAsked bool) {
	lingering.Add(-1)
	if f.state.CompareAndSwap(stIdle, stBusy) {
		return false, false
	}
	for f.state.Load() == stPoking {
		runtime.Gosched()
	}
	f.state.Store(stBusy)
	return true, f.parkReq.Swap(false)
}

// askPark interrupts the idle wait on c so that its goroutine parks.
// Called by the sweeper; a wait that ended meanwhile is left alone.
func (f *parkFields) askPark(c sockConn) {
	f.parkReq.Store(true)
	if f.state.CompareAndSwap(stIdle, stPoking) {
		_ = c.SetReadDeadline(time.Unix(1, 0))
		f.state.Store(stPoked)
		return
	}
	f.parkReq.Store(false)
}

// parkable is what the parker holds.
type parkable interface {
	fields() *parkFields
	// due is when it expires now (unix ns); activity elsewhere (the other
	// direction of a tunnel) may have moved it past the parked deadline.
	due() int64
	// refuse reports that it must not park now (a drain started).
	refuse() bool
	// job: work serves it again, on a worker goroutine: bytes arrived.
	job
	// expire ends it: its deadline passed, or a drain took it.
	expire()
}

// parker holds parked connections. The zero value is ready; the epoll set
// and its goroutine start with the first park.
type parker struct {
	p *Proxy

	mu     sync.Mutex
	ep     int
	f      *os.File // ep, waited on by the netpoller
	rc     syscall.RawConn
	closed bool
	// failed: the epoll set could not be made (EMFILE in a flood).
	// Nothing parks from then on, and the sweeper stops asking: idle
	// connections and tunnels wait with their goroutines, to their
	// deadlines, as they would without parking.
	failed atomic.Bool
	held   map[int32]parkable // by parkFD
	exp    []parkable         // min-heap on idleAt (the expiry)
	timer  *time.Timer
	wg     sync.WaitGroup
}

// take removes x, which the caller moved out of stParked, from the
// parker. Called under k.mu.
func (k *parker) take(x parkable) {
	f := x.fields()
	if k.held[f.parkFD] == x {
		delete(k.held, f.parkFD)
	}
	k.remove(x)
}

// release ends a parked x the caller moved out of stParked (a drain).
func (k *parker) release(x parkable) {
	k.mu.Lock()
	k.take(x)
	k.mu.Unlock()
	x.expire()
}

// expire ends what stayed parked past its deadline.
func (k *parker) expire() {
	now := time.Now().UnixNano()
	var due []parkable
	k.mu.Lock()
	for len(k.exp) > 0 {
		x := k.exp[0]
		f := x.fields()
		if f.idleAt.Load() > now {
			break
		}
		if d := x.due(); d > now {
			// Still in use (a tunnel's other direction moved bytes).
			f.idleAt.Store(d)
			k.down(0)
			continue
		}
		k.remove(x)
		if f.state.CompareAndSwap(stParked, stBusy) {
			k.take(x)
			due = append(due, x)
		}
	}
	if len(k.exp) > 0 && !k.closed {
		k.timer.Reset(time.Until(time.Unix(0, k.exp[0].fields().idleAt.Load())))
	}
	k.mu.Unlock()
	for _, x := range due {
		x.expire()
	}
}

// close stops the parker once nothing is parked any more.
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
}

// The expiry heap, ordered by idleAt (the expiry); each entry knows its index.

func (k *parker) at(i int) int64 { return k.exp[i].fields().idleAt.Load() }

func (k *parker) push(x parkable) {
	x.fields().parkIdx = int32(len(k.exp))
	k.exp = append(k.exp, x)
	k.up(len(k.exp) - 1)
}

func (k *parker) remove(x parkable) {
	f := x.fields()
	i := int(f.parkIdx)
	if i < 0 {
		return
	}
	last := len(k.exp) - 1
	if i != last {
		k.swap(i, last)
	}
	k.exp[last] = nil
	k.exp = k.exp[:last]
	f.parkIdx = -1
	if i != last {
		k.down(i)
		k.up(i)
	}
}

func (k *parker) swap(i, j int) {
	k.exp[i], k.exp[j] = k.exp[j], k.exp[i]
	k.exp[i].fields().parkIdx, k.exp[j].fields().parkIdx = int32(i), int32(j)
}

func (k *parker) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if k.at(p) <= k.at(i) {
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
		if r := l + 1; r < n && k.at(r) < k.at(l) {
			m = r
		}
		if k.at(i) <= k.at(m) {
			return
		}
		k.swap(i, m)
		i = m
	}
}

// tunnelYoung is tunnelYoung in nanoseconds, or the tests' replacement.
func (p *Proxy) tunnelYoung() int64 {
	if y := p.young.Load(); y != 0 {
		return max(y, 0)
	}
	return int64(tunnelYoung)
}

// sweepIdle asks the http connections, the tls ones waiting for their
// ClientHello and the tunnel directions idle for idleLinger (busyLinger
// in a crowd) to park. It returns when to sweep again: 0 when no
// goroutine waits idle; up to quietSweep when only young tunnels (or tls
// connections before their ClientHello) wait: a young tunnel parks once
// it comes of age, a silent connection at the next sweep past its linger.
func (p *Proxy) sweepIdle() time.Duration {
	n := p.lingering.Load()
	if n == 0 || p.park.failed.Load() {
		return 0
	}
	linger := idleLinger
	crowd := n > manyIdle
	if crowd {
		linger = busyLinger
	}
	if l := p.linger.Load(); l > 0 {
		linger = time.Duration(l)
	}
	now := time.Now().UnixNano()
	cut, tunCut := now-int64(linger), now-int64(min(linger, tunnelLinger))
	young := p.tunnelYoung()
	bornCut := now - young // tunnels born after it park only in a crowd
	if crowd {
		bornCut = now
	}
	quiet := !crowd                 // only young tunnels seen so far
	var ofAge int64 = math.MaxInt64 // when the youngest-but-oldest tunnel may park
	p.mu.Lock()
	for _, s := range p.socks {
		s.mu.Lock()
		for c := range s.conns {
			switch {
			case c.httpMode:
				quiet = false
				if c.state.Load() == stIdle && c.idleAt.Load() <= cut {
					c.askPark(c.cl.c)
				}
			default:
				t := c.tun.Load()
				switch {
				case t == nil:
					// Before its tunnel: waiting for its ClientHello (idle),
					// or routing it. A client silent past the linger parks
					// as an idle http connection does, at a sweep the
					// others set the pace of: a ClientHello comes within a
					// round trip, so waits that long are rare, and a sweep
					// for each new connection's first wait would not be.
					if c.state.Load() == stIdle && c.idleAt.Load() <= cut {
						c.askPark(c.cl.c)
					}
				case t.born <= bornCut:
					quiet = false
					t.sweep(tunCut)
				default:
					ofAge = min(ofAge, t.born+young)
				}
			}
		}
		s.mu.Unlock()
	}
	p.mu.Unlock()
	switch {
	case crowd:
		return crowdSweep
	case quiet:
		return min(max(time.Duration(ofAge-now), idleSweep), quietSweep)
	}
	return idleSweep
}
