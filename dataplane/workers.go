package dataplane

import "sync/atomic"

// job is work for a pooled goroutine: a new connection to serve, a
// tunnel direction to relay, a parked connection that became readable.
type job interface{ work() }

// workers runs jobs on goroutines that outlive them. A fresh goroutine
// starts on a small stack and grows it (copying it each time) through the
// accept, ClientHello and connect path; a profile of new connections
// showed a tenth of the proxy's CPU in that growth and in starting
// goroutines. A worker keeps its grown stack, and waits for the next job
// as one of at most maxIdleWorkers idle workers: their stacks are all an
// idle proxy keeps (64 of them added 120 bytes per idle connection to the
// mem scenario's 9,000); under load, workers freed by ending connections
// are taken by new ones at once, so a few idle ones suffice.
type workers struct {
	ch   chan job // unbuffered: a send succeeds only to an idle worker
	idle atomic.Int32
}

const maxIdleWorkers = 16

func newWorkers() *workers { return &workers{ch: make(chan job)} }

// run starts j on an idle worker, or on a new one.
func (w *workers) run(j job) {
	select {
	case w.ch <- j:
	default:
		go w.loop(j)
	}
}

func (w *workers) loop(j job) {
	for {
		j.work()
		if w.idle.Add(1) > maxIdleWorkers {
			w.idle.Add(-1)
			return
		}
		var ok bool
		j, ok = <-w.ch
		w.idle.Add(-1)
		if !ok {
			return
		}
	}
}

// close ends the idle workers. Nothing may call run after it.
func (w *workers) close() { close(w.ch) }
