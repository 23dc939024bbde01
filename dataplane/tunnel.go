package dataplane

import (
	"sync/atomic"
	"time"
)

// tunnel relays bytes both ways between two sides (TLS passthrough, or an
// HTTP upgrade) until both directions end. A direction that reaches EOF
// half-closes the other side's write end and the other direction goes on.
// The tunnel is idle when no byte moved either way for its idle timeout
// (HAProxy's timeout tunnel); a direction whose read times out while the
// other is busy keeps waiting.
type tunnel struct {
	a, b   *side
	ab, ba mover
	idle   time.Duration
	last   atomic.Int64 // unix nanoseconds of the last byte moved

	left     atomic.Int32 // directions still running
	nAB, nBA int64
	done     func(aToB, bToA int64)
}

func newTunnel(a, b *side, idle time.Duration) *tunnel {
	t := &tunnel{a: a, b: b, idle: idle}
	a.timeout, b.timeout = idle, idle
	t.ab = mover{src: a, dst: b, onProgress: t.touch}
	t.ba = mover{src: b, dst: a, onProgress: t.touch}
	t.ab.bind()
	t.ba.bind()
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

// start relays on two new goroutines and calls done once both directions
// have ended. Fresh goroutines keep an idle tunnel small: their stacks hold
// only the relay loop, not the depth of the ClientHello read and the
// connect that came before.
func (t *tunnel) start(done func(aToB, bToA int64)) {
	t.touch(time.Now().UnixNano())
	t.done = done
	t.left.Store(2)
	go t.pumpAB()
	go t.pumpBA()
}

// pumpAB and pumpBA are the directions' goroutines, named for stack dumps.
func (t *tunnel) pumpAB() {
	t.nAB = t.pump(&t.ab)
	t.finish()
}

func (t *tunnel) pumpBA() {
	t.nBA = t.pump(&t.ba)
	t.finish()
}

func (t *tunnel) finish() {
	if t.left.Add(-1) == 0 {
		t.done(t.nAB, t.nBA)
	}
}

func (t *tunnel) pump(m *mover) int64 {
	var total int64
	for {
		n, err := m.move(-1)
		total += n
		if err == nil {
			// EOF from the source: pass the half-close on.
			_ = m.dst.c.CloseWrite()
			return total
		}
		if isTimeout(err) && m.readTimedOut && time.Now().UnixNano()-t.last.Load() < int64(t.idle) {
			continue
		}
		// An error or a truly idle tunnel: cut both ways.
		t.a.c.Close()
		t.b.c.Close()
		return total
	}
}
