package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// System is what a Manager needs from the host. LinuxSystem is the real
// one; tests supply fakes.
type System interface {
	// Open returns the transport and effects of one instance. If the
	// Effects also implement io.Closer, the Manager closes them after the
	// instance stops.
	Open(in Instance) (Transport, Effects, error)
	// LinkUp reports whether a network interface is up.
	LinkUp(name string) (bool, error)
	// Watch reports link and address changes to w until ctx is done.
	Watch(ctx context.Context, w Watcher) error
}

// Watcher receives host events from System.Watch. Its methods must not
// block.
type Watcher interface {
	Link(name string, up bool)
	AddrRemoved(ifindex int, addr netip.Addr)
	Error(err error)
}

// Options configure a Manager. Every field is optional.
type Options struct {
	// Logger gets transitions at Info; nil discards.
	Logger *slog.Logger
	// Registerer gets the failover metrics; nil registers none.
	Registerer prometheus.Registerer
	// OnTransition is called on the instance's goroutine after every state
	// change; it must not block.
	OnTransition func(Event)
	// TrackProxy enables instances' track.proxy: their health follows
	// SetProxyHealthy. When false (gitedge vrrp alone) it is ignored.
	TrackProxy bool
	// Ready, when set, holds every instance in Initialize until it is
	// closed: cmd passes the proxy's readiness.
	Ready <-chan struct{}
	// System defaults to LinuxSystem.
	System System
}

// Manager runs the VRRP instances of a Config and applies new ones.
type Manager struct {
	opts    Options
	log     *slog.Logger
	sys     System
	metrics *Metrics

	applyMu   sync.Mutex // serialises Apply and Close
	mu        sync.Mutex // guards the fields below; never held while waiting
	running   map[string]*runningInstance
	proxyOK   bool
	watchStop context.CancelFunc
	watchDone chan struct{}
	closed    bool
}

type runningInstance struct {
	in     Instance
	r      *Router
	fx     Effects
	cancel context.CancelFunc
	done   chan struct{}
}

// NewManager makes a Manager; nothing runs until Apply.
func NewManager(o Options) (*Manager, error) {
	m := &Manager{opts: o, log: o.Logger, sys: o.System, running: map[string]*runningInstance{}, proxyOK: true}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("subsystem", "failover")
	if m.sys == nil {
		m.sys = LinuxSystem{}
	}
	if o.Registerer != nil {
		met, err := NewMetrics(o.Registerer)
		if err != nil {
			return nil, fmt.Errorf("registering the failover metrics: %w", err)
		}
		m.metrics = met
	}
	return m, nil
}

