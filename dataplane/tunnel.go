package dataplane

import (
	"errors"
	"sync/atomic"
	"time"
)

// tunnel relays bytes both ways between two sides (TLS passthrough, or an
// HTTP upgrade) until both directions end. A direction that reaches EOF
// half-closes the other side's write end and the other direction goes on.
// The tunnel is idle when no byte moved either way for its idle timeout
// (HAProxy's timeout tunnel); a direction whose read times out while the
// other is busy keeps waiting.
//
// A parking tunnel (TLS passthrough) lets a direction that waited
// idleLinger for bytes give up its goroutine: the direction parks on its
// source descriptor (park.go) and a worker goes on with it when bytes
// arrive, so an idle passthrough connection holds no goroutine.
type tunnel struct {
	p      *Proxy
	a, b   *side
	ab, ba tunDir
	idle   time.Duration
	born   int64        // unix nanoseconds it was made; read by the sweeper
	last   atomic.Int64 // unix nanoseconds of the last byte moved
	parks  bool

	left atomic.Int32 // directions still running
	done func(aToB, bToA int64)
}

// tunDir is one direction of a tunnel: what it moves, what it moved, and
// its parking state.
type tunDir struct {
	parkFields
	t     *tunnel
	m     mover
	total int64
	ended atomic.Bool
	// out: a write waits for the destination to take bytes (due).
	out atomic.Bool
}

// errParkAsked is a mover's idle wait interrupted by the sweeper.
var errParkAsked = errors.New("asked to park")

func newTunnel(p *Proxy, a, b *side, idle time.Duration, parks bool) *tunnel {
	t := &tunnel{p: p, a: a, b: b, idle: idle, parks: parks, born: time.Now().UnixNano()}
	a.timeout, b.timeout = idle, idle
	for _, d := range []*tunDir{&t.ab, &t.ba} {
		d.t = t
		d.parkIdx = -1
		d.parkFD = -1 // until a read sees the source (park refuses it)
		d.m.tun = d
		d.m.lazyAck = true
		d.m.bind()
		if parks {
			d.m.park, d.m.lingering = &d.parkFields, &p.lingering
		}
	}
	t.ab.m.src, t.ab.m.dst = a, b
	t.ba.m.src, t.ba.m.dst = b, a
	if parks {
		// Stopping at short reads (copyIn) once the tunnel is as old as
		// one that may park: the parker is what catches a reset the stop
		// cannot see.
		t.ab.m.inqFrom = t.born + p.tunnelYoung()
		t.ba.m.inqFrom = t.ab.m.inqFrom
	}
	return t
}

func (t *tunnel) touch(now int64) { t.last.Store(now) }

// run relays until both directions end and returns the bytes moved from a
// to b and from b to a. The caller closes both conns.
func (t *tunnel) run() (aToB, bToA int64) {
	ch := make(chan [2]int64, 1)
	t.start(func(ab, ba int64) { ch <- [2]int64{ab, ba} })
	r := <-ch
	return r[0], r[1]
}

// start relays on two worker goroutines and calls done once both
// directions have ended. An idle tunnel gives them back when it parks.
func (t *tunnel) start(done func(aToB, bToA int64)) {
	t.touch(time.Now().UnixNano())
	t.done = done
	t.left.Store(2)
	t.p.workers.run(&t.ab)
	t.p.workers.run(&t.ba)
}

// pump moves bytes one way until the direction ends or parks.
func (t *tunnel) pump(d *tunDir) {
	m := &d.m
	for {
		n, err := m.move(-1)
		d.total += n
		switch {
		case err == nil:
			// EOF from the source: pass the half-close on.
			m.dst.closeWrite()
			t.finish(d)
			return
		case err == errParkAsked:
			if t.p.park.park(d, d.due()) {
				return // wake goes on with it
			}
			// The short-read stop needs the parker to see a reset (copyIn).
			m.inq = false
			continue
		case isTimeout(err) && m.readTimedOut && t.active():
			continue
		}
		// An error or a truly idle tunnel: cut both ways, then end.
		t.cut(m.gone(err))
		t.finish(d)
		return
	}
}

// finish ends a direction, once.
func (t *tunnel) finish(d *tunDir) {
	if !d.ended.CompareAndSwap(false, true) {
		return
	}
	if t.left.Add(-1) == 0 {
		t.done(t.ab.total, t.ba.total)
	}
}

// cut shuts both sides down and ends the directions that are parked
// (nothing would wake them); running directions end on their next read
// (an EOF) or write (EPIPE), and the tunnel's owner closes the sockets
// once both have ended. A raw shutdown rather than a close: close(2) is
// a call the runtime sees (see closer), and a close would not reach a
// direction parked on the descriptor anyway. gone, when not nil, is a
// side its peer reset: there is no one left to tell (a shutdown would
// fail with ENOTCONN), so it is skipped.
func (t *tunnel) cut(gone *side) {
	if t.a != gone {
		t.a.shutdown()
	}
	if t.b != gone {
		t.b.shutdown()
	}
	for _, d := range []*tunDir{&t.ab, &t.ba} {
		if d.state.CompareAndSwap(stParked, stBusy) {
			t.p.park.mu.Lock()
			t.p.park.take(d)
			t.p.park.mu.Unlock()
			t.finish(d)
		}
	}
}

// sweep asks the directions idle since before cut to park. Called by the
// sweeper.
func (t *tunnel) sweep(cut int64) {
	for _, d := range []*tunDir{&t.ab, &t.ba} {
		if d.state.Load() == stIdle && d.idleAt.Load() <= cut {
			d.askPark(d.m.src.c)
		}
	}
}

// The parker's view of a tunnel direction.

func (d *tunDir) fields() *parkFields { return &d.parkFields }
func (d *tunDir) refuse() bool        { return false }

// due is when the tunnel is idle for its timeout.
func (d *tunDir) due() int64 { return d.t.due(time.Now().UnixNano()) }

// due is when the tunnel is idle for its timeout, by the last byte moved
// either way. A direction waiting to write is not idle, however long its
// peer takes to drain a chunk (the kernel may wake the write less often
// than the timeout): the clock moves on, and the write's own timeout cuts
// a peer that stopped reading (side.stalled).
func (t *tunnel) due(now int64) int64 {
	last := t.last.Load()
	if last+int64(t.idle) <= now && (t.ab.out.Load() || t.ba.out.Load()) {
		t.touch(now)
		last = now
	}
	return last + int64(t.idle)
}

// active reports that the tunnel is not idle now.
func (t *tunnel) active() bool {
	now := time.Now().UnixNano()
	return t.due(now) > now
}

// work moves bytes until the direction ends or parks: the relay started,
// or the source became readable.
func (d *tunDir) work() { d.t.pump(d) }

// expire ends an idle tunnel.
func (d *tunDir) expire() {
	d.t.cut(nil)
	d.t.finish(d)
}
