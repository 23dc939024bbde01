package reconcile

import (
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// IsTransient reports whether trying the same input again later may help,
// which decides what the loop does after an error:
//
//   - transient (a remote unreachable, a Proxmox 5xx, a port still taken):
//     the step is retried with jittered, bounded backoff, and its
//     condition is Failed;
//   - terminal (a validation error, an untrusted commit, a VM gitedge does
//     not own holding a VMID): nothing is retried until a new commit, and
//     the condition is Stalled.
//
// An error says it is terminal by a Transient() bool method answering
// false anywhere in its chain (subsystems need not import reconcile), or by
// being a validation Errors. An error that says nothing is transient:
// retrying an unknown failure with backoff is safe, giving up on it is
// not. nil is not transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	if _, ok := errors.AsType[Errors](err); ok {
		return false
	}
	if t, ok := errors.AsType[interface {
		error
		Transient() bool
	}](err); ok {
		return t.Transient()
	}
	return true
}

// StepError says which step of a pass failed: dataplane, failover or
// infra.
type StepError struct {
	Step string
	Err  error
}

// Error prefixes the step, unless the subsystem's error already says it
// ("dataplane: listener …"): one prefix, never "dataplane: dataplane:".
func (e *StepError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, e.Step+": ") {
		return msg
	}
	return e.Step + ": " + msg
}

func (e *StepError) Unwrap() error { return e.Err }

// condMessage is a step's error as the message of the step's condition,
// which is already named after the step: "listener …", not "dataplane
// Failed: dataplane: listener …" where the two are shown together.
func condMessage(step string, err error) string {
	return strings.TrimPrefix(err.Error(), step+": ")
}

// Transient is the kind of the step's error (IsTransient), so a pass that
// failed in several steps is retried when any of them may recover.
func (e *StepError) Transient() bool { return IsTransient(e.Err) }

// Backoff is the delay between retries of a step that failed transiently:
// it starts at Min, doubles on every failure up to Max, and each delay is
// drawn at random from its upper half, so nodes that failed together do
// not retry in lockstep.
type Backoff struct {
	Min, Max time.Duration // defaults 1s and 1m
}

// Delay returns the wait before retry number n (1 for the first).
func (b Backoff) Delay(n int) time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = time.Second
	}
	if hi <= 0 {
		hi = time.Minute
	}
	d := min(lo<<min(max(n-1, 0), 30), hi)
	return d/2 + rand.N(d/2+1)
}

// condition is the condition status a step's error gives.
func condition(err error) CondStatus {
	if IsTransient(err) {
		return CondFailed
	}
	return CondStalled
}

// stepErrors are the failed steps of one pass, one line each; the pass is
// worth retrying when any of them may recover.
type stepErrors []error

func (es stepErrors) Error() string   { return errors.Join(es...).Error() }
func (es stepErrors) Unwrap() []error { return es }
func (es stepErrors) Transient() bool { return slices.ContainsFunc(es, IsTransient) }
