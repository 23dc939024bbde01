package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitedge/gitedge/failover/vrrp"
)

// RouterOptions are what a Router needs besides its Instance.
type RouterOptions struct {
	Transport Transport // required
	Effects   Effects   // required
	// Logger receives transitions at Info and per-packet detail at Debug;
	// nil discards.
	Logger *slog.Logger
	// Metrics, when set, gets this instance's series; nil records none.
	Metrics *Metrics
	// OnTransition is called on the Router's goroutine after every state
	// change, once the VIPs are in place. It must not block.
	OnTransition func(Event)
	// Ready, when set, holds the instance in Initialize until it is closed
	// (the proxy listening), so a node never claims a VIP with nothing
	// behind it. nil starts at once.
	Ready <-chan struct{}
	// Inherit, when set, is this instance's state as the process it
	// replaces handed it over (an upgrade in place, Manager.Handover):
	// Run resumes that state instead of starting in Initialize (see
	// resume). The caller has checked it is this instance's
	// (Manager.Apply does); Ready does not hold an inherited instance.
	Inherit *InstanceSnapshot
	// KeepVIPs skips the removal of leftover VIPs when Run starts:
	// another process on this node, the one being upgraded, holds them.
	KeepVIPs bool
}

// Router runs one VRRP instance: a single goroutine (Run) owns all its
// state and is driven by received packets, its timers and tracking
// updates; every state change goes through transition.
type Router struct {
	cfg   Instance
	name  string // cfg.Name, which never changes: readable from any goroutine
	tr    Transport
	fx    Effects
	log   *slog.Logger
	m     *instanceMetrics
	hook  func(Event)
	ready <-chan struct{}
	// inherit and keepVIPs: see RouterOptions.
	inherit  *InstanceSnapshot
	keepVIPs bool

	state   atomic.Int32
	started atomic.Bool

	mu       sync.Mutex
	counters Counters
	master   netip.Addr      // the current master as last seen; guarded by mu
	health   map[string]bool // tracked condition -> healthy; guarded by mu
	trackCh  chan struct{}   // poked after health changes
	vipLost  chan struct{}
	reconf   chan reconfigRequest
	release  chan struct{}              // Release asks Run to stop without a word
	snap     chan chan InstanceSnapshot // Snapshot asks Run for its state
	begun    chan struct{}              // closed once Run has taken its first state
	exited   chan struct{}              // closed when Run returns

	// Owned by the Run goroutine.
	masterAdverInt time.Duration
	adv, down      *time.Timer
	garp, refresh  *time.Timer
	preemptAt      time.Time
	lastReassert   time.Time
	// Preempting a live master: when we last heard a lower-priority master
	// and from where, and the handover in progress (see preempt).
	lowerAt        time.Time
	lowerSrc       netip.Addr
	lowerPrio      uint8
	handover       *time.Timer
	takingOver     bool
	faults         []string // failing tracked conditions, sorted
	mismatchLogged bool
	// Drops that point at a peer's configuration (mismatch.go).
	dropLogs      map[dropKey]*dropLog
	mismatchEvery time.Duration
	mismatch      *PeerMismatch // the last one; guarded by mu
	// The master as last accepted (its address is master, under mu) and
	// when we last advertised, for Snapshot.
	masterPrio uint8
	masterSeen time.Time
	lastSent   time.Time
}

