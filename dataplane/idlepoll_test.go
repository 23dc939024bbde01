package dataplane

import (
	"math"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func TestNextWindow(t *testing.T) {
	const us = time.Microsecond
	for _, c := range []struct {
		name          string
		w, slept, max time.Duration
		want          time.Duration
	}{
		{"a longer window would have caught it: double", 25 * us, 50 * us, 200 * us, 50 * us},
		{"doubling stops at the maximum", 150 * us, 10 * us, 200 * us, 200 * us},
		{"at the maximum already", 200 * us, 0, 200 * us, 200 * us},
		{"too long for any window: halve", 200 * us, time.Millisecond, 200 * us, 100 * us},
		{"halved below the smallest: shut", 40 * us, time.Millisecond, 200 * us, 0},
		{"shut, then a short sleep: the smallest", 0, 100 * us, 200 * us, pollStart},
		{"shut, and a long sleep: still shut", 0, time.Millisecond, 200 * us, 0},
		{"a lower maximum bounds the growth", 100 * us, 10 * us, 150 * us, 150 * us},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := nextWindow(c.w, c.slept, c.max); got != c.want {
				t.Errorf("nextWindow(%v, %v, %v) = %v, want %v", c.w, c.slept, c.max, got, c.want)
			}
		})
	}
}

// TestIdlePollSteps walks the poller's looks through a burst of work, a
// sleep a longer window would have caught, and sleeps too long for any;
// then through a load that falls below pollUnload, to a cooldown.
func TestIdlePollSteps(t *testing.T) {
	const us = time.Microsecond
	var clock, cpu time.Duration // fake, moved by the test under q.mu
	q := &idlePoller{now: func() time.Duration { return clock }, cpu: func() time.Duration { return cpu }}
	q.maxNS.Store(int64(200 * us))
	q.reset()
	q.procs = 1
	q.fresh = true
	q.st.Store(pollAsleep)
	type look struct {
		at     time.Duration
		cpu    time.Duration // the process's CPU time then
		touch  bool          // a read found bytes since the last look (or woke it)
		poll   bool          // want: poll on
		window time.Duration
		st     int32
	}
	run := func(looks []look) {
		t.Helper()
		for i, l := range looks {
			q.mu.Lock()
			clock, cpu = l.at, l.cpu
			q.mu.Unlock()
			if l.touch {
				if q.asleep {
					q.st.Store(pollIdle) // what the waking touch leaves
				} else {
					q.st.Store(pollBusy)
				}
			}
			poll := q.step(l.at)
			if poll != l.poll || q.window != l.window || q.st.Load() != l.st {
				t.Fatalf("look %d at %v: poll %v, window %v, state %d; want %v, %v, %d",
					i, l.at, poll, q.window, q.st.Load(), l.poll, l.window, l.st)
			}
		}
	}
	run([]look{
		{at: 0, poll: false, window: 0, st: pollAsleep},                                                      // no touch: a stale wake
		{at: 1 * us, touch: true, poll: true, window: pollStart, st: pollIdle},                               // first wake: the smallest window
		{at: 10 * us, touch: true, poll: true, window: pollStart, st: pollIdle},                              // work seen: the window starts again
		{at: 30 * us, poll: true, window: pollStart, st: pollIdle},                                           // 20 us since: poll on
		{at: 40 * us, poll: false, window: pollStart, st: pollAsleep},                                        // 30 us: sleep
		{at: 90 * us, touch: true, poll: true, window: 50 * us, st: pollIdle},                                // slept 50 us: 75 would have caught it
		{at: 150 * us, poll: false, window: 50 * us, st: pollAsleep},                                         // 60 us since the work
		{at: 1150 * us, touch: true, poll: true, window: pollStart, st: pollIdle},                            // slept 1 ms: halve
		{at: 1180 * us, poll: false, window: pollStart, st: pollAsleep},                                      // 30 us
		{at: 3000 * us, cpu: 2 * time.Millisecond, touch: true, poll: false, st: pollAsleep},                 // slept 2 ms: shut, sleeps at once
		{at: 3100 * us, cpu: 2 * time.Millisecond, touch: true, poll: true, window: pollStart, st: pollIdle}, // slept 100 us: open again
	})
	waitState := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for q.st.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("state %d after %v, want %d", q.st.Load(), waitFor, want)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// A look a sample after the last finds the proxy busy 30 % of the
	// time: deaf, though work came.
	q.mu.Lock()
	base, cpu0 := q.sampleAt, cpu
	q.mu.Unlock()
	run([]look{
		{at: base + 3200*us, cpu: cpu0, touch: true, poll: true, window: pollStart, st: pollIdle},
		{at: base + 3210*us, cpu: cpu0, poll: true, window: pollStart, st: pollIdle},
		{at: base + pollSample, cpu: cpu0 + 1*time.Millisecond, touch: true, poll: false, st: pollOff}, // 3 ms of work in 10

	})
	// Loaded again at the cooldown's end: the next touch wakes the
	// poller, with the smallest window.
	q.mu.Lock()
	clock, cpu = base+pollSample+20*time.Millisecond, cpu0+21*time.Millisecond
	q.mu.Unlock()
	waitState(pollAsleep)
	run([]look{{at: base + 31*time.Millisecond, cpu: cpu0 + 22*time.Millisecond, touch: true, poll: true, window: pollStart, st: pollIdle}})

	// Unloaded over a sample while polling, then at the cooldown's end:
	// it stays deaf, the next cooldown longer.
	run([]look{{at: base + 41*time.Millisecond, cpu: cpu0 + 23*time.Millisecond, touch: true, poll: false, st: pollOff}})
	q.mu.Lock()
	clock = base + 71*time.Millisecond // 30 ms more, 1 of them busy
	cpu = cpu0 + 24*time.Millisecond
	q.mu.Unlock()
	time.Sleep(3 * pollCoolMin)
	q.mu.Lock()
	cool, st := q.cool, q.st.Load()
	q.mu.Unlock()
	if st != pollOff || cool <= pollCoolMin {
		t.Errorf("unloaded after a cooldown: state %d, next cooldown %v; want %d and longer than %v", st, cool, pollOff, pollCoolMin)
	}
	q.gen.Add(1) // ends the timers
}

