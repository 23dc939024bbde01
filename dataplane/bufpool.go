package dataplane

import (
	"sync"
	"time"
)

// bufSize is the size of a pooled I/O buffer: one request or response head
// plus the first body bytes, or one TLS record.
const bufSize = 16 << 10

// bufTrimEvery is the window of bufPool.trim: buffers that no get needed
// for that long are freed.
const bufTrimEvery = 10 * time.Second

// buffer is a pooled byte slice. Connections take one only while bytes are
// in flight and give it back before they wait, so an idle connection holds
// none.
type buffer struct {
	b []byte
}

// bufPool is a plain free list rather than a sync.Pool: a garbage
// collection does not empty it, so the steady state allocates nothing,
// also under the race detector (which makes sync.Pool drop items on
// purpose). It keeps every buffer given back, and trim frees those a
// whole window did not need: the list follows the peak of buffers in
// flight rather than a fixed bound. A bound of 128 (2 MiB), with 64 new
// connections at a time each holding two or three buffers while its
// server answered, allocated 6 KB a request and collected garbage every
// 60 ms (bench close).
type bufPool struct {
	mu      sync.Mutex
	free    []*buffer
	low     int   // the fewest free since the last trim
	trimmed int64 // unix nanoseconds of the last trim
}

// bufs is the proxy's pool (one per process: proxies of a reload share it).
var bufs bufPool

func getBuf() *buffer    { return bufs.get() }
func putBuf(b *buffer)   { bufs.put(b) }
func trimBufs(now int64) { bufs.trim(now) }

func (p *bufPool) get() *buffer {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		b := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.low = min(p.low, n-1)
		p.mu.Unlock()
		return b
	}
	p.low = 0
	p.mu.Unlock()
	return &buffer{b: make([]byte, bufSize)}
}

// put gives a buffer back; oversized ones (grown for a large head) are
// dropped so the pool stays at bufSize.
func (p *bufPool) put(b *buffer) {
	if b == nil || cap(b.b) != bufSize {
		return
	}
	b.b = b.b[:bufSize]
	p.mu.Lock()
	p.free = append(p.free, b)
	p.mu.Unlock()
}

// trim frees the buffers that stayed free through the last window (its
// fewest free): a burst's buffers go back to the heap, those the steady
// load takes stay. It acts at most once per bufTrimEvery; the proxy calls
// it on its pool sweep.
func (p *bufPool) trim(now int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now-p.trimmed < int64(bufTrimEvery) {
		return
	}
	p.trimmed = now
	keep := len(p.free) - p.low
	clear(p.free[keep:])
	p.free = p.free[:keep]
	if cap(p.free) > 64 && keep < cap(p.free)/4 {
		p.free = append([]*buffer(nil), p.free...) // a burst's list goes too
	}
	p.low = keep
}
