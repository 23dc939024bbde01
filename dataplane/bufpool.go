package dataplane

import "sync"

// bufSize is the size of a pooled I/O buffer: one request or response head
// plus the first body bytes, or one TLS record.
const bufSize = 16 << 10

// maxIdleBufs bounds the buffers kept for reuse (2 MiB): enough for the
// requests in flight at once, never a copy per idle connection.
const maxIdleBufs = 128

// buffer is a pooled byte slice. Connections take one only while bytes are
// in flight and give it back before they wait, so an idle connection holds
// none (DATAPLANE-NOTES: idle memory).
type buffer struct {
	b []byte
}

// bufs is a plain free list rather than a sync.Pool: a garbage collection
// does not empty it, so the steady state allocates nothing, also under the
// race detector (which makes sync.Pool drop items on purpose).
var bufs struct {
	sync.Mutex
	free []*buffer
}

func getBuf() *buffer {
	bufs.Lock()
	if n := len(bufs.free); n > 0 {
		b := bufs.free[n-1]
		bufs.free[n-1] = nil
		bufs.free = bufs.free[:n-1]
		bufs.Unlock()
		return b
	}
	bufs.Unlock()
	return &buffer{b: make([]byte, bufSize)}
}

// putBuf returns a buffer; oversized ones (grown for a large head) are
// dropped so the pool stays at bufSize.
func putBuf(b *buffer) {
	if b == nil || cap(b.b) != bufSize {
		return
	}
	b.b = b.b[:bufSize]
	bufs.Lock()
	if len(bufs.free) < maxIdleBufs {
		bufs.free = append(bufs.free, b)
	}
	bufs.Unlock()
}
