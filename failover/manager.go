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
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// System is what a Manager needs from the host. LinuxSystem is the real
// one; tests supply fakes.
type System interface {
	// Open returns the transport and effects of one instance. If the
	// Effects also implement io.Closer, the Manager closes them after the
	// instance stops.
	Open(in Instance) (Transport, Effects, error)
	// LinkState reports whether a network interface is up, and its index.
	LinkState(name string) (LinkState, error)
	// Watch reports link and address changes to w until ctx is done.
	Watch(ctx context.Context, w Watcher) error
}

// LinkState is a network interface as System.LinkState finds it.
type LinkState struct {
	Up bool // administratively up with carrier
	// Index is the kernel's ifindex, which changes when the interface is
	// deleted and made again under its name; 0 when the System cannot tell.
	Index int
}

// Watcher receives host events from System.Watch. Its methods must not
// block.
type Watcher interface {
	Link(name string, up bool)
	// Recreated reports an interface deleted and made again under its
	// name (a network manager recreating a VLAN, bond or veth): a socket
	// bound to the old one hears nothing any more.
	Recreated(name string)
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
	// System defaults to LinuxSystem on Linux; elsewhere every instance
	// fails to start, saying VRRP needs Linux.
	System System
	// Inherit is the state the process this one replaces handed over (an
	// upgrade in place: Manager.Handover there, ParseSnapshot here). The
	// first Apply resumes each instance it names whose interface, VRID,
	// version and address family are unchanged in that state, without
	// Initialize and without waiting for Ready (the old process's proxy
	// serves meanwhile); any other instance starts normally, and the log
	// says why. A snapshot older than SnapshotMaxAge is ignored. With
	// Inherit the Manager is provisional until Confirm.
	Inherit *Snapshot

	// Test seams. requeryEvery is the period of the re-query of the
	// tracked interfaces (requery.go): 0 means requeryPeriod, negative
	// none. dropLinkEvents, while true, drops link events (Link,
	// Recreated) before they reach the instances, as a netlink message
	// lost to a full socket buffer is.
	requeryEvery   time.Duration
	dropLinkEvents *atomic.Bool
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
	// linkReports counts, by interface name, the reports of its state
	// handed to the instances tracking it (events and query answers): a
	// query's answer is handed over only if none came while it ran
	// (queryLinks). Names nothing tracked are not counted.
	linkReports map[string]uint64
	// pending holds the instances a reopen stopped and could not start
	// again (the interface gone once more, a socket that failed): the
	// re-query tries them each period until one starts; an Apply takes
	// them over (its own failed starts are retried by its caller).
	pending map[string]pendingStart

	// The upgrade in place (handover.go).
	handingOver bool // old side: between Handover and Release or AbortHandover
	// reopenLater: interfaces recreated while handing over, by what saw
	// it; reopened if the hand-over is aborted (reopenLocked).
	reopenLater     map[string]string
	released        bool           // old side: Release closed the Manager
	provisional     bool           // new side: from NewManager with Inherit until Confirm
	inherit         *Snapshot      // new side: taken by the first Apply
	predecessorVIPs []netip.Prefix // held by the old process while provisional
}

// pendingStart is an instance to start again, and why it is not running.
type pendingStart struct {
	in    Instance
	err   error
	since time.Time // when it stopped
}

type runningInstance struct {
	in     Instance
	r      *Router
	fx     Effects
	cancel context.CancelFunc
	done   chan struct{}
	// proxyDeferred: an inherited instance's track.proxy waits for the
	// first SetProxyHealthy after Confirm. Guarded by Manager.mu.
	proxyDeferred bool
	// ifindex is the index of the interface its socket was opened on (0:
	// unknown), to tell that interface made again under its name.
	ifindex int
}