// Apply makes the running instances match cfg. Instances that left stop
// cleanly (priority 0, VIPs removed) and new ones start. A changed instance
// takes the change in place (Router.Reconfigure: priority, VIPs, timers,
// preemption, auth, unicast peers, tracking, GARP), keeping its state, so
// mastership moves only if the new priorities say so; only a change that
// needs a new socket (interface, VRID, version, multicast/unicast, address
// family; see changeRules) restarts the instance. Apply is idempotent. An
// invalid cfg changes nothing; otherwise every instance is tried and the
// errors are joined, each naming its instance once. Errors do not name the
// package: the caller says "failover". A ctx already done changes nothing.
func (m *Manager) Apply(ctx context.Context, cfg Config) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var errs []error
	names := map[string]bool{}
	for _, in := range cfg.Instances {
		for _, fe := range ValidateInstance(in) {
			errs = append(errs, fe)
		}
		if in.Priority == 0 {
			errs = append(errs, fmt.Errorf("instance %q: priority 0: this node has no priority for it", in.Name))
		}
		if names[in.Name] {
			errs = append(errs, fmt.Errorf("instance %q: name used twice", in.Name))
		}
		names[in.Name] = true
	}
	if len(errs) > 0 {
		return fmt.Errorf("config not applied: %w", errors.Join(errs...))
	}
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("Apply after Close")
	}
	m.startWatchLocked()
	// Stop what left or must restart first, so an instance never runs twice.
	var stop []*runningInstance
	for name, ri := range m.running {
		i := slices.IndexFunc(cfg.Instances, func(in Instance) bool { return in.Name == name })
		if i < 0 {
			stop = append(stop, ri)
			delete(m.running, name)
			continue
		}
		if f := restartFields(ri.in, cfg.Instances[i]); len(f) > 0 {
			m.log.Info("restarting instance: these settings need a new socket", "instance", name, "changed", f)
			stop = append(stop, ri)
			delete(m.running, name)
		}
	}
	m.mu.Unlock()
	stopAll(stop)
	// ri.in changes only under applyMu, which we hold: read it freely.
	for _, in := range cfg.Instances {
		m.mu.Lock()
		ri, ok := m.running[in.Name]
		m.mu.Unlock()
		var err error
		switch {
		case !ok:
			err = m.start(in)
		case !ri.in.Equal(in):
			err = m.reconfigure(ri, in)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// reconfigure applies a change to a running instance in place and brings
// its tracked conditions in line.
func (m *Manager) reconfigure(ri *runningInstance, in Instance) error {
	old := ri.in
	// The new config routes host events first: the removal of a dropped
	// VIP is then not taken for a VIP lost by hand, and link events of
	// newly tracked interfaces reach the Router (the seed below is read
	// after, so it is no older).
	m.mu.Lock()
	ri.in = in
	m.mu.Unlock()
	err := ri.r.Reconfigure(in)
	if _, ok := errors.AsType[*RestartError](err); ok || errors.Is(err, ErrNotRunning) {
		m.mu.Lock()
		ri.in = old
		m.mu.Unlock()
		return err // not taken: Apply decides restarts before this
	}
	// Taken, perhaps with errors from the host (they name the instance).
	oldT, newT := trackedInterfaces(old), trackedInterfaces(in)
	for _, name := range newT {
		if !slices.Contains(oldT, name) {
			m.seedLink(ri.r, in.Name, name)
		}
	}
	for _, name := range oldT {
		if !slices.Contains(newT, name) {
			ri.r.Untrack("interface " + name)
		}
	}
	if old.TrackProxy != in.TrackProxy && m.opts.TrackProxy {
		if in.TrackProxy {
			m.mu.Lock()
			ri.r.Track("proxy", m.proxyOK)
			m.mu.Unlock()
		} else {
			ri.r.Untrack("proxy")
		}
	}
	return err
}

// seedLink tells r whether a tracked interface is up now.
func (m *Manager) seedLink(r *Router, instance, name string) {
	up, err := m.sys.LinkUp(name)
	if err != nil {
		m.log.Warn("tracked interface not found; in fault until it appears", "instance", instance, "interface", name, "err", err)
	}
	r.Track("interface "+name, up)
}

// stopAll stops instances at once (each master's priority 0 goes out
// together) and waits for them.
func stopAll(list []*runningInstance) {
	for _, ri := range list {
		ri.cancel()
	}
	for _, ri := range list {
		<-ri.done
		closeEffects(ri.fx)
		ri.r.m.forget()
	}
}

func (m *Manager) start(in Instance) error {
	tr, fx, err := m.sys.Open(in)
	if err != nil {
		// System errors name the interface; the instance is named here, once.
		return fmt.Errorf("instance %q: %w", in.Name, err)
	}
	r, err := NewRouter(in, RouterOptions{Transport: tr, Effects: fx, Logger: m.log, Metrics: m.metrics, OnTransition: m.opts.OnTransition, Ready: m.opts.Ready})
	if err != nil {
		tr.Close()
		closeEffects(fx)
		return err // names the instance
	}
	ctx, cancel := context.WithCancel(context.Background())
	ri := &runningInstance{in: in, r: r, fx: fx, cancel: cancel, done: make(chan struct{})}
	// Register before seeding the tracked conditions, so a link event in
	// between reaches the Router and the seed read after it is no older.
	m.mu.Lock()
	m.running[in.Name] = ri
	m.mu.Unlock()
	// Seed tracking before the first election.
	for _, name := range trackedInterfaces(in) {
		m.seedLink(r, in.Name, name)
	}
	if in.TrackProxy {
		if m.opts.TrackProxy {
			m.mu.Lock()
			r.Track("proxy", m.proxyOK)
			m.mu.Unlock()
		} else {
			m.log.Info("track.proxy ignored: no proxy runs in this process", "instance", in.Name)
		}
	}
	go func() {
		defer close(ri.done)
		if err := r.Run(ctx); err != nil {
			m.log.Error("instance stopped", "instance", in.Name, "err", err)
		}
	}()
	return nil
}

func closeEffects(fx Effects) {
	if c, ok := fx.(io.Closer); ok {
		c.Close()
	}
}

func trackedInterfaces(in Instance) []string {
	out := []string{in.Interface}
	for _, n := range in.TrackInterfaces {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func (m *Manager) startWatchLocked() {
	if m.watchStop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.watchStop, m.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(m.watchDone)
		if err := m.sys.Watch(ctx, managerWatcher{m}); err != nil {
			m.log.Error("watching links and addresses", "err", err)
		}
	}()
}

// managerWatcher routes host events to the instances they concern.
type managerWatcher struct{ m *Manager }

func (w managerWatcher) Link(name string, up bool) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	for _, ri := range w.m.running {
		if slices.Contains(trackedInterfaces(ri.in), name) {
			ri.r.Track("interface "+name, up)
		}
	}
}

func (w managerWatcher) AddrRemoved(ifindex int, addr netip.Addr) {
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	for _, ri := range w.m.running {
		if slices.ContainsFunc(ri.in.VIPs, func(p netip.Prefix) bool { return p.Addr() == addr }) {
			ri.r.VIPRemoved()
		}
	}
}

func (w managerWatcher) Error(err error) { w.m.log.Warn("link watch", "err", err) }

// SetProxyHealthy reports whether this node's proxy listeners accept
// connections; instances with track.proxy go to Fault while they don't.
// Never blocks.
func (m *Manager) SetProxyHealthy(ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.proxyOK = ok
	if !m.opts.TrackProxy {
		return
	}
	for _, ri := range m.running {
		if ri.in.TrackProxy {
			ri.r.Track("proxy", ok)
		}
	}
}

// InstanceStatus is what a status page shows of one instance: the
// Manager's one view of its instances.
type InstanceStatus struct {
	Name     string     `json:"name"`
	State    State      `json:"state"`
	Priority uint8      `json:"priority"`
	Master   netip.Addr `json:"master,omitzero"` // the master as last seen
	VIPs     []string   `json:"vips"`
	Counters Counters   `json:"counters"`
}

// Status returns every running instance's status, sorted by name.
func (m *Manager) Status() []InstanceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]InstanceStatus, 0, len(m.running))
	for n, ri := range m.running {
		st := InstanceStatus{Name: n, State: ri.r.State(), Priority: ri.in.Priority, Master: ri.r.Master(), Counters: ri.r.Counters()}
		for _, v := range ri.in.VIPs {
			st.VIPs = append(st.VIPs, v.String())
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b InstanceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close stops every instance cleanly (a master sends priority 0 and
// removes its VIPs) and waits for them.
func (m *Manager) Close() error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	var list []*runningInstance
	for name, ri := range m.running {
		list = append(list, ri)
		delete(m.running, name)
	}
	watchStop, watchDone := m.watchStop, m.watchDone
	m.mu.Unlock()
	stopAll(list)
	if watchStop != nil {
		watchStop()
		<-watchDone
	}
	return nil
}

// Run waits for ctx and then closes the Manager: the Task form for an
// errgroup. Apply may be called before or during Run.
func (m *Manager) Run(ctx context.Context) error {
	<-ctx.Done()
	return m.Close()
}
