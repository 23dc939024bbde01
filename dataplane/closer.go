package dataplane

import (
	"sync"
	"time"
)

// closer closes the sockets of finished tunnels in batches: on the idle
// sweeper's tick (park.go), which comes within closeSweep while a batch
// waits, or at once when closeBatchMax sockets wait. Both peers of
// such a tunnel have had their FIN already (a passed-on EOF, or a
// shutdown when the tunnel ended otherwise): only the descriptors are
// left. close(2) is the one call per connection the proxy cannot make
// raw (the netpoller owns the descriptor), and the first such call after
// the proxy idled wakes the runtime's monitor thread, which then ticks
// every 20 µs while the proxy works: in a profile of new TLS connections
// that was about two context switches per connection. In a batch, the
// monitor wakes once per tick, and the tick is a wake-up the proxy has
// anyway.
type closer struct {
	mu    sync.Mutex
	q     []sockConn
	spare []sockConn
	kick  chan struct{} // buffered (1): the first of a batch starts the sweeper
	flush sync.Mutex    // held while a batch closes
}

func newCloser() closer { return closer{kick: make(chan struct{}, 1)} }

// closeSweep is the longest a batch waits for the sweeper's tick, and
// closeBatchMax the most sockets it holds: a fuller batch closes at
// once, on the goroutine that filled it.
const (
	closeSweep    = 100 * time.Millisecond
	closeBatchMax = 128
)

// close closes a and b with the next batch.
func (k *closer) close(a, b sockConn) {
	k.mu.Lock()
	first := len(k.q) == 0
	k.q = append(k.q, a, b)
	full := len(k.q) >= closeBatchMax
	k.mu.Unlock()
	if full {
		k.run()
		return
	}
	if first {
		select {
		case k.kick <- struct{}{}:
		default:
		}
	}
}

// pending reports whether a batch waits.
func (k *closer) pending() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.q) > 0
}

// run closes the batch waiting. Called by the sweeper, and by a stopping
// proxy once every connection has ended.
func (k *closer) run() {
	k.flush.Lock()
	defer k.flush.Unlock()
	k.mu.Lock()
	q := k.q
	k.q, k.spare = k.spare[:0], nil
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
