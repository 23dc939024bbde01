package dataplane

import "sync"

// bufSize is the size of a pooled I/O buffer: one request or response head
// plus the first body bytes, or one TLS record.
const bufSize = 16 << 10

// buffer is a pooled byte slice. Connections take one only while bytes are
// in flight and give it back before they wait, so an idle connection holds
// none (DATAPLANE-NOTES: idle memory).
type buffer struct {
	b []byte
}

var bufPool = sync.Pool{New: func() any { return &buffer{b: make([]byte, bufSize)} }}

func getBuf() *buffer { return bufPool.Get().(*buffer) }

// putBuf returns a buffer; oversized ones (grown for a large head) are
// dropped so the pool stays at bufSize.
func putBuf(b *buffer) {
	if b == nil || cap(b.b) != bufSize {
		return
	}
	b.b = b.b[:bufSize]
	bufPool.Put(b)
}