// NewRouter makes a Router for in; call Run to start it.
func NewRouter(in Instance, o RouterOptions) (*Router, error) {
	if errs := ValidateInstance(in); len(errs) > 0 {
		return nil, errors.Join(fieldErrs(errs)...)
	}
	if in.Priority == 0 {
		return nil, errPriorityZero(in.Name)
	}
	if o.Transport == nil || o.Effects == nil {
		return nil, fmt.Errorf("instance %q: Transport and Effects are required", in.Name)
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Router{
		cfg:      in,
		name:     in.Name,
		tr:       o.Transport,
		fx:       o.Effects,
		log:      log.With("instance", in.Name, "vrid", in.VRID),
		m:        o.Metrics.forInstance(in.Name),
		hook:     o.OnTransition,
		ready:    o.Ready,
		inherit:  o.Inherit,
		keepVIPs: o.KeepVIPs || o.Inherit != nil,
		health:   map[string]bool{},
		trackCh:  make(chan struct{}, 1),
		vipLost:  make(chan struct{}, 1),
		reconf:   make(chan reconfigRequest),
		release:  make(chan struct{}),
		snap:     make(chan chan InstanceSnapshot),
		begun:    make(chan struct{}),
		exited:   make(chan struct{}),
	}
	r.counters.Drops = map[string]uint64{}
	r.dropLogs, r.mismatchEvery = map[dropKey]*dropLog{}, mismatchLogEvery
	r.m.setState(StateInitialize)
	return r, nil
}

func errPriorityZero(name string) error {
	return fmt.Errorf("instance %q: priority 0 is reserved for a stopping master (RFC 5798 §5.2.4); give this node 1..254", name)
}

func fieldErrs(fe []*FieldError) []error {
	out := make([]error, len(fe))
	for i, e := range fe {
		out[i] = e
	}
	return out
}

// Name is the instance's name.
func (r *Router) Name() string { return r.name }

// State is the instance's current state; safe from any goroutine.
func (r *Router) State() State { return State(r.state.Load()) }

// Counters returns a copy of the instance's counters.
func (r *Router) Counters() Counters {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.counters
	c.Drops = maps.Clone(r.counters.Drops)
	return c
}

func (r *Router) setMaster(a netip.Addr) {
	r.mu.Lock()
	r.master = a
	r.mu.Unlock()
}

// seeMaster records the master whose advertisement a backup accepted.
func (r *Router) seeMaster(src netip.Addr, p *vrrp.Packet) {
	r.setMaster(src)
	r.masterPrio, r.masterSeen = p.Priority, time.Now()
}

// Master is the address of the instance's master as this node last saw
// it: its own when master, the last accepted advertiser when backup,
// invalid when unknown.
func (r *Router) Master() netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.master
}

// Track reports the health of one tracked condition ("interface eth0",
// "proxy"). While any is unhealthy the instance is in Fault: it gives the
// VIPs up (sending priority 0 if it was master) and takes no part in
// elections. It never blocks; safe from any goroutine, before or during Run.
func (r *Router) Track(condition string, healthy bool) {
	r.mu.Lock()
	r.health[condition] = healthy
	r.mu.Unlock()
	select {
	case r.trackCh <- struct{}{}:
	default:
	}
}

// Untrack forgets a tracked condition (no longer configured); it no longer
// holds the instance in Fault. Never blocks; safe from any goroutine.
func (r *Router) Untrack(condition string) {
	r.mu.Lock()
	_, ok := r.health[condition]
	delete(r.health, condition)
	r.mu.Unlock()
	if !ok {
		return
	}
	select {
	case r.trackCh <- struct{}{}:
	default:
	}
}

// trackedHealth is what Track last said of condition; ok is false if it
// said nothing (or Untrack came after).
func (r *Router) trackedHealth(condition string) (healthy, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	healthy, ok = r.health[condition]
	return healthy, ok
}

type reconfigRequest struct {
	in   Instance
	done chan error // buffered: the Run goroutine never waits on it
}

// ErrNotRunning is returned by Reconfigure when Run has returned.
var ErrNotRunning = errors.New("not running")

// Reconfigure applies a changed configuration to the running instance
// without leaving its state (no Initialize, no new election):
//
//   - a new priority goes out with the next advertisement, and the
//     election follows from it as the RFC says: a master that drops below
//     a backup is preempted if that backup preempts, a backup that rises
//     above the master preempts if it preempts, and a backup made the
//     address owner (255) takes over at once;
//   - VIPs added are set and announced on a master, VIPs removed are
//     taken off it; a backup holds none either way;
//   - a new advertisement interval takes effect at the next
//     advertisement; preempt, preemptDelay, auth, unicast peers and GARP
//     settings from the next packet or timer that uses them.
//
// A change to a field that needs a new socket (name, interface, VRID,
// version, multicast/unicast, the VIPs' address family; see changeRules)
// is refused with an error naming the fields: stop the instance and start
// a new one. The change is made on the Run goroutine; Reconfigure waits
// for it and returns the errors of the host effects it caused (the
// configuration is in place even then). It must be called while Run runs
// (it waits for Run to take it) and returns ErrNotRunning once Run has
// returned. Safe from any goroutine.
func (r *Router) Reconfigure(in Instance) error {
	if errs := ValidateInstance(in); len(errs) > 0 {
		return errors.Join(fieldErrs(errs)...)
	}
	if in.Priority == 0 {
		return errPriorityZero(in.Name)
	}
	req := reconfigRequest{in: in, done: make(chan error, 1)}
	select {
	case r.reconf <- req:
		return <-req.done
	case <-r.exited:
		return fmt.Errorf("instance %q: %w", in.Name, ErrNotRunning)
	}
}

