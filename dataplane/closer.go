package dataplane

import (
	"sync"
	"time"
)

// closer closes the sockets of finished tunnels in batches, closeBatch
// after the first of a batch. Both directions of such a tunnel ended
// with an EOF and passed it on (shutdown), so each peer has had its FIN
// and nothing is left to send: only the descriptor remains. close(2) is
// the one call per connection the proxy cannot make raw (the netpoller
// owns the descriptor), and the first such call after the proxy idled
// wakes the runtime's monitor thread, which then ticks every 20 µs while
// the proxy works: with one close per connection, that was about two
// context switches per new TLS connection. In a batch, the monitor wakes
// once per batch.
type closer struct {
	mu    sync.Mutex
	q     []sockConn
	spare []sockConn
	t     *time.Timer
	armed bool
	flush sync.Mutex // held while a batch closes
}

// closeBatch is how long a finished tunnel's descriptors may wait: short
// against any descriptor limit (at 10,000 connections a second, 100 wait).
const closeBatch = 10 * time.Millisecond

// close closes a and b within closeBatch.
func (k *closer) close(a, b sockConn) {
	k.mu.Lock()
	k.q = append(k.q, a, b)
	if !k.armed {
		k.armed = true
		if k.t == nil {
			k.t = time.AfterFunc(closeBatch, k.run)
		} else {
			k.t.Reset(closeBatch)
		}
	}
	k.mu.Unlock()
}

// run closes the batch waiting; also called by a stopping proxy.
func (k *closer) run() {
	k.flush.Lock()
	defer k.flush.Unlock()
	k.mu.Lock()
	q := k.q
	k.q, k.spare = k.spare[:0], nil
	k.armed = false
	k.mu.Unlock()
	for i, c := range q {
		c.Close()
		q[i] = nil
	}
	k.mu.Lock()
	if k.spare == nil {
		k.spare = q[:0]
	}
	k.mu.Unlock()
}
