package failover

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"
)

// An upgrade in place hands every instance from the running process (the
// old one) to a new process of the new binary without a new election. The
// order, which keeps adverts going with no gap longer than one interval and
// never leaves the node without its VIPs:
//
//  1. old: Manager.Handover returns a Snapshot; nothing changes yet.
//  2. new: NewManager with Options.Inherit, then Apply. Each inherited
//     instance resumes its state before Apply returns: a master has sent
//     its first advertisement and renewed its VIPs. Both processes now
//     advertise, from the same address with the same priority, which a
//     backup (gitedge or keepalived) takes as one master's adverts. Each
//     process discards the other's as its own (Router.receive), should
//     it hear them: multicast loopback is off on the sockets.
//  3. new: ready (tableflip's Ready) → old: Manager.Release stops its
//     instances without a word. If the new process fails instead, old:
//     Manager.AbortHandover, and it carries on as if nothing happened;
//     the new one, still provisional, stopped without a word too.
//  4. new: Manager.Confirm: it alone runs the instances now.

// Release stops Run without a word, for a process that hands the instance
// over to its successor: a master sends no priority 0, its VIPs stay on the
// interface with the lifetime of their last renewal (the successor,
// advertising already, renews them), and nothing is announced. Run returns
// nil. Release waits for it, and returns ErrNotRunning if Run had already
// returned. Safe from any goroutine.
func (r *Router) Release() error {
	select {
	case r.release <- struct{}{}:
		<-r.exited
		return nil
	case <-r.exited:
		return fmt.Errorf("instance %q: %w", r.name, ErrNotRunning)
	}
}

// Snapshot returns the instance's state for a successor process; false
// unless it is MASTER or BACKUP (Initialize and Fault have nothing to hand
// over) and Run runs. Safe from any goroutine once Run has been called.
func (r *Router) Snapshot() (InstanceSnapshot, bool) {
	reply := make(chan InstanceSnapshot, 1)
	select {
	case r.snap <- reply:
		s, ok := <-reply
		return s, ok
	case <-r.exited:
		return InstanceSnapshot{}, false
	}
}

// snapshot is Snapshot on the Run goroutine.
func (r *Router) snapshot() (InstanceSnapshot, bool) {
	st := r.State()
	if st != StateMaster && st != StateBackup {
		return InstanceSnapshot{}, false
	}
	s := InstanceSnapshot{Name: r.cfg.Name, Interface: r.cfg.Interface, VRID: r.cfg.VRID, Version: r.cfg.Version,
		State: st, Priority: r.cfg.Priority, AdvertInterval: r.cfg.AdvertInterval, Source: r.tr.Source(),
		LastAdvertSent: r.lastSent}
	if st == StateMaster {
		s.VIPs = slices.Clone(r.cfg.VIPs)
	} else if m := r.Master(); m.IsValid() {
		s.Master = &MasterSeen{Address: m, Priority: r.masterPrio, AdvertInterval: r.masterAdverInt, LastSeen: r.masterSeen}
	}
	return s, true
}

// releaseSilently ends Run for Release.
func (r *Router) releaseSilently() {
	for _, t := range []*time.Timer{r.adv, r.down, r.garp, r.refresh, r.handover} {
		t.Stop()
	}
	r.log.Info("handed over to the new process: stopped without a priority 0 advertisement, VIPs left in place",
		"state", r.State().String())
}

const inheritedReason = "inherited from the previous process (upgrade)"

// resume takes the state the process being replaced handed over, in place
// of Initialize's Startup event (RFC 5798 §6.4.1 / RFC 3768 §6.4.1): the
// virtual router goes on, only the process running it changed.
func (r *Router) resume(s InstanceSnapshot) {
	switch {
	case len(r.faults) > 0:
		r.startup("startup, not inheriting " + s.State.String())
	case s.State == StateMaster:
		r.resumeMaster(s)
	case r.cfg.Priority == 255:
		r.startup("startup, not inheriting BACKUP") // the address owner is master at once
	default:
		r.resumeBackup(s)
	}
}

