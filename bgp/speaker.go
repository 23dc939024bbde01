package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrStopped is returned by calls made after Run has returned.
var ErrStopped = errors.New("the BGP speaker has stopped")

// Options configure a Speaker. Every field is optional.
type Options struct {
	// Logger gets session changes and announcements at Info; nil discards.
	Logger *slog.Logger
	// Registerer gets the bgp metrics; nil registers none.
	Registerer prometheus.Registerer
	// Ready, when set, holds every announcement until it is closed: cmd
	// passes the proxy's readiness, so no router sends traffic to a node
	// with nothing listening. Sessions open before it.
	Ready <-chan struct{}
	// Restarting says this process took over from one that called HandOver
	// (a SIGUSR2 upgrade): sessions open only once Ready is closed and the
	// routes are in place, with the Restart State bit set (RFC 4724 §3), so
	// the routers keep the old process's routes until ours replace them.
	Restarting bool
	// Host holds the announced prefixes on the node; nil means a
	// LinuxHost (local routes on lo).
	Host Host

	// engine replaces GoBGP in tests.
	engine engine
}

// Speaker announces a Config's prefixes to its peers by BGP, from this
// node, while it is healthy. It is a Task: Run owns it; Apply, Withdraw,
// HandOver and Status talk to Run's goroutine, which alone changes the
// BGP server and the host.
//
// The order for gitedge run: New, Run in the errgroup, Apply on every
// commit, SetProxyHealthy on every health change. On SIGTERM: Withdraw,
// drain the proxy, cancel Run (the sessions end with a Cease and the
// prefixes leave the node). On SIGUSR2, once the new process is ready:
// HandOver, drain, cancel Run (sessions closed without a NOTIFICATION,
// prefixes left on the node for the new process).
type Speaker struct {
	opts  Options
	log   *slog.Logger
	host  Host
	met   *metrics
	reqs  chan request
	poke  chan struct{}
	ready chan struct{}

	proxyOK   atomic.Bool
	ran       atomic.Bool
	stopped   chan struct{}
	readyOnce sync.Once

	mu       sync.Mutex // guards sessions and last; never held while calling the engine
	sessions map[netip.Addr]*session
	last     Status // as of the owner's last change, for Status after Run

	// Owned by Run's goroutine.
	eng        engine
	started    bool
	id         identity
	cfg        Config
	peers      map[netip.Addr]Peer
	routes     map[netip.Prefix]Route // announced
	gateOpen   bool
	withdrawn  bool
	handedOver bool
	// restartDone is set once the first sessions of a Restarting speaker
	// are open: later ones carry no Restart State bit.
	restartDone bool
}

// session is what a Status shows of one peer, fed by the engine's events.
type session struct {
	state       SessionState
	since       time.Time
	lastErr     string
	lastErrAt   time.Time
	flaps       uint64
	established time.Time
}

type request struct {
	f    func() error
	done chan error
}

