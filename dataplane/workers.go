package dataplane

import (
	"sync"
	"sync/atomic"
	"time"
)

// job is work for a pooled goroutine: a new connection to serve, a
// tunnel direction to relay, a parked connection that became readable.
type job interface{ work() }

// workers runs jobs on goroutines that outlive them. A fresh goroutine
// starts on a small stack and grows it (copying it each time) through the
// accept, ClientHello and connect path; a profile of new connections
// showed a tenth of the proxy's CPU in that growth and in starting
// goroutines. A worker keeps its grown stack, and waits for the next job
// as one of at most maxIdleWorkers idle workers.
//
// The bound follows the load, as the buffer pool does (bufpool.go): a
// worker is kept through a burst as wide as maxIdleWorkers, and trim
// retires those a whole window did not need, down to minIdleWorkers.
// With a fixed bound of 16, 64 clients opening a connection per request
// (bench close and tls-close) left more connections waiting at once than
// idle workers after each burst of accepts: 2 to 4 % of the proxy's CPU
// went to starting goroutines and growing their stacks (pprof,
// runtime.newstack and runtime.newproc), none with 256. What an idle
// proxy keeps is minIdleWorkers stacks.
type workers struct {
	ch   chan job // unbuffered: a send succeeds only to an idle worker
	idle atomic.Int32
	low  atomic.Int32 // the fewest idle workers since the last trim
	live atomic.Int32 // workers, busy or idle

	mu      sync.Mutex // trim against close
	closed  bool
	trimmed int64 // unix nanoseconds of the last trim
}

const (
	maxIdleWorkers = 256
	minIdleWorkers = 16
	// workerTrimEvery is the window trim judges: a worker idle through
	// all of it is retired.
	workerTrimEvery = 10 * time.Second
)

// retire is the job that ends the idle worker taking it.
type retire struct{}

func (retire) work() {}

func newWorkers() *workers { return &workers{ch: make(chan job)} }

// run starts j on an idle worker, or on a new one.
func (w *workers) run(j job) {
	select {
	case w.ch <- j:
	default:
		w.low.Store(0)
		w.live.Add(1)
		go w.loop(j)
	}
}

func (w *workers) loop(j job) {
	defer w.live.Add(-1)
	for {
		j.work()
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		var ok bool
		j, ok = <-w.ch
		if _, quit := j.(retire); quit {
			return // trim counted it out
		}
		n := w.idle.Add(-1)
		if !ok {
			return
		}
		for l := w.low.Load(); n < l && !w.low.CompareAndSwap(l, n); l = w.low.Load() {
		}
	}
}

// trim retires the workers that stayed idle through the last window, but
// minIdleWorkers. It acts at most once per workerTrimEvery; the proxy
// calls it on its pool sweep.
func (w *workers) trim(now int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || now-w.trimmed < int64(workerTrimEvery) {
		return
	}
	w.trimmed = now
retiring:
	for n := w.low.Load() - minIdleWorkers; n > 0; n-- {
		select {
		case w.ch <- retire{}:
			w.idle.Add(-1)
		default:
			break retiring // none idle after all: taken meanwhile
		}
	}
	w.low.Store(w.idle.Load())
}

// close ends the idle workers. Nothing may call run after it.
func (w *workers) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	close(w.ch)
}