// resumeMaster goes on as master.
func (r *Router) resumeMaster(s InstanceSnapshot) {
	// RFC 5798 §6.4.3 / RFC 3768 §6.4.3: a master advertises each time its
	// Adver_Timer fires; the new process's timer starts by firing now.
	// Until the old process releases, both advertise, from the same
	// address with the same priority: a backup only restarts its
	// Master_Down_Timer on each (§6.4.2), and the gap on the wire is at
	// most one interval whenever the old one stops.
	r.sendAdvert(r.cfg.Priority)
	r.adv.Reset(r.cfg.AdvertInterval)
	if src := r.tr.Source(); s.Source.IsValid() && src != s.Source {
		// Same node, same interface: only a changed address or unicast
		// source does this. The backups see a master at another address
		// (same priority) until the old process stops.
		r.log.Warn("adverts now go out from another address than the previous process's", "now", src, "was", s.Source)
	}
	// The VIPs are on the interface: adding them again renews their
	// lifetime. Those the config no longer lists go, new ones come.
	added, removed := diffPrefixes(s.VIPs, r.cfg.VIPs)
	if err := r.fx.AddVIPs(r.cfg.VIPs); err != nil {
		r.log.Error("renewing the inherited VIPs", "err", err)
	}
	if len(removed) > 0 {
		if err := r.fx.RemoveVIPs(removed); err != nil {
			r.log.Error("removing VIPs no longer configured", "err", err)
		}
	}
	// No gratuitous ARP / NA for the VIPs held: same interface, same MAC,
	// the neighbours' caches are right; and from a snapshot gone stale
	// (the old process lost mastership after taking it) one would pull
	// clients away from the node that is master now. New VIPs are
	// announced, as on any change (reconfigure).
	if len(added) > 0 {
		r.announceVIPs(added, r.cfg.GARP.Repeat, "VIPs added")
	}
	if r.cfg.GARP.Refresh > 0 {
		r.refresh.Reset(r.cfg.GARP.Refresh)
	}
	r.transition(StateMaster, inheritedReason)
}

// resumeBackup goes on as backup of the master the old process followed.
func (r *Router) resumeBackup(s InstanceSnapshot) {
	// RFC 5798 §6.4.2: Master_Adver_Interval is the master's (v3; v2
	// requires equal intervals, §7.1 of RFC 3768), its own until one is
	// heard (§6.4.1).
	r.masterAdverInt = r.cfg.AdvertInterval
	if m := s.Master; m != nil {
		if r.cfg.Version == 3 {
			r.masterAdverInt = m.AdvertInterval
		}
		r.setMaster(m.Address)
		r.masterPrio, r.masterSeen = m.Priority, m.LastSeen
	}
	r.preemptAt, r.lowerAt = time.Time{}, time.Time{}
	// A whole Master_Down_Interval from now: the master's next advert, at
	// most one interval away, restarts it.
	r.down.Reset(r.masterDownInterval())
	r.transition(StateBackup, inheritedReason)
}

// Handover begins an upgrade in place on the old process's side: it returns
// the state to hand the new process (Snapshot.Marshal) and changes nothing:
// every instance runs on, as it must if the new process never becomes
// ready. Then call Release once the new process is ready, or AbortHandover
// if it failed. One hand-over at a time; refused on a Manager that is still
// provisional itself (Options.Inherit before Confirm).
func (m *Manager) Handover() (Snapshot, error) {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	var err error
	switch {
	case m.closed:
		err = errors.New("failover is stopped: nothing to hand over")
	case m.handingOver:
		err = errors.New("an upgrade is already under way: wait for it to finish or abort")
	case m.provisional:
		err = errors.New("this process's own upgrade is not confirmed yet (Confirm): hand over after it")
	}
	if err != nil {
		m.mu.Unlock()
		return Snapshot{}, err
	}
	m.handingOver = true
	list := make([]*runningInstance, 0, len(m.running))
	for _, ri := range m.running {
		list = append(list, ri)
	}
	m.mu.Unlock()
	slices.SortFunc(list, func(a, b *runningInstance) int { return strings.Compare(a.in.Name, b.in.Name) })
	s := Snapshot{TakenAt: time.Now(), PID: os.Getpid()}
	var states []string
	for _, ri := range list {
		if is, ok := ri.r.Snapshot(); ok {
			s.Instances = append(s.Instances, is)
			states = append(states, is.Name+"="+is.State.String())
		}
	}
	m.log.Info("handing over to a new process; running on until it is ready", "instances", states)
	return s, nil
}

// AbortHandover ends a hand-over whose new process failed to start or
// refused the config: this process keeps running every instance as it did
// (Handover changed nothing), and says why with reason. Interfaces
// recreated meanwhile get their instances restarted now, with new
// sockets (the restart was held back while the new process might take
// over).
func (m *Manager) AbortHandover(reason error) {
	m.mu.Lock()
	was := m.handingOver
	m.handingOver = false
	later := m.reopenLater
	m.reopenLater = nil
	m.mu.Unlock()
	if was {
		m.log.Warn("upgrade aborted: this process keeps running every instance", "reason", reason)
	}
	for _, name := range slices.Sorted(maps.Keys(later)) {
		m.applyMu.Lock()
		m.reopenLocked(name, later[name]+", during the upgrade")
		m.applyMu.Unlock()
	}
}

