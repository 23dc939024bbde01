package failover

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Reconfigurable is implemented by a Transport or Effects whose behaviour
// depends on the Instance (LinuxSystem's VIP lifetime follows the
// advertisement interval, its source address lookup skips the VIPs).
// Router.Reconfigure calls Reconfigure on the Router's goroutine with the
// new Instance before acting on it; it must not block.
type Reconfigurable interface {
	Reconfigure(in Instance)
}

// RestartError is Reconfigure's refusal of a change that a running
// instance cannot take: it needs a new socket or a new election.
type RestartError struct {
	Instance string
	Fields   []string // the Instance fields, see changeRules
}

func (e *RestartError) Error() string {
	return fmt.Sprintf("instance %q: %s cannot change on a running instance: stop it and start a new one",
		e.Instance, strings.Join(e.Fields, ", "))
}

// reconfigure applies a changed configuration on the Run goroutine (see
// Reconfigure).
func (r *Router) reconfigure(in Instance) error {
	old := r.cfg
	changed := changedFields(old, in)
	if len(changed) == 0 {
		return nil
	}
	if f := restartFields(old, in); len(f) > 0 {
		return &RestartError{Instance: old.Name, Fields: f}
	}
	for _, x := range []any{r.tr, r.fx} {
		if c, ok := x.(Reconfigurable); ok {
			c.Reconfigure(in)
		}
	}
	r.cfg = in
	st := r.State()
	r.log.Info("configuration changed in place", "changed", changed, "state", st.String())
	if !slices.Equal(old.VIPs, in.VIPs) {
		r.mismatchLogged = false // a new list deserves a new warning
	}

	var errs []error
	switch st {
	case StateMaster:
		// The new priority and interval go out with the next advertisement
		// (RFC 5798 §6.4.3, Adver_Timer): the timer already set keeps its
		// time and is then set to the new interval. The VIPs change on the
		// holder; removed ones first, so a changed prefix length ends up
		// with the new one.
		added, removed := diffPrefixes(old.VIPs, in.VIPs)
		if len(removed) > 0 {
			if err := r.fx.RemoveVIPs(removed); err != nil {
				errs = append(errs, err)
			}
		}
		if len(added) > 0 {
			if err := r.fx.AddVIPs(added); err != nil {
				errs = append(errs, err)
			}
			// As on becoming master (§6.4.2): a gratuitous ARP / unsolicited
			// NA for each new address.
			r.announceVIPs(added, in.GARP.Repeat, "VIPs added")
		}
		if in.GARP.Refresh != old.GARP.Refresh {
			if in.GARP.Refresh > 0 {
				r.refresh.Reset(in.GARP.Refresh)
			} else {
				r.refresh.Stop()
			}
		}
	case StateBackup:
		r.reconfigureBackup(old)
	}
	// Initialize and Fault hold nothing and run no election timers: the
	// new configuration applies when they start up.
	if len(errs) > 0 {
		return fmt.Errorf("instance %q: %w", in.Name, errors.Join(errs...))
	}
	return nil
}

// reconfigureBackup follows a backup's new priority, preemption settings
// and interval.
func (r *Router) reconfigureBackup(old Instance) {
	in := r.cfg
	// RFC 5798 §6.4.2: a v3 backup takes Master_Adver_Interval from the
	// master's advertisements; until it has heard one it uses its own
	// (§6.4.1), and v2 always does (RFC 3768 requires equal intervals).
	if in.AdvertInterval != old.AdvertInterval && (in.Version == 2 || !r.Master().IsValid()) && !r.takingOver {
		r.masterAdverInt = in.AdvertInterval
		r.down.Reset(r.masterDownInterval())
	}
	if in.Priority == 255 && old.Priority != 255 {
		// §6.1 Preempt_Mode: the address owner always preempts, and
		// §6.4.1 makes it master at once. With a live master it first
		// hears our advertisement and releases the VIPs (see preempt).
		r.lowerAt, r.preemptAt = time.Time{}, time.Time{}
		if m := r.Master(); m.IsValid() {
			r.lowerSrc = m
			r.preempt()
			return
		}
		r.becomeMaster("priority raised to 255: address owner")
		return
	}
	// A preemption under way that the new settings no longer allow:
	// follow the master again (§6.4.2, the Preempt_Mode and priority test).
	if !r.lowerAt.IsZero() && (!in.Preempt || r.lowerPrio >= in.Priority) {
		r.cancelTakeover()
		r.lowerAt, r.preemptAt = time.Time{}, time.Time{}
		r.down.Reset(r.masterDownInterval())
		return
	}
	// A preemption delay running: it now ends after the new delay.
	if !r.preemptAt.IsZero() && in.PreemptDelay != old.PreemptDelay {
		r.preemptAt = r.preemptAt.Add(in.PreemptDelay - old.PreemptDelay)
	}
	// A priority raised above a live lower master, or preempt turned on
	// under one: its next advertisement starts the preemption
	// (backupReceive), as for a router that just started.
}

// diffPrefixes returns what b adds to a and what it removes from it.
func diffPrefixes(a, b []netip.Prefix) (added, removed []netip.Prefix) {
	for _, p := range b {
		if !slices.Contains(a, p) {
			added = append(added, p)
		}
	}
	for _, p := range a {
		if !slices.Contains(b, p) {
			removed = append(removed, p)
		}
	}
	return added, removed
}
