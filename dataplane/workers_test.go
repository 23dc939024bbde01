package dataplane

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// jobFunc is a job for the tests.
type jobFunc func()

func (f jobFunc) work() { f() }

// holdWorkers runs n jobs at once on w and returns a release that lets
// them end, once all n run.
func holdWorkers(t *testing.T, w *workers, n int) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	var started sync.WaitGroup
	started.Add(n)
	for range n {
		w.run(jobFunc(func() {
			started.Done()
			<-gate
		}))
	}
	started.Wait()
	return func() { close(gate) }
}

// eventually polls cond for up to waitFor.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, waitFor)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWorkersTrim: workers freed by a burst stay idle (up to
// maxIdleWorkers) for the next one, and trim retires those a whole window
// did not need, down to minIdleWorkers.
func TestWorkersTrim(t *testing.T) {
	w := newWorkers()
	alive := func(n int) func() bool {
		return func() bool { return int(w.live.Load()) == n && int(w.idle.Load()) == n }
	}

	// A burst wider than the bound: what is over it ends.
	holdWorkers(t, w, maxIdleWorkers+44)()
	eventually(t, "a burst's workers idle, at most maxIdleWorkers", alive(maxIdleWorkers))

	// The next burst takes them: no goroutine is started.
	release := holdWorkers(t, w, 100)
	if n := w.live.Load(); n != maxIdleWorkers {
		t.Fatalf("workers while 100 jobs run on %d idle ones: %d, want %d", maxIdleWorkers, n, maxIdleWorkers)
	}
	release()
	eventually(t, "workers idle again", alive(maxIdleWorkers))

	window := int64(workerTrimEvery)
	now := 5 * window
	tests := []struct {
		name string
		busy int   // jobs held at once during the window before the trim
		at   int64 // the trim's time
		want int   // idle workers after it
	}{
		// The first trim saw no window yet (workers were started in it).
		{"first trim", 0, now, maxIdleWorkers},
		{"too soon", 0, now + window - 1, maxIdleWorkers},
		// 100 were used at once: 156 were idle all along, and all but
		// minIdleWorkers of them go.
		{"a window with 100 busy", 100, now + window, 100 + minIdleWorkers},
		{"a window with 20 busy", 20, now + 2*window, 20 + minIdleWorkers},
		{"an idle window", 0, now + 3*window, minIdleWorkers},
		{"never fewer than minIdleWorkers", 0, now + 4*window, minIdleWorkers},
	}
	for _, tt := range tests {
		if tt.busy > 0 {
			holdWorkers(t, w, tt.busy)()
			eventually(t, tt.name+": the busy ones idle again", func() bool { return w.live.Load() == w.idle.Load() })
		}
		w.trim(tt.at)
		eventually(t, tt.name, alive(tt.want))
	}

	w.close()
	eventually(t, "close ends the idle workers", func() bool { return w.live.Load() == 0 })
	w.trim(now + 10*window) // after close: nothing, and no panic
}

// TestWorkersTrimRace: trims while jobs start and end lose no job; close
// after them ends every worker.
func TestWorkersTrimRace(t *testing.T) {
	w := newWorkers()
	var ran atomic.Int64
	var wg sync.WaitGroup
	const starters, jobs = 8, 500
	for range starters {
		wg.Go(func() {
			for i := range jobs {
				w.run(jobFunc(func() {
					if i%7 == 0 {
						time.Sleep(10 * time.Microsecond)
					}
					ran.Add(1)
				}))
			}
		})
	}
	stop := make(chan struct{})
	trimmed := make(chan struct{})
	go func() {
		defer close(trimmed)
		now := int64(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			now += int64(workerTrimEvery)
			w.trim(now)
			runtime.Gosched()
		}
	}()
	wg.Wait()
	eventually(t, "every job ran", func() bool { return ran.Load() == starters*jobs })
	close(stop)
	<-trimmed
	w.close()
	eventually(t, "close ends the idle workers", func() bool { return w.live.Load() == 0 })
}
