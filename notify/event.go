package notify

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gitedge/gitedge/internal/deliver"
)

// Severity says how urgently a person must look.
type Severity string

const (
	// Info: worth knowing, nothing to do (a server back up, a node taking
	// the BACKUP role at start).
	Info Severity = "info"
	// Warning: something changed that a person should look at (a refused
	// commit, a failover, drift corrected, a server down with others left).
	Warning Severity = "warning"
	// Critical: service is at risk now (an apply failed, a backend's last
	// healthy server down, a VRRP instance in FAULT).
	Critical Severity = "critical"
)

// rank orders severities; 0 is not a severity.
func (s Severity) rank() int {
	switch s {
	case Info:
		return 1
	case Warning:
		return 2
	case Critical:
		return 3
	}
	return 0
}

// Kind is what happened.
type Kind string

const (
	// KindCommitRefused: a commit failed to parse, validate or verify; the
	// node keeps its last good commit. Commit is set.
	KindCommitRefused Kind = "commit-refused"
	// KindApplyFailed: a valid commit could not be applied. Commit is set.
	KindApplyFailed Kind = "apply-failed"
	// KindVRRPTransition: a VRRP instance changed state. Subject.Instance
	// is set; Message is "FROM → TO".
	KindVRRPTransition Kind = "vrrp-transition"
	// KindDriftCorrected: a VM differed from its spec and was put back.
	// Subject.VM and Subject.VMID are set.
	KindDriftCorrected Kind = "drift-corrected"
	// KindServerDown: a backend server failed its health checks.
	// Subject.Backend and Subject.Server are set. It stays open until the
	// matching KindServerUp.
	KindServerDown Kind = "server-down"
	// KindServerUp: a server that was down passes its health checks again;
	// it resolves the KindServerDown of the same server.
	KindServerUp Kind = "server-up"
)

func (k Kind) valid() bool {
	switch k {
	case KindCommitRefused, KindApplyFailed, KindVRRPTransition, KindDriftCorrected, KindServerDown, KindServerUp:
		return true
	}
	return false
}

// aboutCommit reports whether the commit is the subject of k.
func (k Kind) aboutCommit() bool { return k == KindCommitRefused || k == KindApplyFailed }

// problem is the kind k resolves, or k itself.
func (k Kind) problem() Kind {
	if k == KindServerUp {
		return KindServerDown
	}
	return k
}

// Subject is what an event is about. Only the fields of the event's kind
// are set.
type Subject struct {
	Instance string `json:"instance,omitempty"` // VRRP instance name
	Backend  string `json:"backend,omitempty"`  // Backend name
	Server   string `json:"server,omitempty"`   // the server as the Backend lists it (host:port)
	VM       string `json:"vm,omitempty"`       // VirtualMachine name
	VMID     int    `json:"vmid,omitempty"`     // Proxmox VMID
}

// String is the subject for people: "VRRP instance vi_1", "backend web
// server 192.0.2.10:80", "VM lb-1 (101)"; "" when empty.
func (s Subject) String() string {
	var parts []string
	if s.Instance != "" {
		parts = append(parts, "VRRP instance "+s.Instance)
	}
	if s.Backend != "" {
		parts = append(parts, "backend "+s.Backend)
	}
	if s.Server != "" {
		parts = append(parts, "server "+s.Server)
	}
	switch {
	case s.VM != "" && s.VMID != 0:
		parts = append(parts, fmt.Sprintf("VM %s (%d)", s.VM, s.VMID))
	case s.VM != "":
		parts = append(parts, "VM "+s.VM)
	case s.VMID != 0:
		parts = append(parts, "VM "+strconv.Itoa(s.VMID))
	}
	return strings.Join(parts, " ")
}

// Event is one thing a person must hear about. Build it with a
// constructor (CommitRefused, ApplyFailed, VRRPTransition, DriftCorrected,
// ServerDown, ServerUp), which sets Kind, Severity, Subject and Message;
// the Notifier fills Node and Time when they are empty.
type Event struct {
	Kind     Kind     `json:"kind"`
	Severity Severity `json:"severity"`
	// Node is the node the event happened on; default Config.Node.
	Node string `json:"node"`
	// Commit is the commit concerned (refused, failed) or live when it
	// happened; "" when unknown.
	Commit  string  `json:"commit,omitempty"`
	Subject Subject `json:"subject"`
	// Message says what happened, for people (the first error, the
	// health check's reason, "BACKUP → MASTER").
	Message string `json:"message"`
	// Time is when it happened; default the time Notify is called.
	Time time.Time `json:"time"`
	// Repeats is set by the Notifier: how many identical events were
	// suppressed since the previous notice (rate limiting).
	Repeats int `json:"repeats,omitempty"`

	// problem is the open event a resolving event closes, set per sink.
	problem *Event
}

