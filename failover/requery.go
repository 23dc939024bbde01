package failover

import (
	"context"
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
