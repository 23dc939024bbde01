package gitsource

import (
	"io/fs"
	"time"
)

// Revision is one state of the source handed to the loader.
type Revision struct {
	// Commit is the full commit id, or for a Dir source "dir:" and the
	// SHA-256 of the files' paths and contents.
	Commit string
	// Ref is the followed ref (refs/heads/main, refs/tags/v1), "" for a
	// commit pin or a directory.
	Ref string
	// Files is the configured sub-directory at Commit, read fully into
	// memory (a *MemFS): no working tree, nothing half-written. Symbolic
	// links are kept as links (fs.ReadLinkFS) and never lead outside Files;
	// see MemFS. The caller must not modify it.
	Files fs.FS
	// Signer is the key that signed Commit, nil when no keyring is
	// configured (or for a directory).
	Signer *Signer
	// Author, Committer and Message describe the commit (zero for a
	// directory).
	Author, Committer Signature
	Message           string
	// Trigger is what made the source look.
	Trigger Trigger
	// Previous is the commit handed over before this one by this source,
	// "" for the first.
	Previous string
	// Stale is set when the revision was handed over from the local cache
	// because the first look after start could not fetch: it is the error
	// (an *Error, StepFetch; its Reason says why: unreachable, not-found,
	// auth, disk-full, read-only). The commit is the one last handed over
	// before the restart, verified again; a retry is already scheduled
	// when retrying can help.
	Stale error
	// ForcePushed is set when Commit does not descend from Previous and the
	// policy is ForcePushFollow.
	ForcePushed bool
}

// Signature is a commit's author or committer.
type Signature struct {
	Name, Email string
	When        time.Time
}

// Signer is the OpenPGP key that made a verified commit signature.
type Signer struct {
	// KeyID is the 16-hex id of the (sub)key that signed.
	KeyID string
	// Fingerprint is the primary key's fingerprint, upper-case hex.
	Fingerprint string
	// Identity is the primary key's first user id, "Name <email>".
	Identity string
}

// TriggerKind says what made a source look again.
type TriggerKind string

const (
	TriggerStart    TriggerKind = "start"    // the first look after start
	TriggerPoll     TriggerKind = "poll"     // the cron schedule
	TriggerWebhook  TriggerKind = "webhook"  // a verified push event
	TriggerFSNotify TriggerKind = "fsnotify" // a file changed (Dir)
	TriggerRetry    TriggerKind = "retry"    // backoff after a transient failure
	TriggerManual   TriggerKind = "manual"   // asked for by an operator or the loop
	TriggerRelay    TriggerKind = "relay"    // a peer node told of a new commit (relay.go)
)

// Trigger is a reason to look again. It carries no state: what is looked
// at is always the current head, so a lost or repeated trigger is harmless.
type Trigger struct {
	Kind   TriggerKind
	Detail string // for logs, e.g. "github push refs/heads/main 1a2b3c4"
	At     time.Time
	// Ref and Commit are what a push webhook or a relay names, when it
	// does: a hint to pass on to the peers (gitsource/relay), never what
	// is fetched.
	Ref, Commit string
}
