package gitsource

import (
	"container/list"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The webhook is open to anyone who can reach its port, and a delivery is
// authenticated only once its whole body has been hashed. What requests
// not yet authenticated may hold is therefore bounded at each stage,
// whatever their number:
//
//   - connections: connLimiter caps open connections (more wait in the
//     kernel's accept queue, which is first come, first served) and closes
//     at once those beyond a per-source cap;
//   - headers: ReadHeaderTimeout and MaxHeaderBytes; a request whose
//     headers cannot be a signed delivery is refused before its body;
//   - bodies: admission caps bodies being read at once, globally and per
//     source; a body is hashed as it arrives and only its beginning is
//     kept, within a deadline.
//
// An attacker holding every body slot with slow bodies loses each one at
// the body deadline, and a freed slot goes to the waiting request whose
// source reads the fewest bodies: the forge, which reads none, comes
// before any source already reading one.

// sourceKey groups clients by address: the IP, or for IPv6 its /64 (one
// host commonly holds a whole /64).
func sourceKey(remote string) string {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		host, _, err := net.SplitHostPort(remote)
		if err != nil {
			return remote
		}
		return host
	}
	a := ap.Addr().Unmap()
	if a.Is6() {
		return netip.PrefixFrom(a, 64).Masked().String()
	}
	return a.String()
}

// connLimiter is a listener that keeps at most cap(sem) connections open
// (Accept waits for one to close) and at most perSource from one source
// (more are closed at once and reported to refused).
type connLimiter struct {
	net.Listener
	sem       chan struct{}
	perSource int
	refused   func(src string)

	mu     sync.Mutex
	bySrc  map[string]int
	closed chan struct{}
	once   sync.Once
}

func newConnLimiter(ln net.Listener, max, perSource int, refused func(string)) *connLimiter {
	return &connLimiter{Listener: ln, sem: make(chan struct{}, max), perSource: perSource, refused: refused,
		bySrc: map[string]int{}, closed: make(chan struct{})}
}

func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		select {
		case l.sem <- struct{}{}:
		case <-l.closed:
			return nil, net.ErrClosed
		}
		c, err := l.Listener.Accept()
		if err != nil {
			<-l.sem
			return nil, err
		}
		src := sourceKey(c.RemoteAddr().String())
		l.mu.Lock()
		if l.bySrc[src] >= l.perSource {
			l.mu.Unlock()
			c.Close()
			<-l.sem
			l.refused(src)
			continue
		}
		l.bySrc[src]++
		l.mu.Unlock()
		return &limitedConn{Conn: c, l: l, src: src}, nil
	}
}

func (l *connLimiter) Close() error {
	l.once.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

type limitedConn struct {
	net.Conn
	l    *connLimiter
	src  string
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.bySrc[c.src]--; c.l.bySrc[c.src] <= 0 {
			delete(c.l.bySrc, c.src)
		}
		c.l.mu.Unlock()
		<-c.l.sem
	})
	return err
}

// admission hands out the slots for reading request bodies: at most max
// at once, at most perSource to one source. A request that finds no slot
// for it waits for one, at most wait, behind at most maxQueue others (a
// full queue makes room for a source that claims fewer slots than the
// greediest one waiting) and max others from its source; else it is
// refused. A waiting request also cuts the body read for the longest,
// once that has lasted preemptAfter: a forge sends a body in
// milliseconds, so a slot held that long is an attacker's slow body.
// Safe for concurrent use.
type admission struct {
	max, perSource int
	maxQueue       int // waiting, in all
	maxWaiting     int // waiting, per source
	wait           time.Duration
	preemptAfter   time.Duration
	gauge          func(delta float64)

	mu      sync.Mutex
	free    int
	reading map[string]int       // per source
	waiting map[string]int       // per source
	granted map[string]time.Time // per source: when it last got a slot (bounded, see take)
	queue   []*waiter
	slots   map[*slot]struct{} // being read
}

// maxGranted bounds the sources whose last slot is remembered; past it
// the memory starts afresh (the order among waiters is only a preference).
const maxGranted = 4096

type waiter struct {
	src     string
	done    chan struct{} // closed when a slot is handed over, or the waiter evicted
	granted *slot
}

// slot is the right to read one body. Its holder calls setCut with what
// ends the read at once, and release when done.
type slot struct {
	a         *admission
	src       string
	since     time.Time
	cut       func()
	preempted bool
	once      sync.Once
}

// Refusal reasons of admission.
const (
	refusedBusy       = "Busy"       // every slot taken and the queue full, or the wait over
	refusedSourceBusy = "SourceBusy" // this source already waits for its share
	refusedPreempted  = "Preempted"  // a slow body cut for a request waiting for its slot
)

