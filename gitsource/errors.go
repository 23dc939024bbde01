package gitsource

import (
	"errors"
	"fmt"
)

// Step names the stage of a look at the source that failed.
type Step string

const (
	// StepFetch covers reaching the remote: listing its refs, fetching
	// objects, opening or rebuilding the local cache.
	StepFetch Step = "fetch"
	// StepVerify covers accepting the commit: its OpenPGP signature and
	// the force-push policy.
	StepVerify Step = "verify"
	// StepRead covers reading the configured sub-directory's files.
	StepRead Step = "read"
)

// Reasons carried by Error, stable strings for status and metric labels.
const (
	ReasonUnreachable  = "unreachable"   // network error, timeout, server error
	ReasonAuth         = "auth"          // credentials refused or unreadable
	ReasonNotFound     = "not-found"     // repository, branch, tag or commit missing
	ReasonCache        = "cache"         // local cache could not be opened or rebuilt
	ReasonForcePush    = "force-push"    // non-fast-forward refused by policy
	ReasonUnsigned     = "unsigned"      // keyring configured, commit has no signature
	ReasonUntrusted    = "untrusted"     // signed by a key not in the keyring
	ReasonBadSignature = "bad-signature" // signature does not verify
	ReasonKeyring      = "keyring"       // keyring file unreadable or empty
	ReasonPath         = "path"          // sub-directory missing at that commit
	ReasonTooLarge     = "too-large"     // tree over the size limit
	ReasonIO           = "io"            // local directory could not be read
	ReasonDiskFull     = "disk-full"     // the state directory's filesystem is full (ENOSPC, EDQUOT)
	ReasonReadOnly     = "read-only"     // the state directory's filesystem is read-only (EROFS)
)

// Error is what Next returns when a look at the source fails. Step says
// which stage failed; Retryable (also as the Transient method, which
// reconcile's loop looks for) says whether trying again without a new
// commit can help (network trouble: yes; a bad signature: no). A terminal
// error is tied to Commit: the source reports it once and does not retry
// until the head moves. Error never holds secrets: URLs are shown without
// credentials and credentials are never formatted.
type Error struct {
	Step      Step
	Reason    string // one of the Reason constants
	Retryable bool
	Source    string // the remote URL without credentials, or the directory
	Commit    string // the commit concerned, when known
	Err       error
}

func (e *Error) Error() string {
	where := e.Source
	if e.Commit != "" {
		where += " at " + short(e.Commit)
	}
	return fmt.Sprintf("gitsource %s %s: %v", e.Step, where, e.Err)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Transient reports whether retrying without a new commit can help.
func (e *Error) Transient() bool { return e.Retryable }

// IsTransient reports whether err (or an *Error it wraps) says that trying
// again later, without a new commit, can help.
func IsTransient(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