// NewManager makes a Manager; nothing runs until Apply.
func NewManager(o Options) (*Manager, error) {
	m := &Manager{opts: o, log: o.Logger, sys: o.System, running: map[string]*runningInstance{}, proxyOK: true,
		linkReports: map[string]uint64{}, pending: map[string]pendingStart{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("subsystem", "failover")
	if o.Inherit != nil {
		s := *o.Inherit
		m.inherit, m.provisional, m.predecessorVIPs = &s, true, s.VIPsHeld()
	}
	if m.sys == nil {
		m.sys = hostSystem()
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
		released := m.released
		m.mu.Unlock()
		if released {
			return errors.New("Apply after Release: the instances run in the new process now")
		}
		return errors.New("Apply after Close")
	}
	m.startWatchLocked()
	clear(m.pending) // every instance of cfg not running starts below
	inherit := m.takeInheritLocked(cfg)
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
	stopAll(stop, false)
	// ri.in changes only under applyMu, which we hold: read it freely.
	for _, in := range cfg.Instances {
		m.mu.Lock()
		ri, ok := m.running[in.Name]
		m.mu.Unlock()
		var err error
		switch {
		case !ok:
			var inh *InstanceSnapshot
			if s, found := inherit[in.Name]; found {
				if why := adoptable(s, in); why != "" {
					m.log.Warn("not inheriting the previous process's state: the config changed in a way that needs a new election; starting normally",
						"instance", in.Name, "was", s.State.String(), "changed", why)
				} else {
					inh = &s
				}
			}
			err = m.start(in, inh)
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
	var added []string
	for _, name := range newT {
		if !slices.Contains(oldT, name) {
			added = append(added, name)
		}
	}
	m.seedLinks(in.Name, added)
	for _, name := range oldT {
		if !slices.Contains(newT, name) {
			ri.r.Untrack("interface " + name)
		}
	}
	if old.TrackProxy != in.TrackProxy && m.opts.TrackProxy {
		m.mu.Lock()
		if in.TrackProxy && !ri.proxyDeferred && m.proxyStarted() {
			ri.r.Track("proxy", m.proxyOK)
		} else if !in.TrackProxy {
			ri.proxyDeferred = false
			ri.r.Untrack("proxy")
		}
		m.mu.Unlock()
	}
	return err
}

// seedLinks tells an instance that starts, or tracks the named
// interfaces from now on, whether each is up (queryLinks): it must be
// registered with the interfaces in its Instance first, so that a link
// event meanwhile reaches it.
func (m *Manager) seedLinks(instance string, names []string) {
	if len(names) == 0 {
		return
	}
	answers := m.queryLinks(names...)
	for _, name := range names {
		if a := answers[name]; a.err != nil {
			m.log.Warn("tracked interface not found; in fault until it appears", "instance", instance, "interface", name, "err", a.err)
		}
	}
}

// linkAnswer is System.LinkState's answer: an interface it cannot find
// is down.
type linkAnswer struct {
	LinkState
	err error
}

// queryLinks asks the host whether the named interfaces are up and hands
// each answer to the instances tracking that interface. An answer is
// handed over only if no other report on its interface (an event,
// another answer) reached them while the query ran: that report is at
// least as new, and a later change sends another event. Without that
// check, an answer read just before a link-up event and handed over just
// after it put the instance back in FAULT, for good: the event was the
// last word (TestNetnsInterfaceRecreated, after a restart's seed).
func (m *Manager) queryLinks(names ...string) map[string]linkAnswer {
	m.mu.Lock()
	before := make([]uint64, len(names))
	for i, n := range names {
		before[i] = m.linkReports[n]
	}
	m.mu.Unlock()
	answers := make(map[string]linkAnswer, len(names))
	for _, n := range names {
		st, err := m.sys.LinkState(n)
		if err != nil {
			st = LinkState{}
		}
		answers[n] = linkAnswer{st, err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, n := range names {
		if m.linkReports[n] == before[i] {
			m.reportLinkLocked(n, answers[n].Up, true, answers[n].Index)
		}
	}
	return answers
}

// reportLinkLocked tells every instance tracking interface name whether it
// is up, and counts the report; m.mu is held. queried: the report is a
// query's answer, index the interface's index it found (0 unknown); one
// that contradicts what an instance was last told means a link event was
// lost (or is still on its way), and is logged. An instance whose socket
// is bound to an interface of that name deleted since is not told: it is
// deaf there, and out of FAULT it could take mastership beside the real
// master until the re-query reopens it (requery).
func (m *Manager) reportLinkLocked(name string, up, queried bool, index int) {
	cond := "interface " + name
	tracked := false
	for _, ri := range m.running {
		if !slices.Contains(trackedInterfaces(ri.in), name) {
			continue
		}
		tracked = true
		if queried && index != 0 && ri.ifindex != 0 && ri.in.Interface == name && ri.ifindex != index {
			continue
		}
		if queried {
			was, known := ri.r.trackedHealth(cond)
			if known && was == up {
				continue // nothing new: no wake-up every second
			}
			if known {
				m.log.Info("tracked interface re-queried: its state differs from the last link event (lost, or still on its way); correcting the instance's view",
					"instance", ri.in.Name, "interface", name, "up", up)
			}
		}
		ri.r.Track(cond, up)
	}
	if tracked {
		m.linkReports[name]++
	}
}

// stopAll stops instances at once (each master's priority 0 goes out
// together) and waits for them. silent stops them without a word instead
// (Router.Release), for a process that hands them over.
func stopAll(list []*runningInstance, silent bool) {
	if silent {
		var wg sync.WaitGroup
		for _, ri := range list {
			wg.Go(func() { ri.r.Release() })
		}
		wg.Wait()
	}
	for _, ri := range list {
		ri.cancel()
	}
	for _, ri := range list {
		<-ri.done
		closeEffects(ri.fx)
		ri.r.m.forget()
	}
}

// start opens and runs a new instance; inh, when set, is the state it
// resumes (Options.Inherit), taken before start returns.
func (m *Manager) start(in Instance, inh *InstanceSnapshot) error {
	tr, fx, err := m.sys.Open(in)
	if err != nil {
		// System errors name the interface; the instance is named here, once.
		return fmt.Errorf("instance %q: %w", in.Name, err)
	}
	ropts := RouterOptions{Transport: tr, Effects: fx, Logger: m.log, Metrics: m.metrics, OnTransition: m.opts.OnTransition, Ready: m.opts.Ready}
	m.mu.Lock()
	ropts.KeepVIPs = m.provisional && overlaps(in.VIPs, m.predecessorVIPs)
	m.mu.Unlock()
	if inh != nil {
		ropts.Inherit, ropts.Ready = inh, nil
		m.log.Info("resuming the previous process's state", "instance", in.Name, "state", inh.State.String(),
			"pid", m.inheritPID(), "lastAdvertSent", inh.LastAdvertSent)
	}
	r, err := NewRouter(in, ropts)
	if err != nil {
		tr.Close()
		closeEffects(fx)
		return err // names the instance
	}
	ctx, cancel := context.WithCancel(context.Background())
	ri := &runningInstance{in: in, r: r, fx: fx, cancel: cancel, done: make(chan struct{})}
	if b, ok := tr.(boundTransport); ok {
		ri.ifindex = b.boundIndex()
	}
	// Register before seeding the tracked conditions, so a link event in
	// between reaches the Router (and the seed then yields to it).
	m.mu.Lock()
	m.running[in.Name] = ri
	m.mu.Unlock()
	// Seed tracking before the first election.
	m.seedLinks(in.Name, trackedInterfaces(in))
	if in.TrackProxy {
		if m.opts.TrackProxy {
			m.mu.Lock()
			switch {
			case inh != nil && m.provisional:
				ri.proxyDeferred = true
			case m.proxyStarted():
				r.Track("proxy", m.proxyOK)
			}
			// Else the proxy's health is not known yet: the first report
			// after Ready tells (SetProxyHealthy).
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
	if inh != nil {
		// Apply returns once a resumed master has advertised: the old
		// process may stop as soon as the caller says it is ready.
		select {
		case <-r.begun:
		case <-ri.done:
		}
	}
	return nil
}

// boundTransport is a Transport that tells the index of the interface its
// socket is bound to.
type boundTransport interface{ boundIndex() int }

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

// startWatchLocked starts following the host: the link and address watch,
// and the re-query of the tracked interfaces that repairs what a lost
// event left wrong. Close and Release stop both.
func (m *Manager) startWatchLocked() {
	if m.watchStop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.watchStop, m.watchDone = cancel, make(chan struct{})
	every := m.opts.requeryEvery
	if every == 0 {
		every = requeryPeriod
	}
	go func() {
		defer close(m.watchDone)
		var wg sync.WaitGroup
		if every > 0 {
			wg.Go(func() { m.requeryLoop(ctx, every) })
		}
		if err := m.sys.Watch(ctx, managerWatcher{m}); err != nil {
			m.log.Error("watching links and addresses", "err", err)
		}
		wg.Wait()
	}()
}

// managerWatcher routes host events to the instances they concern.
type managerWatcher struct{ m *Manager }

func (w managerWatcher) Link(name string, up bool) {
	if w.dropped() {
		return
	}
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	w.m.reportLinkLocked(name, up, false, 0)
}

// dropped: the test seam Options.dropLinkEvents is on.
func (w managerWatcher) dropped() bool {
	return w.m.opts.dropLinkEvents != nil && w.m.opts.dropLinkEvents.Load()
}

func (w managerWatcher) Recreated(name string) {
	if w.dropped() {
		return
	}
	w.m.mu.Lock()
	defer w.m.mu.Unlock()
	for _, ri := range w.m.running {
		if ri.in.Interface == name {
			go w.m.reopen(name) // not under the watcher: it must not block
			return
		}
	}
}

// reopen restarts the instances on an interface that was recreated, with
// new sockets. Without it an instance keeps a socket bound to the deleted
// interface: deaf to the master's adverts on the new one, it takes the
// VIPs beside it (a split brain).
func (m *Manager) reopen(name string) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.reopenLocked(name, "link event")
}

// reopenLocked is reopen with applyMu held; seenBy says what told the
// interface was made again (the link event or the re-query). Only
// instances whose socket is bound to another interface than the current
// one of that name restart (all of them when the System tells no
// indexes): the watch and the re-query may both see one recreation, and
// an instance whose interface is gone again waits for it to come back.
func (m *Manager) reopenLocked(name, seenBy string) {
	cur, err := m.sys.LinkState(name)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	if m.handingOver {
		// A restart now would stop the instances as a shutdown does: a
		// master would send priority 0 and remove the VIPs the new
		// process holds on this same node. The new process opens its
		// own sockets; this one needs new ones only if it carries on.
		_, seen := m.reopenLater[name]
		if m.reopenLater == nil {
			m.reopenLater = map[string]string{}
		}
		m.reopenLater[name] = seenBy
		m.mu.Unlock()
		if !seen {
			m.log.Info("interface recreated during an upgrade: the instances there restart only if the upgrade is aborted", "interface", name, "seenBy", seenBy)
		}
		return
	}
	var list []*runningInstance
	for n, ri := range m.running {
		if ri.in.Interface != name || (ri.ifindex != 0 && (err != nil || cur.Index == ri.ifindex)) {
			continue
		}
		list = append(list, ri)
		delete(m.running, n)
	}
	// A new process not yet confirmed stops them without a word, as its
	// Close does: the old process still runs them, with the VIPs.
	silent := m.provisional
	m.mu.Unlock()
	stopAll(list, silent)
	for _, ri := range list {
		m.log.Info("interface recreated: restarting the instance with a new socket", "instance", ri.in.Name, "interface", name,
			"seenBy", seenBy, "ifindex", cur.Index, "was", ri.ifindex)
		if err := m.start(ri.in, nil); err != nil {
			m.log.Error("restarting an instance after its interface was recreated failed: retrying every second", "instance", ri.in.Name, "err", err)
			m.mu.Lock()
			m.pending[ri.in.Name] = pendingStart{in: ri.in, err: err, since: time.Now()}
			m.mu.Unlock()
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
// Reports before Options.Ready is closed are ignored: a proxy that has
// not applied its first config has not failed, it has not started (the
// instances wait in Initialize meanwhile), so the caller should compute
// ok after seeing Ready closed. Never blocks.
func (m *Manager) SetProxyHealthy(ok bool) {
	if !m.proxyStarted() {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.proxyOK = ok
	if !m.opts.TrackProxy {
		return
	}
	for _, ri := range m.running {
		if !ri.in.TrackProxy {
			continue
		}
		if ri.proxyDeferred {
			if m.provisional {
				continue // the old process's proxy serves until Confirm
			}
			ri.proxyDeferred = false
		}
		ri.r.Track("proxy", ok)
	}
}

// proxyStarted reports whether the proxy's health means something yet:
// Options.Ready is nil or closed.
func (m *Manager) proxyStarted() bool {
	if m.opts.Ready == nil {
		return true
	}
	select {
	case <-m.opts.Ready:
		return true
	default:
		return false
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
	// PeerMismatch is the last advertisement dropped in the last minute
	// because its sender's configuration differs from ours (password,
	// VRID, version, interval, peers): a likely split brain.
	PeerMismatch *PeerMismatch `json:"peerMismatch,omitempty"`
	// Error says why a configured instance does not run (State is then
	// FAULT), since ErrorSince: it is being started again.
	Error      string    `json:"error,omitempty"`
	ErrorSince time.Time `json:"errorSince,omitzero"`
}

// Status returns every running instance's status, sorted by name.
func (m *Manager) Status() []InstanceStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]InstanceStatus, 0, len(m.running))
	for n, ri := range m.running {
		st := InstanceStatus{Name: n, State: ri.r.State(), Priority: ri.in.Priority, Master: ri.r.Master(), Counters: ri.r.Counters(), PeerMismatch: ri.r.PeerMismatch()}
		for _, v := range ri.in.VIPs {
			st.VIPs = append(st.VIPs, v.String())
		}
		out = append(out, st)
	}
	for n, ps := range m.pending {
		if _, ok := m.running[n]; ok {
			continue // started again a moment ago
		}
		st := InstanceStatus{Name: n, State: StateFault, Priority: ps.in.Priority, ErrorSince: ps.since,
			Error: "not running: its restart after its interface was made again failed (retried every second): " + ps.err.Error()}
		for _, v := range ps.in.VIPs {
			st.VIPs = append(st.VIPs, v.String())
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b InstanceStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Close stops every instance cleanly (a master sends priority 0 and
// removes its VIPs) and waits for them. While the Manager is provisional
// (Options.Inherit before Confirm) it stops them without a word instead:
// the old process still runs them. After Release it does nothing.
func (m *Manager) Close() error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	silent := m.provisional
	list, watchStop, watchDone := m.closeLocked()
	m.mu.Unlock()
	if silent && len(list) > 0 {
		m.log.Warn("stopping without a priority 0 advertisement and leaving the VIPs: the upgrade was not confirmed, the previous process runs the instances")
	}
	stopAll(list, silent)
	if watchStop != nil {
		watchStop()
		<-watchDone
	}
	return nil
}

// closeLocked marks the Manager closed and takes its instances and watch.
func (m *Manager) closeLocked() (list []*runningInstance, watchStop context.CancelFunc, watchDone chan struct{}) {
	m.closed = true
	clear(m.pending)
	m.reopenLater = nil
	for name, ri := range m.running {
		list = append(list, ri)
		delete(m.running, name)
	}
	return list, m.watchStop, m.watchDone
}

func (m *Manager) inheritPID() int {
	if m.opts.Inherit == nil {
		return 0
	}
	return m.opts.Inherit.PID
}

// Run waits for ctx and then closes the Manager: the Task form for an
// errgroup. Apply may be called before or during Run.
func (m *Manager) Run(ctx context.Context) error {
	<-ctx.Done()
	return m.Close()
}