// VIPRemoved tells a master that one of its VIPs left the interface (for
// example removed by hand); it puts it back and re-announces. Never blocks.
func (r *Router) VIPRemoved() {
	select {
	case r.vipLost <- struct{}{}:
	default:
	}
}

// Run runs the instance until ctx is done, then stops cleanly: a master
// sends a priority 0 advertisement so a backup takes over after its skew
// time (RFC 5798 §6.4.3), and the VIPs are removed. Run may be called once;
// it closes the Transport before returning.
func (r *Router) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return fmt.Errorf("instance %q: Run called twice", r.cfg.Name)
	}
	defer close(r.exited)
	r.adv, r.down, r.garp, r.refresh, r.handover = stoppedTimer(), stoppedTimer(), stoppedTimer(), stoppedTimer(), stoppedTimer()
	// A previous run may have died holding the VIPs (SIGKILL): remove them
	// before anything else so this node never claims what it does not own.
	// Not during an upgrade: the process being replaced holds them, alive.
	if !r.keepVIPs {
		if err := r.fx.RemoveVIPs(r.cfg.VIPs); err != nil {
			r.log.Warn("removing stale VIPs at start-up", "err", err)
		}
	}

	rx := make(chan Datagram, 64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { r.readLoop(rx, done) })
	defer func() {
		close(done)
		r.tr.Close()
		wg.Wait()
	}()

	for ready := r.ready; ready != nil; {
		select {
		case <-ready:
			ready = nil
		case req := <-r.reconf:
			req.done <- r.reconfigure(req.in)
		case reply := <-r.snap:
			close(reply) // Initialize: nothing to hand over
		case <-r.release:
			r.log.Info("handed over to the new process before starting")
			return nil
		case <-ctx.Done():
			r.shutdown()
			return nil
		}
	}
	r.updateFaults()
	if r.inherit != nil {
		r.resume(*r.inherit)
	} else {
		r.startup("startup")
	}
	close(r.begun)
	for {
		select {
		case <-ctx.Done():
			r.shutdown()
			return nil
		case <-r.release:
			r.releaseSilently()
			return nil
		case reply := <-r.snap:
			if s, ok := r.snapshot(); ok {
				reply <- s
			}
			close(reply)
		case d := <-rx:
			r.receive(d)
		case <-r.adv.C:
			// RFC 5798 §6.4.3 / RFC 3768 §6.4.3: Adver_Timer fires.
			r.sendAdvert(r.cfg.Priority)
			r.adv.Reset(r.cfg.AdvertInterval)
			// Renew the VIPs (and their lifetime, see LinuxSystem).
			if r.State() == StateMaster {
				if err := r.fx.AddVIPs(r.cfg.VIPs); err != nil {
					r.log.Warn("renewing VIPs", "err", err)
				}
			}
		case <-r.down.C:
			// RFC 5798 §6.4.2 / RFC 3768 §6.4.2: Master_Down_Timer fires.
			if r.preemptingLive() {
				r.preempt()
			} else {
				r.becomeMaster("master down timer expired")
			}
		case <-r.handover.C:
			r.finishTakeover("the old master did not confirm; taking over")
		case <-r.garp.C:
			// keepalived's garp_master_delay: a second burst after becoming master.
			r.announce(r.cfg.GARP.Repeat, "second burst")
		case <-r.refresh.C:
			// Periodic refresh while master (issue: never a black hole).
			if err := r.fx.AddVIPs(r.cfg.VIPs); err != nil {
				r.log.Warn("refreshing VIPs", "err", err)
			}
			r.announce(1, "refresh")
			r.refresh.Reset(r.cfg.GARP.Refresh)
		case <-r.vipLost:
			if r.State() == StateMaster {
				r.log.Warn("a VIP left the interface while master; putting it back")
				if err := r.fx.AddVIPs(r.cfg.VIPs); err != nil {
					r.log.Error("restoring VIPs", "err", err)
				}
				r.announce(r.cfg.GARP.Repeat, "VIP restored")
			}
		case <-r.trackCh:
			r.onTrack()
		case req := <-r.reconf:
			req.done <- r.reconfigure(req.in)
		}
	}
}

func stoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// readLoop moves received datagrams to the Run goroutine.
func (r *Router) readLoop(rx chan<- Datagram, done <-chan struct{}) {
	for {
		d, err := r.tr.Receive()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Debug("receive", "err", err)
			select {
			case <-done:
				return
			case <-time.After(10 * time.Millisecond): // don't spin on a persistent error
				continue
			}
		}
		select {
		case rx <- d:
		case <-done:
			return
		}
	}
}

// startup is the Initialize state's Startup event (RFC 5798 §6.4.1,
// RFC 3768 §6.4.1).
func (r *Router) startup(reason string) {
	if len(r.faults) > 0 {
		r.transition(StateFault, "tracked "+r.faults[0]+" unhealthy")
		return
	}
	if r.cfg.Priority == 255 {
		// The address owner becomes master at once.
		r.becomeMaster(reason + ": address owner (priority 255)")
		return
	}
	r.masterAdverInt = r.cfg.AdvertInterval
	r.preemptAt, r.lowerAt = time.Time{}, time.Time{}
	r.down.Reset(r.masterDownInterval())
	r.transition(StateBackup, reason)
}

// shutdown is the Shutdown event in every state (RFC 5798 §6.4.2, §6.4.3).
func (r *Router) shutdown() {
	r.down.Stop()
	r.cancelTakeover()
	if r.State() == StateMaster {
		r.adv.Stop()
		// §6.4.3: send an ADVERTISEMENT with Priority = 0.
		r.sendAdvert(0)
		r.leaveMaster()
	} else if err := r.fx.RemoveVIPs(r.cfg.VIPs); err != nil {
		r.log.Warn("removing VIPs on stop", "err", err)
	}
	r.transition(StateInitialize, "stopped")
}

// preemptingLive reports whether the Master_Down_Timer fired while a
// lower-priority master was still advertising: a preemption, not a dead
// master.
func (r *Router) preemptingLive() bool {
	return !r.lowerAt.IsZero() && time.Since(r.lowerAt) < r.masterDownInterval()
}

// preempt takes over from a live lower-priority master without both ever
// holding the VIPs: send our ADVERTISEMENT first (RFC 5798 §6.4.2), and
// add the VIPs only once the old master released them — a gitedge master
// confirms with its last advertisement after removing them; another
// implementation (keepalived removes them on receipt) gets a short grace.
func (r *Router) preempt() {
	r.takingOver = true
	r.sendAdvert(r.cfg.Priority)
	r.handover.Reset(min(r.cfg.AdvertInterval, 50*time.Millisecond))
	r.log.Info("preempting a lower-priority master", "master", r.lowerSrc)
}

// finishTakeover completes preempt.
func (r *Router) finishTakeover(reason string) {
	if !r.takingOver {
		return
	}
	r.becomeMaster("preempted a lower-priority master: " + reason)
}

func (r *Router) becomeMaster(reason string) {
	r.down.Stop()
	r.handover.Stop()
	r.takingOver = false
	r.lowerAt = time.Time{}
	r.preemptAt = time.Time{}
	if err := r.fx.AddVIPs(r.cfg.VIPs); err != nil {
		r.log.Error("adding VIPs", "err", err)
	}
	// RFC 5798 §6.4.1/§6.4.2: send an ADVERTISEMENT, then a gratuitous
	// ARP / unsolicited NA for each address, and set the Adver_Timer.
	r.sendAdvert(r.cfg.Priority)
	r.announce(r.cfg.GARP.Repeat, "became master")
	r.adv.Reset(r.cfg.AdvertInterval)
	if r.cfg.GARP.Delay > 0 {
		r.garp.Reset(r.cfg.GARP.Delay)
	}
	if r.cfg.GARP.Refresh > 0 {
		r.refresh.Reset(r.cfg.GARP.Refresh)
	}
	r.transition(StateMaster, reason)
}

