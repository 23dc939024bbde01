package infra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	proxmox "github.com/luthermonson/go-proxmox"
)

// Kind says what the caller should do after an error.
type Kind int

const (
	// Transient errors (Proxmox 5xx, timeouts, a locked VM, a racing
	// writer) go away by themselves: retry with jittered backoff.
	Transient Kind = iota
	// Terminal errors (a conflict with a VM gitedge does not own, a missing
	// or ambiguous template, a rejected parameter, bad credentials) need a
	// person: report them and do not retry until the config changes.
	Terminal
)

func (k Kind) String() string {
	if k == Terminal {
		return "terminal"
	}
	return "transient"
}

// Reasons, for status and metrics.
const (
	ReasonAPI          = "APIError"        // a 5xx or network failure
	ReasonTimeout      = "Timeout"         // a call or task took too long
	ReasonLocked       = "Locked"          // the VM is locked (clone, backup, …) or a lock timed out
	ReasonRaced        = "Raced"           // another writer created or changed the VM first
	ReasonTaskFailed   = "TaskFailed"      // a Proxmox task ended with an error
	ReasonConflict     = "Conflict"        // a VM gitedge does not own holds the VMID or name
	ReasonTemplate     = "BadTemplate"     // the clone template is missing or ambiguous
	ReasonInvalid      = "Invalid"         // Proxmox rejected a parameter (400)
	ReasonUnauthorized = "Unauthorized"    // the API token was refused
	ReasonShrink       = "ShrinkRefused"   // the disk is larger than declared
	ReasonNotFound     = "NotFound"        // the VM went away since it was listed
	ReasonNotLeader    = "NotLeader"       // this node does not apply infra changes
	ReasonWaiting      = "WaitingForClone" // the VM is still being cloned
	ReasonProtected    = "Protected"       // prune would delete a VM with Proxmox's protection set
	ReasonPruneHeld    = "PruneHeld"       // prune waits: the plan has a terminal problem
)

// Error is a failure about one VM (or the whole pass when VMID is 0). It
// never carries the API token.
type Error struct {
	Kind   Kind
	Reason string
	Op     string // observe, clone, config, resize, start, stop, delete, ha, …
	Name   string // the VirtualMachine name, if known
	VMID   int
	Node   string
	Err    error
}

func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.VMID != 0 && e.Name != "":
		fmt.Fprintf(&b, "VM %d %q", e.VMID, e.Name)
	case e.VMID != 0:
		fmt.Fprintf(&b, "VM %d", e.VMID)
	case e.Name != "":
		fmt.Fprintf(&b, "VM %q", e.Name)
	default:
		b.WriteString("proxmox")
	}
	if e.Node != "" {
		fmt.Fprintf(&b, " on %s", e.Node)
	}
	if e.Op != "" {
		fmt.Fprintf(&b, ": %s", e.Op)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Transient reports whether retrying may help (the reconcile loop looks for
// this method with errors.As).
func (e *Error) Transient() bool { return e.Kind == Transient }

// Errors are the failures of one pass, one per VM (and the pass's own).
// Transient is true when any of them is: the pass is worth retrying soon
// even if another VM needs a person.
type Errors []error

func (es Errors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

func (es Errors) Unwrap() []error { return es }

// Transient reports whether any of the errors is transient.
func (es Errors) Transient() bool { return isTransient(es) }

// join returns nil, the single error, or Errors.
func join(errs []error) error {
	var out Errors
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// isTransient reports whether err (or any error joined into it) should be
// retried with backoff: the Transient method of Errors, which the reconcile
// loop's IsTransient asks.
func isTransient(err error) bool {
	found := false
	walk(err, func(e *Error) {
		if e.Kind == Transient {
			found = true
		}
	})
	if !found && err != nil && !hasInfraError(err) {
		return classifyKind(err) == Transient
	}
	return found
}

// IsTerminal reports whether err holds a terminal error (and so needs a
// person, even if other parts of it are transient).
func IsTerminal(err error) bool {
	found := false
	walk(err, func(e *Error) {
		if e.Kind == Terminal {
			found = true
		}
	})
	return found
}

// IsConflict reports whether err holds an ownership conflict.
func IsConflict(err error) bool { return HasReason(err, ReasonConflict) }

// HasReason reports whether err holds an *Error with that reason.
func HasReason(err error, reason string) bool {
	found := false
	walk(err, func(e *Error) {
		if e.Reason == reason {
			found = true
		}
	})
	return found
}

func hasInfraError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}

// walk visits every *Error in an error tree (errors.Join and wrapping).
func walk(err error, f func(*Error)) {
	if err == nil {
		return
	}
	if e, ok := err.(*Error); ok && e != nil {
		f(e)
	}
	switch u := err.(type) {
	case interface{ Unwrap() []error }:
		for _, x := range u.Unwrap() {
			walk(x, f)
		}
	case interface{ Unwrap() error }:
		walk(u.Unwrap(), f)
	}
}

// classify wraps an error from the API into an *Error with its kind and
// reason. go-proxmox reports a 500 as the bare status line ("500 VM is
// locked (clone)") and a 400 as "bad request: 400 …", so Proxmox errors are
// recognised by their text, as every client does (client-calls.md 1.3).
func classify(op string, vm VMRef, err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	kind, reason := classifyKind(err), reasonOf(err)
	return &Error{Kind: kind, Reason: reason, Op: op, Name: vm.Name, VMID: vm.VMID, Node: vm.Node, Err: err}
}

func classifyKind(err error) Kind {
	switch reasonOf(err) {
	case ReasonInvalid, ReasonUnauthorized, ReasonConflict, ReasonTemplate, ReasonShrink, ReasonProtected, ReasonPruneHeld:
		return Terminal
	}
	return Transient
}

func reasonOf(err error) string {
	msg := err.Error()
	var ne net.Error
	switch {
	case proxmox.IsNotAuthorized(err):
		return ReasonUnauthorized
	case errors.Is(err, context.DeadlineExceeded), proxmox.IsTimeout(err), errors.As(err, &ne) && ne.Timeout():
		return ReasonTimeout
	case strings.Contains(msg, "is locked"), strings.Contains(msg, "got timeout"):
		return ReasonLocked
	case strings.Contains(msg, "already exists"), strings.Contains(msg, "checksum mismatch"),
		strings.Contains(msg, "already defined"):
		return ReasonRaced
	case strings.Contains(msg, "shrinking disks is not supported"):
		return ReasonShrink
	case strings.Contains(msg, "protection mode enabled"):
		return ReasonProtected // set after the plan looked: a person's decision
	case strings.Contains(msg, "storage '") && (strings.Contains(msg, "does not exist") || strings.Contains(msg, "does not support")),
		strings.Contains(msg, "bridge '") && strings.Contains(msg, "does not exist"),
		strings.Contains(msg, "no such cluster node"), strings.Contains(msg, "VM uses local storage"),
		strings.Contains(msg, "hostname lookup '"):
		// The spec names a storage, bridge or node the cluster lacks (a
		// call under /nodes/{node} of a node not in the cluster: pveproxy
		// fails to resolve it).
		return ReasonInvalid
	case strings.Contains(msg, "does not exist"):
		return ReasonNotFound
	case strings.HasPrefix(msg, "bad request: 400"):
		return ReasonInvalid
	}
	return ReasonAPI
}
