package dataplane

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configures a Proxy. The zero value is usable.
type Options struct {
	// Logger receives lifecycle events (applies, health changes, listener
	// failures) at Info and Warn. nil discards them.
	Logger *slog.Logger
	// AccessLog receives one Info event per HTTP request and per TLS
	// connection. nil, or a handler not enabled at Info, logs nothing and
	// costs nothing per request.
	AccessLog *slog.Logger
	// Registry is where the metrics are registered; nil keeps them
	// unregistered. Never the global registry unless the caller passes it.
	Registry prometheus.Registerer
	// OnServerHealth is called after a server changes state (health checks
	// or connect failures). It must not block.
	OnServerHealth func(backend, server string, up bool, reason string)
	// Inherit, when set, is asked for each listening socket before the
	// proxy opens one, by the key Sockets gives it: a socket the process
	// this one replaces handed over (an upgrade in place), or nil to open
	// a new one. The proxy owns what it returns.
	Inherit func(key string) *net.TCPListener
	// IdlePoll is the longest the proxy's thread keeps polling for
	// events after its last one before it sleeps (idlepoll.go): 0 is
	// DefaultIdlePoll, negative never polls. The window adapts within it,
	// and stays shut while events come further apart.
	IdlePoll time.Duration
}

// Proxy is the dataplane: listeners, routes and backends from a Config,
// hot-swapped by Apply without closing a listener that stays or a
// connection in flight.
//
// Lifecycle: New, Apply (opens the listeners, so a bind error surfaces at
// once), Run (accepts until its context ends, then drains). Apply may be
// called any number of times, before or while Run runs. Close stops at
// once without draining.
type Proxy struct {
	log      *slog.Logger
	access   *slog.Logger
	m        *metrics
	onHC     func(backend, server string, up bool, reason string)
	inherit  func(key string) *net.TCPListener
	idlePoll time.Duration // Options.IdlePoll, default filled

	bg       context.Context // ends when the proxy stops: checkers, drains
	bgCancel context.CancelFunc

	mu       sync.Mutex
	socks    map[sockKey]*listenSock
	backends map[string]*backendState
	cfg      Config
	applied  bool
	running  bool
	stopped  bool
	gens     int
	drains   sync.WaitGroup // removed listeners draining

	closing atomic.Bool
	ready   chan struct{}
	done    chan struct{} // closed by Close
	conns   sync.WaitGroup

	httpFree struct {
		sync.Mutex
		list []*httpConn
	}

	// Loop detection (loop.go).
	hopID    string // this proxy's id in the Gitedge-Hop field
	hopLine  []byte // "Gitedge-Hop: <id>\r\n\r\n"
	dials    ownDials
	loopLogs map[string]*rateLog

	// Idle parking (park.go): lingering counts goroutines waiting idle.
	park    parker
	workers *workers // goroutines for connections and tunnel directions
	closer  closer   // closes finished tunnels' sockets in batches
	// sweepQuiet: the idle sweeper sleeps longer than idleSweep (only
	// young tunnels wait); a new http connection wakes it.
	sweepQuiet atomic.Bool
	lingering  lingerCount
	linger     atomic.Int64 // tests: replaces idleLinger (ns) when set
	young      atomic.Int64 // tests: replaces tunnelYoung (ns) when set; negative: 0
	fresh      atomic.Int64 // tests: replaces quietFresh (ns) when set; negative: 0
	// noSelfCheck turns the Apply-time self-server check off, so tests
	// can reach the checks behind it.
	noSelfCheck bool
	// swapped, when set (tests), runs in commit once the listeners route
	// by the new generation and before anything is retired; under p.mu,
	// so what it does must not need it.
	swapped func()
}

// sockKey identifies a listening socket across generations: its bind, or
// for port 0 (tests) the listener's name, since each such bind gets its own
// port.
type sockKey struct {
	bind Bind
	name string
}