// leaveMaster stops a master's timers and gives the VIPs up.
func (r *Router) leaveMaster() {
	r.cancelTakeover()
	r.adv.Stop()
	r.garp.Stop()
	r.refresh.Stop()
	if err := r.fx.RemoveVIPs(r.cfg.VIPs); err != nil {
		r.log.Error("removing VIPs", "err", err)
	}
}

// cancelTakeover abandons a preemption in progress.
func (r *Router) cancelTakeover() {
	if r.takingOver {
		r.takingOver = false
		r.handover.Stop()
	}
}

// skewTime is RFC 5798 §6.1 Skew_Time (v3: scaled by the master's
// advertisement interval) or RFC 3768 §6.1 Skew_Time (v2: in seconds).
func (r *Router) skewTime() time.Duration {
	p := time.Duration(256 - int(r.cfg.Priority))
	if r.cfg.Version == 2 {
		return p * time.Second / 256
	}
	return p * r.masterAdverInt / 256
}

// masterDownInterval is RFC 5798 §6.1 / RFC 3768 §6.1 Master_Down_Interval:
// three advertisement intervals plus the skew time.
func (r *Router) masterDownInterval() time.Duration {
	return 3*r.masterAdverInt + r.skewTime()
}

func (r *Router) receive(d Datagram) {
	if r.State() == StateFault {
		r.drop(DropFault, d, nil)
		return
	}
	// RFC 5798 §7.1 / RFC 3768 §7.1: the TTL must be 255.
	if d.TTL != vrrp.TTL {
		r.drop(DropTTL, d, fmt.Errorf("TTL %d", d.TTL))
		r.peerDrop(DropTTL, d.Src, fmt.Sprintf("TTL %d, not 255: the packet was routed (VRRP peers must share a link)", d.TTL), false)
		return
	}
	// Version, type, length against the address count, checksum.
	p, err := vrrp.Decode(d.Payload, d.Src, d.Dst)
	if err != nil {
		r.drop(decodeReason(err), d, err)
		r.peerDrop(decodeReason(err), d.Src, "malformed advertisement: "+err.Error(), false)
		return
	}
	if int(p.Version) != r.cfg.Version {
		r.drop(DropVersion, d, fmt.Errorf("version %d, configured %d", p.Version, r.cfg.Version))
		if p.VRID == r.cfg.VRID || r.ours(p, d.Src) {
			r.peerDrop(DropVersion, d.Src, fmt.Sprintf("VRRP version %d, ours %d (set the same version on both nodes)", p.Version, r.cfg.Version), true)
		}
		return
	}
	// §7.1: the VRID must be one configured on this interface.
	if p.VRID != r.cfg.VRID {
		r.drop(DropVRID, d, fmt.Errorf("VRID %d", p.VRID))
		if r.ours(p, d.Src) {
			r.peerDrop(DropVRID, d.Src, fmt.Sprintf("it is for VRID %d with our peer or virtual addresses (set the same virtualRouterID on both nodes)", p.VRID), true)
		}
		return
	}
	if d.Src == r.tr.Source() {
		r.drop(DropOwn, d, nil)
		return
	}
	if len(r.cfg.UnicastPeers) > 0 && !slices.Contains(r.cfg.UnicastPeers, d.Src.Unmap()) {
		r.drop(DropUnknownPeer, d, fmt.Errorf("source %v is not a unicast peer", d.Src))
		r.peerDrop(DropUnknownPeer, d.Src, "the sender is not one of our unicast peers (check spec.nodes[].address)", true)
		return
	}
	if r.cfg.Version == 2 {
		// RFC 3768 §7.1: the Auth Type must match the configured one, and
		// for simple text the password must match too (§5.3.6.1).
		var want vrrp.Packet
		if r.cfg.AuthPass != "" {
			want.AuthType = vrrp.AuthSimple
			want.SetPassword(r.cfg.AuthPass)
		}
		// With no authentication the Authentication Data is ignored
		// (§5.3.6.1), as keepalived does.
		if p.AuthType != want.AuthType || (want.AuthType == vrrp.AuthSimple && p.AuthData != want.AuthData) {
			r.drop(DropAuth, d, fmt.Errorf("auth type %v does not match", p.AuthType))
			hint := "authentication mismatch (check auth.password on both nodes)"
			if p.AuthType != want.AuthType {
				hint = fmt.Sprintf("authentication mismatch: auth type %v, ours %v (set auth.password on both nodes or on neither)", p.AuthType, want.AuthType)
			}
			r.peerDrop(DropAuth, d.Src, hint, true)
			return
		}
		// RFC 3768 §7.1: the Adver Interval must be the configured one.
		if p.AdvertInterval() != r.cfg.AdvertInterval {
			r.drop(DropInterval, d, fmt.Errorf("interval %v, configured %v", p.AdvertInterval(), r.cfg.AdvertInterval))
			r.peerDrop(DropInterval, d.Src, fmt.Sprintf("advertisement interval %v, ours %v (set the same advertInterval on both nodes)", p.AdvertInterval(), r.cfg.AdvertInterval), true)
			return
		}
	}
	// RFC 5798 §7.1: the address owner discards every advertisement.
	if r.cfg.Priority == 255 {
		r.drop(DropOwner, d, nil)
		return
	}
	if len(p.Addresses) == 0 {
		// RFC 5798 §5.2.5: at least one address; no VRRP router sends none.
		r.drop(DropAddresses, d, errors.New("no virtual address"))
		return
	}
	r.mu.Lock()
	r.counters.AdvertsReceived++
	r.mu.Unlock()
	r.m.received()
	r.peerAccepted(d.Src)
	r.checkAddresses(p, d.Src)
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug("advertisement", "from", d.Src, "priority", p.Priority, "interval", p.AdvertInterval())
	}
	switch r.State() {
	case StateBackup:
		r.backupReceive(p, d.Src)
	case StateMaster:
		r.masterReceive(p, d.Src)
	}
}