// New makes a Speaker; nothing runs until Run and Apply.
func New(o Options) (*Speaker, error) {
	s := &Speaker{opts: o, log: o.Logger, host: o.Host, eng: o.engine,
		reqs: make(chan request), poke: make(chan struct{}, 1), ready: make(chan struct{}), stopped: make(chan struct{}),
		sessions: map[netip.Addr]*session{}, peers: map[netip.Addr]Peer{}, routes: map[netip.Prefix]Route{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("subsystem", "bgp")
	if s.host == nil {
		s.host = hostSystem()
	}
	if s.eng == nil {
		s.eng = &gobgpEngine{log: s.log}
	}
	if o.Registerer != nil {
		m, err := newMetrics(o.Registerer)
		if err != nil {
			return nil, fmt.Errorf("registering the bgp metrics: %w", err)
		}
		s.met = m
	}
	s.proxyOK.Store(true)
	s.last = Status{State: "idle"}
	return s, nil
}

// Ready is closed once the speaker runs its first config: its BGP server
// is up and its sessions are being opened (not necessarily established),
// or the config was the zero one (no BGP).
func (s *Speaker) Ready() <-chan struct{} { return s.ready }

// String names the Task.
func (s *Speaker) String() string { return "bgp" }

// Run owns the speaker until ctx ends, then stops it: unless HandOver
// came first, every session ends with a Cease (the routers drop the
// routes at once) and the prefixes leave the node. It returns nil on
// cancellation; it may be called once.
func (s *Speaker) Run(ctx context.Context) error {
	if !s.ran.CompareAndSwap(false, true) {
		return errors.New("bgp: Run called twice")
	}
	defer close(s.stopped)
	gate := s.opts.Ready
	if gate == nil {
		s.gateOpen = true
	}
	for {
		select {
		case <-ctx.Done():
			s.shutdown()
			return nil
		case r := <-s.reqs:
			r.done <- r.f()
		case <-gate:
			gate = nil
			s.gateOpen = true
			s.log.Info("the proxy is ready: announcing")
			s.logErrs("announcing", s.syncRoutes())
			s.logErrs("opening sessions", s.syncPeers())
		case <-s.poke:
			s.logErrs("following health", s.syncRoutes())
		}
	}
}

// shutdown ends the sessions and removes the prefixes, unless handed over.
func (s *Speaker) shutdown() {
	if s.handedOver {
		s.log.Info("stopped; the sessions and prefixes belong to the new process")
		s.publish()
		return
	}
	var errs []error
	if s.started {
		errs = append(errs, s.eng.stop(false))
		s.started = false
	}
	s.routes = map[netip.Prefix]Route{}
	errs = append(errs, s.host.Close())
	s.logErrs("stopping", errs)
	s.log.Info("stopped: sessions closed, prefixes removed from the node")
	s.publish()
	s.mu.Lock()
	s.last.State = "stopped"
	s.mu.Unlock()
}

func (s *Speaker) logErrs(what string, errs []error) {
	if err := errors.Join(errs...); err != nil {
		s.log.Warn(what, "err", err)
	}
}

// do runs f on Run's goroutine and returns its error. It waits for Run to
// start (or ctx), and for f once it started.
func (s *Speaker) do(ctx context.Context, f func() error) error {
	r := request{f: f, done: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.done
	case <-s.stopped:
		return ErrStopped
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Apply makes the speaker run cfg: the BGP server with cfg's AS and this
// node's router ID, a session per peer, the prefixes on the node, and the
// routes announced when ready and healthy. It is idempotent and
// convergent: it compares cfg with what it last applied and what the
// server and the host report, and changes only what differs. A peer
// whose settings are unchanged keeps its session; a changed peer's
// session is re-opened (its hold time, password or AS are negotiated at
// the start); a new AS number or router ID restarts every session. Routes
// whose attributes change are replaced in place, without a withdrawal.
// An invalid cfg changes nothing; otherwise every item is tried and the
// errors joined, each naming its peer or prefix. The zero Config (the
// bgp section removed) stops BGP: the sessions end with a Cease and the
// prefixes leave the node. Apply waits for Run.
func (s *Speaker) Apply(ctx context.Context, cfg Config) error {
	if cfg.isZero() {
		return s.do(ctx, s.clear)
	}
	cfg = cfg.WithDefaults()
	var errs []error
	if cfg.Node == "" {
		errs = append(errs, errors.New("no node name: Config.Node picks this node's router ID and MEDs"))
	}
	for _, fe := range cfg.Validate() {
		errs = append(errs, fe)
	}
	if len(errs) > 0 {
		return fmt.Errorf("config not applied: %w", errors.Join(errs...))
	}
	return s.do(ctx, func() error { return s.apply(cfg) })
}

// clear stops the BGP server and removes the prefixes: no config.
func (s *Speaker) clear() error {
	if s.handedOver {
		return errors.New("config not applied: the sessions were handed over to a new process")
	}
	var errs []error
	if s.started {
		s.log.Info("BGP removed from the config: closing every session")
		errs = append(errs, s.eng.stop(false))
		s.started = false
	}
	for a := range s.peers {
		s.forgetSession(a)
	}
	s.cfg, s.peers, s.routes = Config{}, map[netip.Addr]Peer{}, map[netip.Prefix]Route{}
	errs = append(errs, s.host.SetPrefixes(nil))
	s.met.announced(nil, nil)
	s.publish()
	s.readyOnce.Do(func() { close(s.ready) }) // nothing to run is running
	return errors.Join(errs...)
}

func (s *Speaker) apply(cfg Config) error {
	if s.handedOver {
		return errors.New("config not applied: the sessions were handed over to a new process")
	}
	var errs []error
	id := identity{ASN: cfg.ASN, RouterID: cfg.LocalRouterID().Unmap()}
	if s.started && id != s.id {
		s.log.Info("restarting every session: the AS number or router ID changed",
			"asn", id.ASN, "routerID", id.RouterID, "oldASN", s.id.ASN, "oldRouterID", s.id.RouterID)
		errs = append(errs, s.eng.stop(false))
		s.started = false
		s.routes = map[netip.Prefix]Route{}
		for a := range s.peers {
			s.forgetSession(a)
		}
		s.peers = map[netip.Addr]Peer{}
	}
	if !s.started {
		if err := s.eng.start(id, s.onPeer); err != nil {
			return errors.Join(append(errs, err)...)
		}
		s.started, s.id = true, id
		s.log.Info("BGP server started", "asn", id.ASN, "routerID", id.RouterID)
	}
	s.cfg = cfg
	prefixes := make([]netip.Prefix, len(cfg.Announce))
	for i, a := range cfg.Announce {
		prefixes[i] = a.Prefix
	}
	if err := s.host.SetPrefixes(prefixes); err != nil {
		errs = append(errs, err)
	}
	// Routes first: a session opened now starts with them.
	errs = append(errs, s.syncRoutes()...)
	errs = append(errs, s.syncPeers()...)
	s.readyOnce.Do(func() { close(s.ready) })
	return errors.Join(errs...)
}

// syncPeers makes the server's sessions match s.cfg.Peers.
func (s *Speaker) syncPeers() []error {
	if !s.started || s.handedOver {
		return nil
	}
	if s.opts.Restarting && !s.restartDone && !s.gateOpen {
		// Open with the Restart State bit only once our routes are in:
		// the router ends its stale-route wait at our End-of-RIB.
		return nil
	}
	restarting := s.opts.Restarting && !s.restartDone
	var errs []error
	observed, err := s.eng.peers()
	if err != nil {
		return []error{fmt.Errorf("listing the sessions: %w", err)}
	}
	present := map[netip.Addr]bool{}
	for _, p := range observed {
		present[p.Address] = true
	}
	want := map[netip.Addr]Peer{}
	for _, p := range s.cfg.Peers {
		want[p.Address.Unmap()] = p
	}
	for _, a := range slices.SortedFunc(maps.Keys(present), netip.Addr.Compare) {
		if _, ok := want[a]; !ok {
			if err := s.eng.deletePeer(a); err != nil {
				errs = append(errs, fmt.Errorf("peer %s: removing: %w", a, err))
				continue
			}
			s.log.Info("session removed", "peer", a)
			delete(s.peers, a)
			s.forgetSession(a)
		}
	}
	for _, p := range s.cfg.Peers {
		a := p.Address.Unmap()
		old, known := s.peers[a]
		if present[a] && known && old == p {
			continue
		}
		if present[a] {
			s.log.Info("re-opening the session: its settings changed", "peer", a, "changed", changedPeerFields(old, p))
			if err := s.eng.deletePeer(a); err != nil {
				errs = append(errs, fmt.Errorf("peer %s: removing to re-open: %w", a, err))
				continue
			}
			delete(s.peers, a)
		}
		if err := s.eng.addPeer(p, restarting); err != nil {
			errs = append(errs, fmt.Errorf("peer %s (AS %d): %w", a, p.ASN, err))
			continue
		}
		s.peers[a] = p
		s.mu.Lock()
		if s.sessions[a] == nil {
			s.sessions[a] = &session{state: StateIdle, since: time.Now()}
		}
		s.mu.Unlock()
		s.met.initPeer(a)
	}
	if restarting {
		s.restartDone = true
	}
	s.publish()
	return errs
}

// changedPeerFields names the fields of Peer that differ.
func changedPeerFields(a, b Peer) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		if !deepEqual(va.Field(i), vb.Field(i)) {
			out = append(out, va.Type().Field(i).Name)
		}
	}
	return out
}

// wanted returns the routes to announce now, and for every configured
// route left out the reason.
func (s *Speaker) wanted() (map[netip.Prefix]Route, map[netip.Prefix]string) {
	want := map[netip.Prefix]Route{}
	why := map[netip.Prefix]string{}
	proxyOK := s.proxyOK.Load()
	for i, r := range s.cfg.Routes() {
		switch {
		case s.handedOver:
			why[r.Prefix] = "handed over to the new process"
		case !s.started:
			why[r.Prefix] = "not running"
		case s.withdrawn:
			why[r.Prefix] = "withdrawn for shutdown"
		case !s.gateOpen:
			why[r.Prefix] = "waiting for the proxy to be ready"
		case s.cfg.Announce[i].TrackProxy && !proxyOK:
			why[r.Prefix] = "the proxy is unhealthy"
		default:
			want[r.Prefix] = r
		}
	}
	return want, why
}

// syncRoutes announces and withdraws so that what is announced matches
// wanted().
func (s *Speaker) syncRoutes() []error {
	want, why := s.wanted()
	var errs []error
	for _, p := range slices.SortedFunc(maps.Keys(s.routes), comparePrefix) {
		if _, ok := want[p]; ok {
			continue
		}
		reason := why[p]
		if reason == "" {
			reason = "no longer in the config"
		}
		if err := s.eng.withdraw(p); err != nil {
			errs = append(errs, fmt.Errorf("withdrawing %s: %w", p, err))
			continue
		}
		delete(s.routes, p)
		s.log.Info("withdrawn", "prefix", p, "reason", reason)
		s.met.routeUpdate(p, "withdraw")
	}
	for _, p := range slices.SortedFunc(maps.Keys(want), comparePrefix) {
		r := want[p]
		if old, ok := s.routes[p]; ok && old.Equal(r) {
			continue
		}
		if err := s.eng.announce(r); err != nil {
			errs = append(errs, fmt.Errorf("announcing %s: %w", p, err))
			continue
		}
		s.routes[p] = r
		s.log.Info("announced", "prefix", p, "med", medAttr(r), "communities", r.Communities)
		s.met.routeUpdate(p, "announce")
	}
	s.met.announced(s.cfg.Routes(), s.routes)
	s.publish()
	return errs
}

func medAttr(r Route) any {
	if !r.HasMED {
		return "none"
	}
	return r.MED
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// SetProxyHealthy reports whether this node's proxy listeners accept
// connections: announcements with TrackProxy are withdrawn while they
// don't, and announced again when they do, within milliseconds. It never
// blocks; calling it with an unchanged value costs an atomic load.
func (s *Speaker) SetProxyHealthy(ok bool) {
	if s.proxyOK.Swap(ok) != ok {
		select {
		case s.poke <- struct{}{}:
		default:
		}
	}
}

// Withdraw withdraws every route for a clean stop and keeps them
// withdrawn (later Applies and health changes announce nothing), then
// waits propagation for the routers to act on it before returning, so the
// caller can drain the proxy knowing no new connection arrives. The
// sessions stay up until Run ends. It does not wait when nothing was
// announced, and returns ctx's error if ctx ends first.
func (s *Speaker) Withdraw(ctx context.Context, propagation time.Duration) error {
	var had bool
	err := s.do(ctx, func() error {
		had = len(s.routes) > 0
		s.withdrawn = true
		if had {
			s.log.Info("withdrawing every route before stopping", "propagation", propagation)
		}
		return errors.Join(s.syncRoutes()...)
	})
	if errors.Is(err, ErrStopped) {
		return nil // Run has ended: its sessions closed with a Cease
	}
	if err != nil || !had {
		return err
	}
	t := time.NewTimer(propagation)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HandOver prepares a SIGUSR2 upgrade, once the new process (started
// with Options.Restarting) is ready: the sessions close without a
// NOTIFICATION, so the routers keep the routes as stale for the announced
// restart time (RFC 4724 §4.2) and traffic keeps flowing to this node,
// where the new process serves it; the prefixes stay on the node. Nothing
// is applied afterwards, and Run then ends without touching them.
func (s *Speaker) HandOver(ctx context.Context) error {
	return s.do(ctx, func() error {
		s.handedOver = true
		var err error
		if s.started {
			s.log.Info("handing the sessions over: closing them without a NOTIFICATION, routes kept by the routers")
			err = s.eng.stop(true)
			s.started = false
		}
		s.routes = map[netip.Prefix]Route{}
		s.publish()
		return err
	})
}

// onPeer records a session's state change; it runs on the engine's
// goroutine.
func (s *Speaker) onPeer(ev PeerEvent) {
	s.mu.Lock()
	ss := s.sessions[ev.Peer]
	if ss == nil || ss.state == ev.To {
		s.mu.Unlock()
		return
	}
	from := ss.state
	ss.state, ss.since = ev.To, ev.At
	if ev.To == StateEstablished {
		ss.established = ev.At
	}
	if from == StateEstablished {
		ss.flaps++
		ss.established = time.Time{}
	}
	if ev.Reason != "" {
		ss.lastErr, ss.lastErrAt = ev.Reason, ev.At
	}
	s.mu.Unlock()
	s.met.sessionState(ev.Peer, ev.To)
	switch {
	case ev.To == StateEstablished:
		s.log.Info("session established", "peer", ev.Peer)
	case from == StateEstablished:
		s.log.Info("session down", "peer", ev.Peer, "state", ev.To, "reason", ev.Reason)
	default:
		if s.log.Enabled(context.Background(), slog.LevelDebug) {
			s.log.Debug("session state", "peer", ev.Peer, "from", from, "to", ev.To, "reason", ev.Reason)
		}
	}
}

func (s *Speaker) forgetSession(a netip.Addr) {
	s.mu.Lock()
	delete(s.sessions, a)
	s.mu.Unlock()
	s.met.forgetPeer(a)
}