// CommitRefused is a commit that failed to parse, validate or verify
// (signature); the node keeps serving its last good commit. Warning.
func CommitRefused(commit string, err error) Event {
	return Event{Kind: KindCommitRefused, Severity: Warning, Commit: commit, Message: Summarize(err)}
}

// ApplyFailed is a valid commit whose apply failed. Critical: the node may
// be half way between two commits.
func ApplyFailed(commit string, err error) Event {
	return Event{Kind: KindApplyFailed, Severity: Critical, Commit: commit, Message: Summarize(err)}
}

// VRRPTransition is a VRRP instance changing state (INIT, BACKUP, MASTER,
// FAULT, in any case). Critical into FAULT; Warning when the node takes or
// loses MASTER (a failover); Info otherwise (INIT → BACKUP at start).
func VRRPTransition(instance, from, to string) Event {
	f, t := strings.ToUpper(from), strings.ToUpper(to)
	sev := Info
	switch {
	case t == "FAULT":
		sev = Critical
	case f == "MASTER" || (t == "MASTER" && f != "INIT"):
		sev = Warning
	}
	return Event{Kind: KindVRRPTransition, Severity: sev, Subject: Subject{Instance: instance}, Message: f + " → " + t}
}

// DriftCorrected is a VM found different from its spec and put back;
// what says what differed ("memory 2048 → 4096 MiB"). Warning: someone
// changed it by hand.
func DriftCorrected(vm string, vmid int, what string) Event {
	return Event{Kind: KindDriftCorrected, Severity: Warning, Subject: Subject{VM: vm, VMID: vmid}, Message: what}
}

// ServerDown is a backend server failing its health checks, with the
// checks' reason and how many of the backend's servers are still healthy.
// Critical when none is left, else Warning.
func ServerDown(backend, server, reason string, healthyLeft int) Event {
	sev, left := Warning, fmt.Sprintf("%d healthy left", healthyLeft)
	if healthyLeft <= 0 {
		sev, left = Critical, "no healthy server left"
	}
	msg := left
	if reason != "" {
		msg = reason + "; " + left
	}
	return Event{Kind: KindServerDown, Severity: sev, Subject: Subject{Backend: backend, Server: server}, Message: msg}
}

// ServerUp is a server healthy again. Info; a sink that was told the
// server was down is told it is up whatever its minimum severity, and
// Alertmanager gets the alert resolved.
func ServerUp(backend, server string) Event {
	return Event{Kind: KindServerUp, Severity: Info, Subject: Subject{Backend: backend, Server: server}, Message: "healthy again"}
}

// Summary is the event in one line for people, as chat messages show it.
func (e Event) Summary() string {
	var what string
	switch e.Kind {
	case KindCommitRefused:
		what = "commit " + shortID(e.Commit) + " refused"
	case KindApplyFailed:
		what = "apply of commit " + shortID(e.Commit) + " failed"
	case KindDriftCorrected:
		what = e.Subject.String() + ": drift corrected"
	case KindServerDown:
		what = e.Subject.String() + " down"
	case KindServerUp:
		what = e.Subject.String() + " up"
	default:
		what = e.Subject.String()
	}
	s := e.Node + ": " + what
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Repeats > 0 {
		s += fmt.Sprintf(" (and %d more like it since the last notice)", e.Repeats)
	}
	return s
}

// subjectKey identifies what an event is about; for commit events the
// commit is the subject.
func (e Event) subjectKey() string {
	if e.Kind.aboutCommit() {
		return "commit\x00" + e.Commit
	}
	s := e.Subject
	return fmt.Sprintf("%s\x00%s\x00%s\x00%s\x00%d", s.Instance, s.Backend, s.Server, s.VM, s.VMID)
}

// rateKey identifies repeats: the same kind, subject and message.
func (e Event) rateKey() string {
	return string(e.Kind) + "\x00" + e.subjectKey() + "\x00" + e.Message
}

// openKey identifies a problem that stays open until resolved.
func (e Event) openKey() string { return string(e.Kind.problem()) + "\x00" + e.subjectKey() }

func shortID(s string) string {
	if s == "" {
		return "(unknown)"
	}
	return s[:min(len(s), 12)]
}

// Summarize makes an event message from an error: the first error only,
// prefixed with the count when there are several ("3 errors, first:
// routes/blog.yaml:12: …"). Lists (errors.Join, reconcile.Errors), even
// behind fmt.Errorf's %w, are walked to their first leaf.
func Summarize(err error) string { return deliver.Summarize(err) }