// checkAddresses implements the MAY of RFC 5798 §7.1: an address list
// that differs from ours is logged and counted, and the packet still
// processed, in version 2 too, where RFC 3768 §7.1 (and keepalived) drop
// it. A deliberate choice: the nodes apply a commit that changes the VIPs
// seconds apart, and dropping the other node's adverts meanwhile would
// make both masters for those seconds. The cost: another group on the
// segment that reuses the VRID is obeyed (one VRID per group; the warning
// and the addressMismatch counter tell).
func (r *Router) checkAddresses(p *vrrp.Packet, src netip.Addr) {
	same := len(p.Addresses) == len(r.cfg.VIPs)
	for i := 0; same && i < len(p.Addresses); i++ {
		same = p.Addresses[i] == r.cfg.VIPs[i].Addr()
	}
	if same {
		r.mismatchLogged = false
		return
	}
	r.mu.Lock()
	r.counters.AddressMismatch++
	r.mu.Unlock()
	if !r.mismatchLogged {
		r.mismatchLogged = true
		r.log.Warn("advertisement lists other virtual addresses than ours: check the VIPs of this VRID on every node",
			"from", src, "theirs", p.Addresses, "ours", r.cfg.VIPs)
	}
}

// backupReceive is RFC 5798 §6.4.2 / RFC 3768 §6.4.2, "If an ADVERTISEMENT
// is received".
func (r *Router) backupReceive(p *vrrp.Packet, src netip.Addr) {
	if r.takingOver {
		switch {
		case src == r.lowerSrc && p.Priority != 0 && p.Priority < r.cfg.Priority:
			// The old master's last advert: it has released the VIPs.
			r.finishTakeover("the old master released the VIPs")
			return
		case p.Priority == 0:
			r.finishTakeover("the old master stopped")
			return
		case p.Priority > r.cfg.Priority || (p.Priority == r.cfg.Priority && src.Compare(r.tr.Source()) > 0):
			// Someone better is master after all: stay backup.
			r.cancelTakeover()
		default:
			return // another lower-priority advert before the release
		}
	}
	if p.Priority == 0 {
		// The master is leaving: take over after Skew_Time.
		r.down.Reset(r.skewTime())
		return
	}
	if !r.cfg.Preempt || p.Priority >= r.cfg.Priority {
		r.seeMaster(src, p)
		r.preemptAt = time.Time{}
		r.learnInterval(p)
		r.down.Reset(r.masterDownInterval())
		return
	}
	r.lowerAt, r.lowerSrc, r.lowerPrio = time.Now(), src, p.Priority
	// A lower-priority master and we preempt: discard, so the Master_Down_Timer
	// makes us master. keepalived's preempt_delay first holds off preemption
	// for that long (treating the adverts as accepted meanwhile).
	if r.cfg.PreemptDelay > 0 {
		now := time.Now()
		if r.preemptAt.IsZero() {
			r.preemptAt = now.Add(r.cfg.PreemptDelay)
			r.log.Info("lower-priority master; preempting after the delay", "master", src, "delay", r.cfg.PreemptDelay)
		}
		if now.Before(r.preemptAt) {
			r.learnInterval(p)
			r.down.Reset(r.masterDownInterval())
		}
	}
}