func TestIdlePollShare(t *testing.T) {
	const ms = time.Millisecond
	for _, c := range []struct {
		name                string
		elapsed, cpu, polls time.Duration
		procs               int
		want                float64
	}{
		{"busy 60 %", 10 * ms, 6 * ms, 0, 1, 0.6},
		{"busy 60 %, of which 20 % polling", 10 * ms, 6 * ms, 2 * ms, 1, 0.4},
		{"two Ps, 40 % each", 10 * ms, 8 * ms, 0, 2, 0.4},
		{"idle", 10 * ms, 0, 0, 1, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := &idlePoller{procs: c.procs, cpu: func() time.Duration { return time.Hour + c.cpu }}
			q.sampleAt, q.cpuAt, q.polled = time.Second, time.Hour, c.polls
			if got := q.share(time.Second + c.elapsed); math.Abs(got-c.want) > 1e-9 {
				t.Errorf("share = %v, want %v", got, c.want)
			}
			if q.polled != 0 || q.sampleAt != time.Second+c.elapsed || q.cpuAt != time.Hour+c.cpu {
				t.Errorf("the next sample starts at %v (cpu %v, polled %v)", q.sampleAt, q.cpuAt, q.polled)
			}
		})
	}
}

// TestIdlePollLifecycle runs a poller's goroutine (its own eventfd, a
// CPU clock that says it is always loaded) through a start, touches, a
// stop and a second start: a touch wakes it, it sleeps again once its
// window passes without one, and after the stop nothing of it acts.
func TestIdlePollLifecycle(t *testing.T) {
	q := &idlePoller{procs: 1}
	t0 := time.Now()
	q.cpu = func() time.Duration { return time.Since(t0) }
	wait := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: still state %d after %v", what, q.st.Load(), waitFor)
			}
			time.Sleep(100 * time.Microsecond)
		}
	}
	for round := range 2 {
		release := q.use(time.Millisecond)
		if st := q.st.Load(); st != pollOff {
			t.Fatalf("round %d: state %d at the start, want deaf (%d) until the load is looked at", round, st, pollOff)
		}
		wait("the first cooldown ends, loaded", func() bool { return q.st.Load() == pollAsleep })
		// Counted, not seen in st: the woken poller may poll its window
		// and sleep again before this goroutine looks (a loaded machine).
		woke := q.wakes.Load()
		q.touch()
		wait("the touch wakes the poller", func() bool { return q.wakes.Load() > woke })
		wait("a window without touches passes", func() bool { return q.st.Load() == pollAsleep })
		release()
		release() // twice is once
		if st := q.st.Load(); st != pollOff {
			t.Fatalf("round %d: state %d after the stop, want %d", round, st, pollOff)
		}
		q.touch() // no poller: nothing
		time.Sleep(2 * pollCoolMin)
		if st := q.st.Load(); st != pollOff {
			t.Fatalf("round %d: state %d after the stop and a cooldown: a timer outlived the poller", round, st)
		}
	}
}

// TestSendTogether: while the poller counts the proxy loaded, a send first
// lets the goroutines ready to run go (on one P, as the benchmarks run the
// proxy: a goroutine just started is one); unloaded, the send goes at once.
// Counted over many sends: once in 61 schedules Go's scheduler takes from
// the global run queue first, for fairness, and so runs the yielding
// goroutine again before the others.
func TestSendTogether(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const sends = 200
	for _, c := range []struct {
		name   string
		st     int32
		yields bool // the ready goroutine runs first (but for the fairness check), or never
	}{
		{"polling: loaded", pollIdle, true},
		{"polling, work seen: loaded", pollBusy, true},
		{"asleep until a touch: loaded", pollAsleep, true},
		{"off or cooling down: not loaded", pollOff, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var q idlePoller
			q.st.Store(c.st)
			ranFirst := 0
			for range sends {
				var ran atomic.Bool
				done := make(chan struct{})
				go func() {
					ran.Store(true)
					close(done)
				}()
				q.sendTogether()
				if ran.Load() {
					ranFirst++
				}
				<-done
			}
			t.Logf("the ready goroutine ran before %d of %d sends", ranFirst, sends)
			switch {
			case c.yields && ranFirst < sends*3/4:
				t.Errorf("the ready goroutine ran before %d of %d sends, want at least %d", ranFirst, sends, sends*3/4)
			case !c.yields && ranFirst > 0:
				t.Errorf("the ready goroutine ran before %d of %d sends, want none", ranFirst, sends)
			}
		})
	}
}