// String is the socket's key in Options.Inherit and Sockets: the network,
// the bind, and the listener's name for port 0.
func (k sockKey) String() string {
	s := bindNetwork(k.bind) + " " + k.bind.String()
	if k.name != "" {
		s += " " + k.name
	}
	return s
}

func keyOf(l *Listener) sockKey {
	if l.Bind.Port == 0 {
		return sockKey{bind: l.Bind, name: l.Name}
	}
	return sockKey{bind: l.Bind}
}

// generation is one applied config, compiled for serving.
type generation struct {
	listeners map[sockKey]*listenerGen
	backends  map[string]*backend
}

// listenerGen is a listener as one generation configures it. A connection
// reads its socket's current listenerGen at accept and before each request.
type listenerGen struct {
	cfg    Listener
	router *router
	def    *backend
	m      *listenerMetrics
}

// route returns the backend for a host, or the default; nil for none.
func (lg *listenerGen) route(host []byte) *backend {
	if b := lg.router.match(host); b != nil {
		return b
	}
	return lg.def
}

// New returns a Proxy that serves nothing until Apply and Run.
func New(opts Options) *Proxy {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Proxy{
		log:      log.With("subsystem", "dataplane"),
		access:   opts.AccessLog,
		m:        newMetrics(opts.Registry),
		onHC:     opts.OnServerHealth,
		inherit:  opts.Inherit,
		idlePoll: cmp.Or(opts.IdlePoll, DefaultIdlePoll),
		socks:    map[sockKey]*listenSock{},
		backends: map[string]*backendState{},
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		hopID:    newHopID(),
		loopLogs: map[string]*rateLog{loopHopMark: {}, loopSelfAddr: {}, loopSelfConn: {}},
	}
	p.hopLine = hopLine(p.hopID)
	p.park.p = p
	p.lingering.kick = make(chan struct{}, 1)
	p.workers = newWorkers()
	p.closer = newCloser()
	p.bg, p.bgCancel = context.WithCancel(context.Background())
	return p
}

// ErrStopped is returned by Apply and Run once the proxy has stopped.
var ErrStopped = errors.New("dataplane: proxy stopped")

// Apply makes the proxy serve cfg. It builds the whole new routing table
// and opens new listeners first; if anything fails (validation, a bind),
// the running config keeps serving untouched and the error says why.
// Then it swaps the table in one atomic store per listener: listeners
// whose bind stays are never closed, removed ones stop accepting and drain
// (DrainTimeout), in-flight requests and tunnels finish on the server they
// started on, and the next request on a kept-alive connection uses the new
// table. Servers that stay keep their health and counters. Apply is
// idempotent and safe to call concurrently with serving. A ctx already
// done changes nothing.
func (p *Proxy) Apply(ctx context.Context, cfg Config) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		all := make([]error, len(errs))
		for i, e := range errs {
			all[i] = e
		}
		p.m.reloads.WithLabelValues("invalid").Inc()
		p.m.lastReloadOK.Set(0)
		return fmt.Errorf("dataplane: config rejected, nothing changed: %w", errors.Join(all...))
	}
	// Servers the reload raised are announced once p.mu is released (the
	// owner's callback may ask for Status): deferred before the unlock's
	// defer, so run after it.
	var raised []*serverState
	defer func() {
		for _, s := range raised {
			p.serverChanged(s, true, "its health check was removed")
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return ErrStopped
	}
	if p.applied && p.cfg.Equal(cfg) {
		p.m.reloads.WithLabelValues("unchanged").Inc()
		p.m.lastReloadOK.Set(1)
		return nil
	}
	gen, fresh := p.build(&cfg)
	opened := map[sockKey]*listenSock{}
	var early []sockKey // sockets this config drops, stopped before their time
	for key, lg := range gen.listeners {
		if _, ok := p.socks[key]; ok {
			continue
		}
		ln, err := p.listen(key)
		if errors.Is(err, syscall.EADDRINUSE) {
			// A bind moved on its port (":8080" to "127.0.0.1:8080"):
			// the socket this config drops holds the port until it stops
			// accepting, which it would do at the end of this Apply.
			// Stopped now, it frees the port for its successor.
			if stopped := p.stopOverlapping(gen, key); len(stopped) > 0 {
				early = append(early, stopped...)
				ln, err = p.listen(key)
			}
		}
		if err != nil {
			for _, s := range opened {
				s.ln.Close()
			}
			for _, k := range early {
				p.reopen(k)
			}
			p.m.reloads.WithLabelValues("failed").Inc()
			p.m.lastReloadOK.Set(0)
			return &BindError{Listener: lg.cfg.Name, Bind: lg.cfg.Bind, Err: err, Serving: p.applied}
		}
		opened[key] = p.newListenSock(lg.cfg.Bind, ln)
	}
	raised = p.commit(&cfg, gen, fresh, opened)
	return nil
}