func newAdmission(max, perSource int, wait, preemptAfter time.Duration, gauge func(float64)) *admission {
	return &admission{max: max, perSource: perSource, maxQueue: 4 * max, maxWaiting: max, wait: wait, preemptAfter: preemptAfter,
		gauge: gauge, free: max, reading: map[string]int{}, waiting: map[string]int{}, granted: map[string]time.Time{},
		slots: map[*slot]struct{}{}}
}

// acquire returns a slot, or the reason none was given.
func (a *admission) acquire(src string) (*slot, string) {
	a.mu.Lock()
	if a.free > 0 && a.reading[src] < a.perSource {
		a.free--
		sl := a.take(src)
		a.mu.Unlock()
		a.gauge(1)
		return sl, ""
	}
	if a.waiting[src] >= a.maxWaiting {
		a.mu.Unlock()
		return nil, refusedSourceBusy
	}
	if len(a.queue) >= a.maxQueue && !a.evictFor(src) {
		a.mu.Unlock()
		return nil, refusedBusy
	}
	w := &waiter{src: src, done: make(chan struct{})}
	a.queue = append(a.queue, w)
	a.waiting[src]++
	a.mu.Unlock()

	t := time.NewTimer(a.wait)
	defer t.Stop()
	cut := time.NewTimer(0) // try at once, then when the oldest body is due
	defer cut.Stop()
wait:
	for {
		select {
		case <-w.done:
			break wait
		case <-t.C:
			break wait
		case <-cut.C:
			a.mu.Lock()
			if w.granted == nil && a.reading[src] < a.perSource {
				if next := a.preempt(); next > 0 {
					cut.Reset(next)
				}
			}
			a.mu.Unlock()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.granted != nil { // perhaps while the timer fired
		return w.granted, ""
	}
	select {
	case <-w.done: // evicted
		return nil, refusedBusy
	default:
	}
	a.queue = slices.DeleteFunc(a.queue, func(q *waiter) bool { return q == w })
	decr(a.waiting, src)
	return nil, refusedBusy
}

// take records a new slot read by src. Called with a.mu held.
func (a *admission) take(src string) *slot {
	sl := &slot{a: a, src: src, since: time.Now()}
	a.reading[src]++
	a.slots[sl] = struct{}{}
	if len(a.granted) >= maxGranted {
		clear(a.granted)
	}
	a.granted[src] = sl.since
	return sl
}

// preempt cuts the body read for the longest, if that has lasted
// preemptAfter and it is not already cut. It returns when to look again
// (0: no body left to cut): when the next one is due, and after a cut not
// before its slot had time to be handed over (perhaps to another waiter).
// Called with a.mu held.
func (a *admission) preempt() time.Duration {
	oldest := func() *slot {
		var o *slot
		for sl := range a.slots {
			if !sl.preempted && (o == nil || sl.since.Before(o.since)) {
				o = sl
			}
		}
		return o
	}
	o := oldest()
	if o == nil {
		return 0
	}
	if due := a.preemptAfter - time.Since(o.since); due > 0 {
		return due
	}
	o.preempted = true
	if o.cut != nil {
		o.cut()
	}
	if o = oldest(); o == nil {
		return 0
	}
	return max(a.preemptAfter-time.Since(o.since), a.preemptAfter/20)
}

// evictFor makes room in the full queue for a request from src by
// refusing the latest waiter of the source claiming the most slots
// (reading and waiting), when that source claims at least two more than
// src: sources that flood the queue cannot keep a new one out. It reports
// whether it made room. Called with a.mu held.
func (a *admission) evictFor(src string) bool {
	claims := func(s string) int { return a.reading[s] + a.waiting[s] }
	victim := -1
	for i := len(a.queue) - 1; i >= 0; i-- {
		if victim < 0 || claims(a.queue[i].src) > claims(a.queue[victim].src) {
			victim = i
		}
	}
	if victim < 0 || claims(a.queue[victim].src) < claims(src)+2 {
		return false
	}
	v := a.queue[victim]
	a.queue = slices.Delete(a.queue, victim, victim+1)
	decr(a.waiting, v.src)
	close(v.done)
	return true
}

// before reports whether a waiter from source x goes before one from y:
// the source reading fewer bodies, then the one served longest ago (or
// never), then the one waiting for fewer; the earlier among equals. A
// forge, which sends a delivery now and then, thus goes before a flood's
// sources however many they are, unless they outnumber the slots many
// times over. Called with a.mu held.
func (a *admission) before(x, y string) bool {
	if a.reading[x] != a.reading[y] {
		return a.reading[x] < a.reading[y]
	}
	if gx, gy := a.granted[x], a.granted[y]; !gx.Equal(gy) {
		return gx.Before(gy)
	}
	return a.waiting[x] < a.waiting[y]
}

// setCut gives what ends the slot's read at once; if the slot was already
// preempted, it is called now.
func (sl *slot) setCut(cut func()) {
	sl.a.mu.Lock()
	defer sl.a.mu.Unlock()
	sl.cut = cut
	if sl.preempted {
		cut()
	}
}

// wasPreempted reports whether the slot's read was cut for a waiter.
func (sl *slot) wasPreempted() bool {
	sl.a.mu.Lock()
	defer sl.a.mu.Unlock()
	return sl.preempted
}

// release gives the slot back (once; later calls do nothing): to the
// first waiter in the order of before (none whose source reads its
// share), so that sources already reading or queueing cannot keep a new
// one waiting; else to the pool.
func (sl *slot) release() {
	sl.once.Do(func() { sl.a.release(sl) })
}

func (a *admission) release(sl *slot) {
	a.mu.Lock()
	delete(a.slots, sl)
	decr(a.reading, sl.src)
	best := -1
	for i, w := range a.queue {
		if a.reading[w.src] < a.perSource && (best < 0 || a.before(w.src, a.queue[best].src)) {
			best = i
		}
	}
	if best < 0 {
		a.free++
		a.mu.Unlock()
		a.gauge(-1)
		return
	}
	w := a.queue[best]
	a.queue = slices.Delete(a.queue, best, best+1)
	decr(a.waiting, w.src)
	w.granted = a.take(w.src)
	close(w.done)
	a.mu.Unlock()
}

func decr(m map[string]int, k string) {
	if m[k]--; m[k] <= 0 {
		delete(m, k)
	}
}

// deliveries remembers the last n delivery ids handed over, to recognise
// a replayed delivery. Safe for concurrent use.
type deliveries struct {
	mu    sync.Mutex
	n     int
	order *list.List // of string, most recent first
	ids   map[string]*list.Element
}

func newDeliveries(n int) *deliveries {
	return &deliveries{n: n, order: list.New(), ids: map[string]*list.Element{}}
}

// add records id and reports whether it was already there.
func (d *deliveries) add(id string) (seen bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if e, ok := d.ids[id]; ok {
		d.order.MoveToFront(e)
		return true
	}
	d.ids[id] = d.order.PushFront(id)
	if d.order.Len() > d.n {
		last := d.order.Back()
		d.order.Remove(last)
		delete(d.ids, last.Value.(string))
	}
	return false
}

// refusalLog logs refused requests at a bounded rate: the first refusal
// of a quiet period in full, then one summary line per interval with the
// counts by reason and the busiest sources. At most two lines an interval,
// whatever the flood. Safe for concurrent use.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	since   time.Time      // start of the window; zero: none open
	counts  map[string]int // reason → refusals not yet logged
	sources map[string]int // source → refusals not yet logged (bounded)
	more    bool           // sources left out of the count
	timer   *time.Timer
}

// maxLoggedSources bounds the sources a summary keeps count of.
const maxLoggedSources = 64

func newRefusalLog(log *slog.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{log: log, interval: interval, counts: map[string]int{}, sources: map[string]int{}}
}

// add records one refusal. attrs describe it, for the line logged in full.
func (l *refusalLog) add(reason, src string, attrs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if l.since.IsZero() || now.Sub(l.since) >= l.interval && len(l.counts) == 0 {
		l.since = now
		l.log.Warn("webhook refused", append([]any{"reason", reason, "remote", src}, attrs...)...)
		return
	}
	l.counts[reason]++
	if _, ok := l.sources[src]; ok || len(l.sources) < maxLoggedSources {
		l.sources[src]++
	} else {
		l.more = true
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(time.Until(l.since.Add(l.interval)), l.flush)
	}
}

// flush logs the summary of the refusals counted since the last line.
func (l *refusalLog) flush() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(l.counts) == 0 {
		return
	}
	total := 0
	var byReason []string
	for _, r := range slices.Sorted(maps.Keys(l.counts)) {
		total += l.counts[r]
		byReason = append(byReason, fmt.Sprintf("%s=%d", r, l.counts[r]))
	}
	srcs := slices.SortedFunc(maps.Keys(l.sources), func(a, b string) int { return l.sources[b] - l.sources[a] })
	var top []string
	for _, s := range srcs[:min(len(srcs), 5)] {
		top = append(top, fmt.Sprintf("%s=%d", s, l.sources[s]))
	}
	sources := strconv.Itoa(len(l.sources))
	if l.more {
		sources += "+"
	}
	l.log.Warn("webhook refusals", "count", total, "byReason", strings.Join(byReason, " "),
		"sources", sources, "top", strings.Join(top, " "), "over", time.Since(l.since).Round(time.Millisecond))
	clear(l.counts)
	clear(l.sources)
	l.more = false
	l.since = time.Now() // the next refusal within an interval is counted, not logged
}
