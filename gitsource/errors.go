package gitsource

import "fmt"

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

// Reasons carried by Error, stable strings for status and metric labels,
// in PascalCase as every reason of gitedge (infra's, failover's drops).
const (
	ReasonUnreachable  = "Unreachable"  // network error, timeout, server error
	ReasonAuth         = "Auth"         // credentials refused or unreadable
	ReasonNotFound     = "NotFound"     // repository, branch, tag or commit missing
	ReasonCache        = "Cache"        // local cache could not be opened or rebuilt
	ReasonForcePush    = "ForcePush"    // non-fast-forward refused by policy
	ReasonUnsigned     = "Unsigned"     // keyring configured, commit has no signature
	ReasonUntrusted    = "Untrusted"    // signed by a key not in the keyring
	ReasonBadSignature = "BadSignature" // signature does not verify
	ReasonKeyring      = "Keyring"      // keyring file unreadable or empty
	ReasonPath         = "Path"         // sub-directory missing at that commit
	ReasonTooLarge     = "TooLarge"     // tree over the size limit
	ReasonIO           = "IO"           // local directory could not be read
	ReasonDiskFull     = "DiskFull"     // the state directory's filesystem is full (ENOSPC, EDQUOT)
	ReasonReadOnly     = "ReadOnly"     // the state directory's filesystem is read-only (EROFS)
)

// Error is what Next returns when a look at the source fails. Step says
// which stage failed and Reason why; the reason decides whether trying
// again without a new commit can help (Transient: network trouble, a full
// disk, yes; a bad signature, no). A terminal error is tied to Commit: the
// source reports it once and does not retry until the head moves. Error
// never holds secrets: URLs are shown without credentials and credentials
// are never formatted.
type Error struct {
	Step   Step
	Reason string // one of the Reason constants
	Source string // the remote URL without credentials, or the directory
	Commit string // the commit concerned, when known
	Err    error
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

// Transient reports whether retrying without a new commit can help: the
// remote or the state directory may recover; a refused commit, missing
// credentials or a missing branch need a person (or a new commit). The
// reconcile loop asks this method.
func (e *Error) Transient() bool {
	switch e.Reason {
	case ReasonUnreachable, ReasonCache, ReasonDiskFull, ReasonReadOnly:
		return true
	}
	return false
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
