package failover

import (
	"context"
	"maps"
	"slices"
	"time"
)

// requeryPeriod is how often the tracked interfaces are queried again, as
// keepalived re-checks its tracked interfaces: a link event the kernel
// dropped (a full netlink socket buffer) or sent while the watch
// resubscribed would otherwise leave an instance in FAULT on a link that
// is up, out of FAULT on one that is gone, or deaf on a socket bound to an
// interface deleted and made again. One query per tracked interface, not
// per instance or packet.
const requeryPeriod = time.Second

// requeryLoop runs requery every period until ctx ends.
func (m *Manager) requeryLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			m.requery()
		}
	}
}

// requery asks the host for the state of every tracked interface and
// hands the answers over as events would (queryLinks: a correction is
// logged), then reopens the instances whose interface was made again
// without the watch telling.
func (m *Manager) requery() {
	m.retryPending()
	m.mu.Lock()
	var names []string
	for _, ri := range m.running {
		for _, n := range trackedInterfaces(ri.in) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	m.mu.Unlock()
	if len(names) == 0 {
		return
	}
	answers := m.queryLinks(names...)
	m.mu.Lock()
	var moved []string
	for _, ri := range m.running {
		a, ok := answers[ri.in.Interface]
		if ok && a.err == nil && ri.ifindex != 0 && a.Index != 0 && a.Index != ri.ifindex && !slices.Contains(moved, ri.in.Interface) {
			moved = append(moved, ri.in.Interface)
		}
	}
	m.mu.Unlock()
	for _, name := range moved {
		// Not while an Apply, Close or reopen runs: Close waits for this
		// goroutine holding applyMu. The next round looks again.
		if m.applyMu.TryLock() {
			m.reopenLocked(name, "re-query")
			m.applyMu.Unlock()
		}
	}
}

// retryPending starts again the instances a reopen could not (pending),
// unless an Apply, Close or reopen runs: the next period tries again. A
// failure is logged only when its error changes.
func (m *Manager) retryPending() {
	m.mu.Lock()
	n := len(m.pending)
	m.mu.Unlock()
	if n == 0 || !m.applyMu.TryLock() {
		return
	}
	defer m.applyMu.Unlock()
	m.mu.Lock()
	if m.handingOver { // the snapshot handed over has them stopped
		m.mu.Unlock()
		return
	}
	list := slices.Collect(maps.Values(m.pending))
	m.mu.Unlock()
	for _, ps := range list {
		err := m.start(ps.in, nil)
		if err == nil {
			m.mu.Lock()
			delete(m.pending, ps.in.Name)
			m.mu.Unlock()
			m.log.Info("instance started again after its interface was made again", "instance", ps.in.Name, "interface", ps.in.Interface)
			continue
		}
		m.mu.Lock()
		m.pending[ps.in.Name] = pendingStart{in: ps.in, err: err, since: ps.since}
		m.mu.Unlock()
		if err.Error() != ps.err.Error() {
			m.log.Warn("starting the instance again failed: retrying every second", "instance", ps.in.Name, "err", err)
		}
	}
}