// Release ends a hand-over once the new process is ready (its Apply has
// returned, so its masters advertise): every instance stops without a word
// (Router.Release: no priority 0, VIPs left, nothing announced) and the
// Manager is closed; Apply is refused and Close does nothing from then on.
// Call it before draining the proxy, whose health track.proxy follows.
func (m *Manager) Release() error {
	m.applyMu.Lock()
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("failover is stopped: nothing to release")
	}
	if !m.handingOver {
		m.mu.Unlock()
		return errors.New("Release without Handover: no new process was given the instances; use Close to stop")
	}
	m.handingOver, m.released = false, true
	list, watchStop, watchDone := m.closeLocked()
	m.mu.Unlock()
	stopAll(list, true)
	if watchStop != nil {
		watchStop()
		<-watchDone
	}
	m.log.Info("failover handed over to the new process", "instances", len(list))
	return nil
}

// Confirm tells a Manager started with Options.Inherit that the old process
// has released its instances (its Release returned, or it is gone): this
// process alone runs them now. Until then the Manager is provisional, so a
// new process that fails leaves the old one serving undisturbed: Close
// stops every instance without a word (as Release), inherited instances
// take no account of SetProxyHealthy (the old process's proxy serves the
// node meanwhile), the VIPs the old process holds are not removed as
// leftovers when an instance starts, and Handover is refused. After Confirm
// the next SetProxyHealthy report applies and Close is a clean stop again.
// Without Options.Inherit it does nothing.
func (m *Manager) Confirm() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.provisional {
		return
	}
	m.provisional = false
	m.predecessorVIPs = nil
	m.log.Info("upgrade confirmed: this process alone runs the instances")
}

// takeInheritLocked returns the inherited instances by name for the first
// Apply to start, once: nil if there are none, the snapshot is too old or
// invalid (logged).
func (m *Manager) takeInheritLocked(cfg Config) map[string]InstanceSnapshot {
	s := m.inherit
	m.inherit = nil
	if s == nil {
		return nil
	}
	if err := s.Validate(); err != nil {
		m.log.Warn("not inheriting the previous process's state: starting every instance normally", "err", err)
		m.predecessorVIPs = nil
		return nil
	}
	if age := time.Since(s.TakenAt); age > SnapshotMaxAge || age < -SnapshotMaxAge {
		m.log.Warn("not inheriting the previous process's state: the snapshot is from another upgrade; starting every instance normally",
			"taken", s.TakenAt, "age", age.Round(time.Millisecond), "max", SnapshotMaxAge)
		m.predecessorVIPs = nil
		return nil
	}
	out := map[string]InstanceSnapshot{}
	for _, is := range s.Instances {
		out[is.Name] = is
		if !slices.ContainsFunc(cfg.Instances, func(in Instance) bool { return in.Name == is.Name }) {
			m.log.Warn("the previous process ran an instance this config does not have; its VIPs expire with their lifetime",
				"instance", is.Name, "state", is.State.String(), "vips", is.VIPs)
		}
	}
	return out
}

// adoptable says why the inherited state of an instance cannot be resumed
// under in ("" if it can): a change that would restart a running instance
// (changeRules) needs a new election here too.
func adoptable(s InstanceSnapshot, in Instance) string {
	var why []string
	if s.Interface != in.Interface {
		why = append(why, fmt.Sprintf("interface %s, was %s", in.Interface, s.Interface))
	}
	if s.VRID != in.VRID {
		why = append(why, fmt.Sprintf("virtualRouterID %d, was %d", in.VRID, s.VRID))
	}
	if s.Version != in.Version {
		why = append(why, fmt.Sprintf("version %d, was %d", in.Version, s.Version))
	}
	if len(s.VIPs) > 0 && vipFamily(s.VIPs) != vipFamily(in.VIPs) {
		why = append(why, fmt.Sprintf("IPv%d VIPs, were IPv%d", vipFamily(in.VIPs), vipFamily(s.VIPs)))
	}
	if m := s.Master; m != nil && m.Address.Is4() != (vipFamily(in.VIPs) == 4) {
		why = append(why, fmt.Sprintf("IPv%d VIPs, the master seen was %v", vipFamily(in.VIPs), m.Address))
	}
	return strings.Join(why, "; ")
}

// overlaps reports whether a and b share an address.
func overlaps(a, b []netip.Prefix) bool {
	return slices.ContainsFunc(a, func(p netip.Prefix) bool {
		return slices.ContainsFunc(b, func(q netip.Prefix) bool { return p.Addr() == q.Addr() })
	})
}