// stopOverlapping stops accepting on the sockets the new generation drops
// that may hold key's port (same port, either address a wildcard, or the
// same address) and returns their keys. Under p.mu.
func (p *Proxy) stopOverlapping(gen *generation, key sockKey) []sockKey {
	var stopped []sockKey
	for k, s := range p.socks {
		if _, kept := gen.listeners[k]; kept || k.bind.Port != key.bind.Port || key.bind.Port == 0 {
			continue
		}
		a, b := k.bind.Addr, key.bind.Addr
		if !a.IsValid() || !b.IsValid() || a.IsUnspecified() || b.IsUnspecified() || a == b {
			s.stopAccepting()
			stopped = append(stopped, k)
		}
	}
	return stopped
}

// reopen listens again on a socket stopOverlapping stopped for an Apply
// that then failed: the running config keeps its listener. The stopped
// socket's connections drain as a removed listener's would. Under p.mu.
func (p *Proxy) reopen(k sockKey) {
	old := p.socks[k]
	drain, name := listenerOf(p.cfg.Listeners, k)
	ln, err := listenTCP(k.bind)
	if err != nil {
		// Kept, stopped: the node reports unhealthy (failover moves the VIP).
		p.log.Error("a failed reload left a listener closed: restart the proxy",
			"listener", name, "bind", k.bind.String(), "error", err)
		return
	}
	p.drains.Add(1)
	go func() {
		defer p.drains.Done()
		old.drain(drain)
	}()
	s := p.newListenSock(old.bind, ln)
	if lg := old.last.Load(); lg != nil {
		s.setDefer(lg.cfg.DeferAccept)
	}
	s.cur.Store(old.last.Load())
	p.socks[k] = s
	if p.running {
		s.start()
	}
}

// newListenSock wraps a listening socket for bind, not yet accepting.
func (p *Proxy) newListenSock(bind Bind, ln *net.TCPListener) *listenSock {
	return &listenSock{p: p, bind: bind, ln: ln, conns: map[*clientConn]struct{}{}, room: make(chan struct{}, 1)}
}

// listenerOf returns the drain timeout and name of the listener of ls that
// socket k serves.
func listenerOf(ls []Listener, k sockKey) (drain time.Duration, name string) {
	for _, l := range ls {
		if keyOf(&l) == k {
			drain, name = l.DrainTimeout, l.Name
		}
	}
	return drain, name
}

// fresh holds the states build created that commit must attach.
type fresh struct {
	backends []*backendState
	servers  []*serverState
}

