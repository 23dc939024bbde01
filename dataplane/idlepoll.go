package dataplane

import (
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The idle poll keeps the proxy's thread polling for events for a short
// while after it runs out of work, instead of going to sleep at once.
//
// When the Go scheduler finds nothing to run it blocks in epoll_wait and
// the core halts; the next packet for the proxy must then wake that core
// with an interrupt sent from the core the packet came from (a client's,
// a server's, the NIC's). Under a hypervisor that interrupt is a VM exit
// paid by the sender, and a proxy that sleeps between most events makes
// its clients' and servers' cores pay one per request: in the kept-alive
// TLS benchmark the load core's rate follows how often the proxy sleeps
// (docs/benchmarks.md, Rounds 10 and 11). HAProxy's busy-polling and
// Linux's haltpoll idle driver trade CPU for the same.
//
// A goroutine waits on an eventfd through the netpoller. While polling,
// it writes to the eventfd from inside its RawConn.Read callback (after
// the netpoller forgot the descriptor's readiness, so the write is seen),
// so it is ready again at once: the scheduler, with only it to run, polls
// the network without blocking and runs whatever became ready first.
//
// The poll runs only while the proxy is loaded: it starts when the
// process's CPU time, polling left out, was at least pollLoad of the time
// that passed (per P) over a cooldown, and stops when it falls below
// pollUnload over a sample. Loaded, a sleep costs the most (the next
// event comes within microseconds) and a poll the least (the core has
// little idle time to spend). A lighter load leaves the poller deaf to
// touches, looking at the CPU time again after each cooldown (a timer, at
// most a few times a second), and the proxy sleeps as it would without
// it: new TLS connections keep the proxy a third of a core busy, and
// polling their gaps tripled its CPU per connection for no gain.
//
// While it runs, the window adapts as haltpoll's does. Reads that find
// bytes mark the proxy busy (touch); the poller polls until the window
// passes without work, then sleeps until the next touch wakes it. A sleep
// short enough that a longer window would have caught the work grows the
// window (up to the maximum); a longer one halves it, to nothing, where
// the poller still wakes at each touch to measure the sleep before.

// Idle poll states (idlePoller.st): what a touch does.
const (
	pollOff    int32 = iota // no poller, or cooling down: nothing
	pollIdle                // polling, no work seen since the last look: mark busy
	pollBusy                // polling, work seen: nothing
	pollAsleep              // the poller sleeps: wake it
)

const (
	// DefaultIdlePoll is the longest the proxy polls after its last event
	// unless Options.IdlePoll says otherwise: haltpoll's default.
	DefaultIdlePoll = 200 * time.Microsecond
	pollStart       = 25 * time.Microsecond  // the first window, and the smallest
	pollSample      = 10 * time.Millisecond  // how often a running poll looks at the load
	pollCoolMin     = 10 * time.Millisecond  // the first cooldown
	pollCoolMax     = 160 * time.Millisecond // cooldowns double up to this while unloaded
)

// pollLoad is the CPU share (per P) from which the poll starts, and
// pollUnload the share under which it stops; variables for tests.
var pollLoad, pollUnload = 0.6, 0.4

// pollLook is the longest a look that found no work can have taken and
// still count as polling: a longer one also ran work that read nothing
// (a write, the end of a request).
const pollLook = 10 * time.Microsecond

// idlePoller is the process's one poller: the scheduler it keeps awake is
// the process's. Proxies that run share it (use).
type idlePoller struct {
	st     atomic.Int32
	wokeAt atomic.Int64 // when the last waking touch came (q.now, ns)
	maxNS  atomic.Int64 // the largest window, set by the last user
	gen    atomic.Int64 // bumped at each start and stop: a stale cooldown's timer does nothing
	wakes  atomic.Int64 // touches that woke the poller (its goroutine ran for them)
	kicker              // the eventfd, made once and kept for the process

	mu    sync.Mutex // users, stop; a cooldown's timer against start and stop
	users int
	stop  func() // ends the running poller; nil when none runs

	// Owned by the poller's goroutine, and by a cooldown's timer while
	// the poller is deaf (st pollOff hands them over and back).
	window   time.Duration
	cool     time.Duration
	lastWork time.Duration // since t0
	lastLook time.Duration
	sleptAt  time.Duration
	asleep   bool
	fresh    bool          // the next wake is the first after a cooldown
	polled   time.Duration // looks that found nothing since sampleAt
	sampleAt time.Duration
	cpuAt    time.Duration // the process's CPU time at sampleAt
	procs    int           // tests: the Ps the share is of; 0 GOMAXPROCS now
	t0       time.Time
	cpu      func() time.Duration // the process's CPU time; tests replace it
	now      func() time.Duration // since t0; tests replace it
}

var idlePoll idlePoller

// touchIdlePoll tells the poller the proxy has work: a read found bytes.
// It costs one atomic load while the poller polls and has seen work.
func touchIdlePoll() { idlePoll.touch() }

func (q *idlePoller) touch() {
	switch q.st.Load() {
	case pollIdle:
		q.st.CompareAndSwap(pollIdle, pollBusy)
	case pollAsleep:
		if q.st.CompareAndSwap(pollAsleep, pollIdle) {
			// The sleep ends now, not when the poller gets to run
			// (after the work this touch started, on one P).
			q.wokeAt.Store(int64(q.now()))
			q.kick()
		}
	}
}

// loaded reports whether the poller counts the proxy as loaded: it runs
// (polling or asleep between touches), not off or cooling down.
func (q *idlePoller) loaded() bool { return q.st.Load() != pollOff }

// sendTogether lets the goroutines the scheduler holds ready run up to
// their own sends before this one sends, while the proxy is loaded: the
// connections one network poll readied then read all their requests (or
// answers) before any writes, and the writes go out close together, as an
// event loop's do (HAProxy reads a poll's events, then writes). Sent as
// each goroutine gets to it, a batch's writes are spread over the whole
// batch's work, and a client or server core that handles each before the
// next comes sleeps between them: every write then pays for waking it (an
// interrupt; under a hypervisor, a VM exit). Measured behind a saturated
// proxy: the load core switched context more than 0.3 times a request in
// 116 of 252 seconds without the yield, in none of 252 with it (HAProxy:
// none), and kept-alive requests gained 0.5 to 2 % a second in paired
// slices (docs/benchmarks.md, Round 21). runtime.Gosched puts the
// goroutine on the global run queue, which the scheduler takes from once
// the local one (the rest of the batch) is empty, and before it polls the
// network again. Unloaded, batches are of one and the yield would be pure
// cost (with idle Ps, a thread woken to look for work), so it is skipped;
// so it is with the idle poll off, which leaves the load unmeasured.
func sendTogether() { idlePoll.sendTogether() }

func (q *idlePoller) sendTogether() {
	if q.loaded() {
		runtime.Gosched()
	}
}

// use starts the poller for a proxy that runs, with max the largest
// window (<= 0: none for this proxy); release undoes it.
func (q *idlePoller) use(max time.Duration) (release func()) {
	if max <= 0 {
		return func() {}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.maxNS.Store(int64(max))
	if q.stop == nil {
		q.st.Store(pollOff)
		q.reset()
		stop, err := q.start()
		if err != nil {
			return func() {}
		}
		q.stop = stop
		q.coolDown() // deaf until the load says otherwise
	}
	q.users++
	var once sync.Once
	return func() {
		once.Do(func() {
			q.mu.Lock()
			defer q.mu.Unlock()
			if q.users--; q.users == 0 {
				// The goroutine first: a cooldown it starts meanwhile
				// takes the generation this bump then ends.
				q.stop()
				q.gen.Add(1)
				q.stop = nil
				q.st.Store(pollOff)
			}
		})
	}
}

// reset readies the poller's state for a new start.
func (q *idlePoller) reset() {
	q.gen.Add(1)
	q.t0 = time.Now()
	if q.now == nil {
		q.now = func() time.Duration { return time.Since(q.t0) }
	}
	if q.cpu == nil {
		q.cpu = processCPU
	}
	q.window, q.cool, q.asleep = 0, pollCoolMin, true
	q.polled, q.sampleAt, q.cpuAt = 0, q.now(), q.cpu()
}

// step is the poller's look, each time it runs: it returns whether to
// poll on (true) or to sleep until a touch (false).
func (q *idlePoller) step(now time.Duration) bool {
	limit := time.Duration(q.maxNS.Load())
	st := q.st.Load() // first: it orders what a cooldown's timer wrote before
	if st == pollOff || st == pollAsleep && q.asleep {
		return false // a stale wake: deaf, or asleep and no touch came
	}
	busy := st == pollBusy && q.st.CompareAndSwap(pollBusy, pollIdle)
	switch {
	case q.asleep: // woken by a touch
		q.asleep = false
		q.wakes.Add(1)
		if q.fresh {
			q.window, q.fresh = pollStart, false // after a cooldown
		} else {
			woke := time.Duration(q.wokeAt.Load())
			if woke < q.sleptAt || woke > now {
				woke = now // not a touch's (tests step by hand)
			}
			q.window = nextWindow(q.window, woke-q.sleptAt, limit)
		}
		q.lastWork = now
	case busy:
		q.lastWork = now
	case now-q.lastLook <= pollLook:
		q.polled += now - q.lastLook // nothing ran since the last look but polls
	}
	q.lastLook = now
	if now-q.sampleAt >= pollSample && q.share(now) < pollUnload {
		q.asleep = true
		q.coolDown()
		return false
	}
	q.window = min(q.window, limit)
	if now-q.lastWork < q.window {
		return true
	}
	if !q.st.CompareAndSwap(pollIdle, pollAsleep) {
		q.lastWork = now // a touch since the look above: poll on
		return true
	}
	q.asleep, q.sleptAt = true, now
	return false
}

// share is the proxy's CPU share (per P) since the last sample, polling
// left out; it starts the next sample.
func (q *idlePoller) share(now time.Duration) float64 {
	cpu := q.cpu()
	work, elapsed := cpu-q.cpuAt-q.polled, now-q.sampleAt
	q.polled, q.sampleAt, q.cpuAt = 0, now, cpu
	if elapsed <= 0 {
		return 0
	}
	procs := q.procs
	if procs == 0 {
		procs = runtime.GOMAXPROCS(0) // it may change while the proxy runs
	}
	return float64(work) / float64(elapsed) / float64(procs)
}

// nextWindow is haltpoll's rule: after a window w, the proxy slept for
// slept before its next work. Had a window up to limit caught it, grow
// (from nothing to pollStart); otherwise halve, to nothing below
// pollStart.
func nextWindow(w, slept, limit time.Duration) time.Duration {
	if w+slept <= limit {
		return min(limit, max(w*2, pollStart))
	}
	if w /= 2; w < pollStart {
		return 0
	}
	return w
}

// coolDown leaves the poller asleep and deaf to touches for a while. At
// its end a timer looks at the load over it: loaded, the next touch wakes
// the poller with the smallest window; not, another (longer) cooldown.
func (q *idlePoller) coolDown() {
	q.st.Store(pollOff)
	q.window, q.fresh = 0, true
	gen := q.gen.Load()
	var end func()
	end = func() {
		q.mu.Lock() // against a stop and a start meanwhile
		defer q.mu.Unlock()
		if q.gen.Load() != gen {
			return
		}
		if q.share(q.now()) < pollLoad {
			q.cool = min(q.cool*2, pollCoolMax)
			time.AfterFunc(q.cool, end)
			return
		}
		q.cool = pollCoolMin
		q.st.CompareAndSwap(pollOff, pollAsleep)
	}
	time.AfterFunc(q.cool, end)
}