// learnInterval: RFC 5798 §6.4.2 "Set Master_Adver_Interval to Adver
// Interval contained in the ADVERTISEMENT" (version 3 only; version 2
// requires equal intervals).
func (r *Router) learnInterval(p *vrrp.Packet) {
	if p.Version == 3 && p.Interval > 0 {
		r.masterAdverInt = p.AdvertInterval()
	}
}

// masterReceive is RFC 5798 §6.4.3 / RFC 3768 §6.4.3, "If an ADVERTISEMENT
// is received".
func (r *Router) masterReceive(p *vrrp.Packet, src netip.Addr) {
	if p.Priority == 0 {
		// Another router is leaving: answer at once so backups don't start an election.
		r.sendAdvert(r.cfg.Priority)
		r.adv.Reset(r.cfg.AdvertInterval)
		return
	}
	own := r.tr.Source()
	if p.Priority > r.cfg.Priority || (p.Priority == r.cfg.Priority && src.Compare(own) > 0) {
		r.learnInterval(p)
		r.seeMaster(src, p)
		// One last advertisement with our priority (keepalived's
		// higher_prio_send_advert), once the VIPs are gone: if the other
		// master never heard us (a healed partition where its advert
		// arrived first), this is how it learns clients may still point
		// here, and re-announces; a preempting gitedge takes it as the
		// signal that the VIPs are free.
		r.leaveMaster()
		r.sendAdvert(r.cfg.Priority) // after the VIPs are gone: the winner's cue
		r.down.Reset(r.masterDownInterval())
		r.transition(StateBackup, fmt.Sprintf("advertisement from %v with priority %d (ours %d)", src, p.Priority, r.cfg.Priority))
		return
	}
	// A lower-priority master (a healed partition): the RFC discards it.
	// gitedge re-asserts at once — advertisement plus GARP/NA — so the
	// other node steps down and clients that followed it come back now,
	// not after their ARP cache expires. At most once per interval.
	if now := time.Now(); now.Sub(r.lastReassert) >= r.cfg.AdvertInterval {
		r.lastReassert = now
		r.log.Info("lower-priority master heard; re-asserting", "other", src, "priority", p.Priority)
		r.sendAdvert(r.cfg.Priority)
		r.adv.Reset(r.cfg.AdvertInterval)
		r.announce(r.cfg.GARP.Repeat, "lower-priority master")
	}
}

func (r *Router) onTrack() {
	r.updateFaults()
	st := r.State()
	switch {
	case len(r.faults) > 0 && st != StateFault:
		reason := "tracked " + r.faults[0] + " unhealthy"
		r.down.Stop()
		r.cancelTakeover()
		if st == StateMaster {
			r.adv.Stop()
			// As keepalived's FAULT: tell the backups at once.
			r.sendAdvert(0)
			r.leaveMaster()
		}
		r.transition(StateFault, reason)
	case len(r.faults) == 0 && st == StateFault:
		r.transition(StateInitialize, "tracked conditions healthy")
		r.startup("tracked conditions healthy")
	}
}