// build compiles cfg over the current backend and server states without
// changing anything a running request can see.
func (p *Proxy) build(cfg *Config) (*generation, fresh) {
	var f fresh
	gen := &generation{listeners: map[sockKey]*listenerGen{}, backends: map[string]*backend{}}
	for i := range cfg.Backends {
		bc := cfg.Backends[i]
		bc.Servers = slices.Clone(bc.Servers)
		st := p.backends[bc.Name]
		if st == nil {
			st = &backendState{name: bc.Name, servers: map[serverKey]*serverState{}}
			f.backends = append(f.backends, st)
		}
		b := &backend{cfg: bc, st: st}
		switch bc.ProxyProtocol {
		case ProxyV1:
			b.pp = 1
		case ProxyV2:
			b.pp = 2
		}
		for _, sc := range bc.Servers {
			key := serverKey{sc.Name, sc.Address}
			ss := st.servers[key]
			if ss == nil {
				ss = &serverState{b: st, name: sc.Name, addr: sc.Address}
				ss.up.Store(true)
				f.servers = append(f.servers, ss)
			}
			b.servers = append(b.servers, &server{cfg: sc, st: ss, b: b})
		}
		gen.backends[bc.Name] = b
	}
	httpR, tlsR := newRouter(), newRouter()
	for _, r := range cfg.Routes {
		for _, h := range r.Hosts {
			if r.HTTPBackend != "" {
				httpR.add(h, gen.backends[r.HTTPBackend])
			}
			if r.TLSBackend != "" {
				tlsR.add(h, gen.backends[r.TLSBackend])
			}
		}
	}
	for i := range cfg.Listeners {
		l := cfg.Listeners[i]
		l.AcceptProxy = slices.Clone(l.AcceptProxy)
		lg := &listenerGen{cfg: l, router: httpR, def: gen.backends[l.DefaultBackend]}
		if l.Mode == ModeTLS {
			lg.router = tlsR
		}
		gen.listeners[keyOf(&l)] = lg
	}
	return gen, f
}

