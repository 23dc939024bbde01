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
	t.touch(time.Now().UnixNano())
	done := make(chan int64, 1)
	go t.pumpBA(done)
	aToB = t.pump(&t.ab)
	return aToB, <-done
}

// pumpBA is the second direction's goroutine, named for stack dumps.
func (t *tunnel) pumpBA(done chan<- int64) { done <- t.pump(&t.ba) }

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
