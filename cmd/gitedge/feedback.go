package main

// What a node tells the world outside: commit statuses on the forge and
// notifications, made from the reconcile loop's events and the
// subsystems' hooks. reconcile, failover and dataplane import neither
// forge nor notify; this file adapts.

import (
	"fmt"
	"strings"
	"sync"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/forge"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/notify"
	"github.com/gitedge/gitedge/reconcile"
)

// feedback is the loop's Observer. Both sides never block (bounded
// queues) and are nil-safe: a node without a forge or sinks loses
// nothing by calling them.
type feedback struct {
	forge  *forge.Reporter  // nil: no commit statuses (none configured, or a local directory)
	notify *notify.Notifier // nil: no notifications

	mu sync.Mutex
	// infraFailed holds the commits whose last infra pass failed: their
	// status stays error until an infra pass converges, whatever a resync
	// of the routes says meanwhile.
	infraFailed map[string]bool
}

var _ reconcile.Observer = (*feedback)(nil)

// Observe maps one loop event to a commit status and a notification:
// fetched → pending; applied → success (no notification: a pass that
// applied or changed nothing is no news); refused → failure and "commit
// refused"; apply failed → error and "apply failed"; an infra pass that
// failed → error and "apply failed", one that set drift back → "drift
// corrected" per VM.
func (f *feedback) Observe(e reconcile.Event) {
	c := e.Rev.Commit
	switch e.Kind {
	case reconcile.EventFetched:
		f.status(c, forge.Pending, "")
	case reconcile.EventApplied:
		if !f.infraFailing(c) {
			f.status(c, forge.Success, "")
		}
	case reconcile.EventRefused:
		f.status(c, forge.Failure, forge.Summarize(e.Err))
		f.notify.Notify(notify.CommitRefused(c, e.Err))
	case reconcile.EventApplyFailed:
		f.status(c, forge.Error, forge.Summarize(e.Err))
		f.notify.Notify(notify.ApplyFailed(c, e.Err))
	case reconcile.EventInfra:
		f.infra(c, e.Infra, e.Err)
	}
}

func (f *feedback) infra(c string, res *infra.Result, err error) {
	f.mu.Lock()
	was := f.infraFailed[c]
	if err != nil {
		f.infraFailed = map[string]bool{c: true} // the worker applies only the newest commit
	} else {
		delete(f.infraFailed, c)
	}
	f.mu.Unlock()
	if err != nil {
		err = named("infra", err)
		f.status(c, forge.Error, forge.Summarize(err))
		f.notify.Notify(notify.ApplyFailed(c, err))
		return
	}
	if was {
		f.status(c, forge.Success, "")
	}
	if res == nil || !res.Leader {
		return // a follower only observes: drift it sees is not corrected
	}
	for _, a := range res.Applied {
		var drift []string
		for _, fc := range a.Fields {
			if fc.Drift {
				drift = append(drift, fmt.Sprintf("%s %s → %s", fc.Key, orNone(fc.Old), orNone(fc.New)))
			}
		}
		if len(drift) > 0 {
			ev := notify.DriftCorrected(a.VM.Name, a.VM.VMID, "set back: "+strings.Join(drift, ", "))
			ev.Commit = c
			f.notify.Notify(ev)
		}
	}
}

func (f *feedback) infraFailing(c string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.infraFailed[c]
}

// status posts a commit status, for a commit the forge knows: a refused
// fetch may carry no commit.
func (f *feedback) status(c string, st forge.State, desc string) {
	if c == "" {
		return
	}
	f.forge.Report(c, st, desc)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// vrrpTransition is a failover transition as a notification.
func vrrpTransition(e failover.Event) notify.Event {
	ev := notify.VRRPTransition(e.Instance, e.From.String(), e.To.String())
	if e.Reason != "" {
		ev.Message += " (" + e.Reason + ")"
	}
	return ev
}

// serverHealth is a backend server's change of health as a notification;
// healthy lists the proxy's servers now, to say how many of the backend
// are left.
func serverHealth(backend, server string, up bool, reason string, healthy []dataplane.ServerStatus) notify.Event {
	if up {
		return notify.ServerUp(backend, server)
	}
	left := 0
	for _, s := range healthy {
		if s.Backend == backend && s.Up {
			left++
		}
	}
	return notify.ServerDown(backend, server, reason, left)
}