// commit publishes a built generation. Called under p.mu; cannot fail.
// It returns the servers it put back up (their check removed while they
// were down), for the caller to announce once it has unlocked.
func (p *Proxy) commit(cfg *Config, gen *generation, f fresh, opened map[sockKey]*listenSock) (raised []*serverState) {
	old := p.cfg
	for _, st := range f.backends {
		st.m = p.m.backend(st.name)
		p.backends[st.name] = st
	}
	for _, ss := range f.servers {
		ss.m = p.m.server(ss.b.name, ss.name)
		ss.m.up.Set(1)
		ss.b.servers[serverKey{ss.name, ss.addr}] = ss
	}
	// Health-check settings and checkers follow the new config.
	live := map[*serverState]bool{}
	isNew := make(map[*serverState]bool, len(f.servers))
	for _, ss := range f.servers {
		isNew[ss] = true
	}
	for _, b := range gen.backends {
		for _, s := range b.servers {
			live[s.st] = true
			ss, hc := s.st, b.cfg.HealthCheck
			ss.hmu.Lock()
			was := ss.hc.Type
			ss.hc = hc
			if hc.Type != CheckNone && ss.retry != nil {
				ss.retry.Stop()
				ss.retry = nil
			}
			switch {
			case hc.Type != CheckNone && isNew[ss]:
				// Up until its first check says otherwise, which then
				// takes it down at once (HAProxy starts a server at
				// health = rise): no request waits fall intervals on a
				// server that was never seen answering.
				ss.failRun = max(hc.Fall-1, 0)
			case hc.Type != CheckNone && ss.trial:
				// On trial after connect failures, never announced up:
				// down, as announced, until its new check raises it.
				ss.trial, ss.okRun = false, 0
				ss.up.Store(false)
			case hc.Type == CheckNone && was != CheckNone && !ss.up.Load():
				// Its check is gone, and nothing else would raise it: up,
				// as a server without a check is, until connects fail.
				ss.failRun, ss.okRun, ss.trial = 0, 0, false
				ss.up.Store(true)
				raised = append(raised, ss)
			}
			ss.hmu.Unlock()
			p.startChecker(ss, hc, b.pp)
		}
	}
	// Listener metrics: reuse a listener's children when its name stays.
	lms := map[string]*listenerMetrics{}
	for _, s := range p.socks {
		if lg := s.cur.Load(); lg != nil {
			lms[lg.cfg.Name] = lg.m
		}
	}
	for _, lg := range gen.listeners {
		if lg.m = lms[lg.cfg.Name]; lg.m == nil {
			lg.m = p.m.listener(lg.cfg.Name)
		}
	}
	// Swap: kept sockets get the new listener config, new ones start.
	for key, s := range opened {
		p.socks[key] = s
	}
	// Servers that are this proxy's own listeners, before anything can
	// dial them.
	listening := make([]netip.AddrPort, 0, len(gen.listeners))
	for key := range gen.listeners {
		listening = append(listening, p.socks[key].Addr())
	}
	p.markSelf(gen, listening)
	// Backends take this generation before any listener routes by it:
	// acquire goes to a backend's newest generation (st.cur), so a
	// request the new table routes finds the new servers, and one the old
	// table routed a moment ago takes them too rather than the servers
	// retired below.
	for _, b := range gen.backends {
		b.st.mu.Lock()
		b.st.cur = b
		b.st.mu.Unlock()
	}
	for key, lg := range gen.listeners {
		s := p.socks[key]
		s.setDefer(lg.cfg.DeferAccept)
		s.cur.Store(lg)
		s.kick() // its cap may have changed
		if p.running {
			s.start()
		}
	}
	if p.swapped != nil {
		p.swapped()
	}
	// Retire what left: listeners drain, servers and backends let go.
	for key, s := range p.socks {
		if _, ok := gen.listeners[key]; ok {
			continue
		}
		delete(p.socks, key)
		drain, name := listenerOf(old.Listeners, key)
		p.log.Info("listener removed: draining", "listener", name, "bind", s.bind.String(), "drain_timeout", drain)
		s.stopAccepting() // now, so the socket refuses new connections when Apply returns
		p.drains.Add(1)
		go func() {
			defer p.drains.Done()
			s.drain(drain)
			if !slices.ContainsFunc(cfg.Listeners, func(l Listener) bool { return l.Name == name }) {
				p.m.dropListener(name)
			}
		}()
	}
	for name, st := range p.backends {
		_, kept := gen.backends[name]
		if !kept {
			// Before its servers go: a request routed to it now is
			// routed again (errBackendGone), not refused for want of one.
			st.mu.Lock()
			st.cur = nil
			st.mu.Unlock()
		}
		for key, ss := range st.servers {
			if live[ss] {
				continue
			}
			delete(st.servers, key)
			p.retireServer(ss)
		}
		if !kept {
			delete(p.backends, name)
			p.m.dropBackend(name)
		}
		// Queued requests pick again, from this generation: a server or
		// a maxConn it added takes them now, not at their queueTimeout.
		st.wakeAll()
	}
	p.cfg = *cfg
	p.applied = true
	p.gens++
	p.m.reloads.WithLabelValues("applied").Inc()
	p.m.lastReloadOK.Set(1)
	p.m.lastReloadAt.Set(float64(time.Now().Unix()))
	p.m.generation.Set(float64(p.gens))
	p.log.Info("config applied", "generation", p.gens, "listeners", len(cfg.Listeners),
		"routes", len(cfg.Routes), "backends", len(cfg.Backends), "listeners_opened", len(opened))
	if p.running {
		p.markReady()
	}
	return raised
}

// retireServer stops what a removed server owns; requests in flight on it
// finish, and their connections are closed instead of pooled.
func (p *Proxy) retireServer(ss *serverState) {
	ss.removed.Store(true)
	if ss.checker != nil {
		ss.checker.halt()
		ss.checker = nil
	}
	ss.hmu.Lock()
	if ss.retry != nil {
		ss.retry.Stop()
	}
	ss.hmu.Unlock()
	ss.pool.closeAll()
	// Drop the series unless a server of the same name (new address) stays.
	if _, same := ss.b.serverNamed(ss.name); !same {
		p.m.dropServer(ss.b.name, ss.name)
	}
}

func (st *backendState) serverNamed(name string) (*serverState, bool) {
	for k, s := range st.servers {
		if k.name == name {
			return s, true
		}
	}
	return nil, false
}

func (p *Proxy) markReady() {
	select {
	case <-p.ready:
	default:
		close(p.ready)
	}
}

