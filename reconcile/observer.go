package reconcile

import (
	"errors"

	"github.com/gitedge/gitedge/infra"
)

// EventKind is what the loop did with a commit.
type EventKind string

const (
	// EventFetched: a new revision from the source is about to be checked
	// and applied (not a resync, poke, retry or the restart's record).
	EventFetched EventKind = "fetched"
	// EventApplied: every step took the revision (Plan says what changed;
	// empty: nothing did). Infra may still be applying in its worker.
	EventApplied EventKind = "applied"
	// EventRefused: the revision failed to verify, parse or validate (or
	// the source refused it for good); the node keeps its last good commit.
	EventRefused EventKind = "refused"
	// EventApplyFailed: a valid revision failed to apply (Step says where;
	// Err says why). A transient failure is retried, and each try that
	// fails again says so again.
	EventApplyFailed EventKind = "apply-failed"
	// EventInfra: an infra pass of the worker ended (Infra holds it); Err
	// is its failure, nil when it converged or only observed.
	EventInfra EventKind = "infra"
)

// Event is one thing the loop did that the world outside may want to hear
// about: the forge's commit statuses and the notifications are built from
// it (cmd/gitedge adapts; reconcile imports neither).
type Event struct {
	Kind EventKind
	Rev  Revision // Files may be nil (a refused fetch); Commit "" when unknown
	Err  error    // refused, apply-failed, infra
	Step string   // apply-failed: the first step that failed (dataplane, failover, infra)
	Plan Plan     // applied: what the pass changed
	// Infra is the worker's pass (EventInfra); the drift it set back is
	// in Infra.Applied's fields marked Drift.
	Infra *infra.Result
}

// Observer hears the loop's events. Observe is called on the loop's
// goroutines (the pass, the infra worker) in order for each: it must not
// block and must not fail the pass, so it gets nothing to return.
type Observer interface {
	Observe(Event)
}

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Observe calls f.
func (f ObserverFunc) Observe(e Event) { f(e) }

// observe hands e to the loop's Observer, if any. A dry run observes
// nothing: it applies nothing a forge or a person should hear about.
func (l *Loop) observe(e Event) {
	if l.Observer == nil || l.DryRun {
		return
	}
	l.Observer.Observe(e)
}

// fetched reports whether a revision is a new one from the source rather
// than one of the loop's own passes over what it runs.
func fetched(rev Revision) bool {
	switch rev.Trigger {
	case TriggerResync, TriggerPoke, TriggerRetry, TriggerRestart:
		return false
	}
	return true
}

// passEvent is what a finished pass says to the Observer; ok false: none.
func passEvent(rev Revision, res Result, err error, plan Plan) (Event, bool) {
	switch res {
	case ResultApplied, ResultUnchanged:
		return Event{Kind: EventApplied, Rev: rev, Plan: plan}, true
	case ResultInvalid:
		return Event{Kind: EventRefused, Rev: rev, Err: err}, true
	case ResultFailed:
		e := Event{Kind: EventApplyFailed, Rev: rev, Err: err}
		if se, ok := errors.AsType[*StepError](err); ok {
			e.Step = se.Step
		}
		return e, true
	}
	return Event{}, false // fetch errors are retried by the source; a dry run plans only
}