func (r *Router) updateFaults() {
	r.mu.Lock()
	r.faults = r.faults[:0]
	for c, ok := range r.health {
		if !ok {
			r.faults = append(r.faults, c)
		}
	}
	r.mu.Unlock()
	slices.Sort(r.faults)
}

// sendAdvert sends one ADVERTISEMENT (RFC 5798 §5 / RFC 3768 §5) to the
// group or to every unicast peer.
func (r *Router) sendAdvert(prio uint8) {
	p := vrrp.Packet{Version: uint8(r.cfg.Version), Type: vrrp.TypeAdvertisement, VRID: r.cfg.VRID, Priority: prio}
	for _, v := range r.cfg.VIPs {
		p.Addresses = append(p.Addresses, v.Addr())
	}
	if r.cfg.Version == 2 {
		p.Interval = uint16(r.cfg.AdvertInterval / time.Second)
		if r.cfg.AuthPass != "" {
			p.AuthType = vrrp.AuthSimple
			p.SetPassword(r.cfg.AuthPass)
		}
	} else {
		p.Interval = uint16(r.cfg.AdvertInterval / (10 * time.Millisecond))
	}
	src := r.tr.Source()
	dsts := r.cfg.UnicastPeers
	if len(dsts) == 0 {
		dsts = []netip.Addr{vrrp.GroupIPv4}
		if len(r.cfg.VIPs) > 0 && r.cfg.VIPs[0].Addr().Is6() {
			dsts = []netip.Addr{vrrp.GroupIPv6}
		}
	}
	for _, dst := range dsts {
		b, err := p.Encode(src, dst)
		if err == nil {
			err = r.tr.Send(b, dst)
		}
		if err != nil {
			r.log.Warn("sending advertisement", "to", dst, "priority", prio, "err", err)
			continue
		}
		r.mu.Lock()
		r.counters.AdvertsSent++
		r.mu.Unlock()
		r.m.sent()
		if prio != 0 {
			r.lastSent = time.Now()
		}
	}
}

func (r *Router) announce(count int, why string) {
	r.announceVIPs(r.cfg.VIPs, count, why)
}

func (r *Router) announceVIPs(vips []netip.Prefix, count int, why string) {
	if count < 1 {
		count = 1
	}
	if err := r.fx.Announce(vips, count); err != nil {
		r.log.Warn("sending gratuitous ARP / NA", "why", why, "err", err)
		return
	}
	r.mu.Lock()
	r.counters.Announcements++
	r.mu.Unlock()
	r.m.announced()
}

func (r *Router) drop(reason string, d Datagram, err error) {
	r.mu.Lock()
	r.counters.Drops[reason]++
	r.mu.Unlock()
	r.m.dropped(reason)
	if r.log.Enabled(context.Background(), slog.LevelDebug) {
		r.log.Debug("dropped packet", "reason", reason, "from", d.Src, "err", err)
	}
}

func decodeReason(err error) string {
	switch {
	case errors.Is(err, vrrp.ErrTooShort):
		return DropTooShort
	case errors.Is(err, vrrp.ErrTooLong):
		return DropTooLong
	case errors.Is(err, vrrp.ErrVersion):
		return DropVersion
	case errors.Is(err, vrrp.ErrType):
		return DropType
	case errors.Is(err, vrrp.ErrChecksum):
		return DropChecksum
	}
	return DropAddresses
}

// transition is the one place a state changes: it logs, updates counters
// and metrics, and fires the hook.
func (r *Router) transition(to State, reason string) {
	from := r.State()
	if from == to {
		return
	}
	r.state.Store(int32(to))
	r.mu.Lock()
	switch to {
	case StateMaster:
		r.master = r.tr.Source()
	case StateInitialize, StateFault:
		r.master = netip.Addr{}
	}
	r.counters.Transitions++
	if to == StateMaster {
		r.counters.BecameMaster++
	}
	r.mu.Unlock()
	r.m.transition(to)
	r.log.Info("vrrp transition", "from", from.String(), "to", to.String(), "reason", reason)
	if r.hook != nil {
		r.hook(Event{Instance: r.cfg.Name, From: from, To: to, Reason: reason, At: time.Now()})
	}
}