// Run serves until ctx ends, then stops accepting, lets every connection
// finish within its listener's DrainTimeout and returns nil. Run may be
// called once; Apply before or after it.
func (p *Proxy) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.running || p.stopped {
		p.mu.Unlock()
		return errors.New("dataplane: Run called twice")
	}
	p.running = true
	defer idlePoll.use(p.idlePoll)()
	for _, s := range p.socks {
		s.start()
	}
	if p.applied {
		p.markReady()
	}
	p.mu.Unlock()
	sweep := time.NewTicker(time.Second)
	defer sweep.Stop()
	// The idle sweeper ticks only while goroutines wait idle or sockets
	// wait to be closed.
	idle := time.NewTicker(idleSweep)
	defer idle.Stop()
	every := idleSweep // 0: stopped
	for {
		select {
		case <-ctx.Done():
			p.shutdown(true)
			return nil
		case <-p.done:
			return nil
		case <-sweep.C:
			p.sweepPools()
		case <-p.lingering.kick:
			// The first waiter, a crowd forming, or a new http
			// connection while the sweeper was quiet (sweepQuiet
			// cleared): another young tunnel's waiter leaves a quiet
			// sweeper asleep.
			want := every
			switch {
			case p.lingering.Load() > manyIdle:
				want = crowdSweep
			case every == 0 || every > idleSweep && !p.sweepQuiet.Load():
				want = idleSweep
			}
			if want != every && (every == 0 || want < every) {
				every = want
				idle.Reset(every)
			}
		case <-p.closer.kick:
			if every == 0 || every > closeSweep {
				every = closeSweep
				idle.Reset(every)
			}
		case <-idle.C:
			p.closer.run()
			next := p.sweepIdle()
			p.sweepQuiet.Store(next > idleSweep)
			if p.closer.pending() && (next == 0 || next > closeSweep) {
				next = closeSweep
			}
			switch {
			case next == 0:
				idle.Stop()
				every = 0
			case next != every:
				every = next
				idle.Reset(every)
			}
		}
	}
}

// Close stops the proxy at once: listeners close, connections are cut.
func (p *Proxy) Close() error {
	p.shutdown(false)
	return nil
}

func (p *Proxy) shutdown(graceful bool) {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		p.conns.Wait()
		return
	}
	p.stopped = true
	p.closing.Store(true)
	socks := p.socks
	p.socks = map[sockKey]*listenSock{}
	drains := map[*listenSock]time.Duration{}
	for key, s := range socks {
		for _, l := range p.cfg.Listeners {
			if keyOf(&l) == key && graceful {
				drains[s] = l.DrainTimeout
			}
		}
	}
	p.mu.Unlock()
	if graceful {
		p.log.Info("stopping: draining connections")
	}
	var wg sync.WaitGroup
	for _, s := range socks {
		wg.Go(func() { s.drain(drains[s]) })
	}
	wg.Wait()
	p.drains.Wait()
	p.conns.Wait()
	p.closer.run()
	p.park.close()
	p.workers.close() // nothing runs a job any more: no connection, no parker
	p.mu.Lock()
	var checks []*checker
	for _, st := range p.backends {
		for _, ss := range st.servers {
			if ss.checker != nil {
				ss.checker.halt()
				checks = append(checks, ss.checker)
				ss.checker = nil
			}
			ss.hmu.Lock()
			if ss.retry != nil {
				ss.retry.Stop()
			}
			ss.removed.Store(true)
			ss.hmu.Unlock()
			ss.pool.closeAll()
		}
	}
	p.mu.Unlock()
	p.bgCancel()
	for _, c := range checks {
		<-c.done // outside p.mu: a check's report may need it
	}
	close(p.done)
	p.log.Info("stopped")
}

// Ready is closed once the proxy accepts on the listeners of an applied
// config: the signal failover waits for before claiming a VIP.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

// Healthy reports whether this node's listeners are all accepting: Run is
// running, a config is applied, and no accept loop has failed. Failover's
// track: {proxy: true} polls it.
func (p *Proxy) Healthy() bool {
	if p.closing.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running || !p.applied || len(p.socks) == 0 {
		return false
	}
	for _, s := range p.socks {
		if !s.healthy.Load() {
			return false
		}
	}
	return true
}

// Addr returns the address a listener is bound to (its real port when the
// bind asked for port 0).
func (p *Proxy) Addr(listener string) (netip.AddrPort, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.socks {
		if lg := s.cur.Load(); lg != nil && lg.cfg.Name == listener {
			return s.Addr(), true
		}
	}
	return netip.AddrPort{}, false
}

// ServerStatus is one server's state, for status pages.
type ServerStatus struct {
	Backend string         `json:"backend"`
	Server  string         `json:"server"`
	Address netip.AddrPort `json:"address"`
	Up      bool           `json:"up"`     // health checks say so
	Active  int            `json:"active"` // requests or tunnels in flight
	Idle    int            `json:"idle"`   // pooled keep-alive connections
}

// Status returns every server's state, sorted by backend and server.
func (p *Proxy) Status() []ServerStatus {
	p.mu.Lock()
	var out []ServerStatus
	for _, st := range p.backends {
		st.mu.Lock()
		for _, ss := range st.servers {
			out = append(out, ServerStatus{Backend: st.name, Server: ss.name, Address: ss.addr,
				Up: ss.up.Load(), Active: ss.active})
		}
		st.mu.Unlock()
	}
	p.mu.Unlock()
	for i := range out {
		out[i].Idle = p.poolLen(out[i].Backend, out[i].Server)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Backend != out[j].Backend {
			return out[i].Backend < out[j].Backend
		}
		return out[i].Server < out[j].Server
	})
	return out
}

func (p *Proxy) poolLen(backend, server string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if st := p.backends[backend]; st != nil {
		if ss, ok := st.serverNamed(server); ok {
			return ss.pool.len()
		}
	}
	return 0
}

// sweepPools closes idle server connections older than poolIdleMax, and
// frees the I/O buffers and retires the idle workers a whole trim window
// did not need.
func (p *Proxy) sweepPools() {
	now := time.Now().UnixNano()
	p.mu.Lock()
	var ss []*serverState
	for _, st := range p.backends {
		for _, s := range st.servers {
			ss = append(ss, s)
		}
	}
	p.mu.Unlock()
	for _, s := range ss {
		s.pool.sweep(now, poolIdleMax)
	}
	trimBufs(now)
	p.workers.trim(now)
}

// serverChanged records a server's state change.
func (p *Proxy) serverChanged(s *serverState, up bool, reason string) {
	if s.m != nil {
		v := 0.0
		if up {
			v = 1
		}
		s.m.up.Set(v)
	}
	if up {
		p.log.Info("server up", "backend", s.b.name, "server", s.name, "address", s.addr.String(), "reason", reason)
		s.b.wakeAll()
	} else {
		p.log.Warn("server down", "backend", s.b.name, "server", s.name, "address", s.addr.String(), "reason", reason)
		s.pool.closeIdle()
	}
	if p.onHC != nil {
		p.onHC(s.b.name, s.name, up, reason)
	}
}

func (p *Proxy) logAcceptError(s *listenSock, err error, retry time.Duration) {
	if retry > 0 {
		p.log.Warn("accept failed, retrying", "listener", s.name(), "bind", s.bind.String(), "error", err, "retry_in", retry)
		return
	}
	p.log.Error("accept failed: the node reports unhealthy until the listener accepts again (retrying, at most a second apart)",
		"listener", s.name(), "bind", s.bind.String(), "error", err)
}

// name is the listener's name, or the last one it had once stopped.
func (s *listenSock) name() string {
	if lg := s.cur.Load(); lg != nil {
		return lg.cfg.Name
	}
	if lg := s.last.Load(); lg != nil {
		return lg.cfg.Name
	}
	return ""
}
