package dataplane

import (
	"errors"
	"fmt"
	"os"
)

// BindError says a listener could not listen, and what to do. One refused
// for lack of privilege (a port below 1024 without CAP_NET_BIND_SERVICE)
// is terminal: retrying cannot grant it.
type BindError struct {
	Listener string
	Bind     Bind
	Err      error
	// Serving: a config was applied before and keeps serving; false at
	// first start, when nothing serves.
	Serving bool
}

func (e *BindError) Error() string {
	then := "the running config keeps serving"
	if !e.Serving {
		then = "nothing serves yet: no config was applied"
	}
	what := "free the address or change the bind"
	if e.privilege() {
		what = "ports below 1024 need CAP_NET_BIND_SERVICE: run gitedge as root or grant it (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or bind a port from 1024 up"
	}
	return fmt.Sprintf("dataplane: listener %q: cannot listen on %s: %v: %s (%s)", e.Listener, e.Bind, e.Err, what, then)
}

func (e *BindError) Unwrap() error { return e.Err }

// Transient is false for a missing privilege, true otherwise (an address
// in use may be freed, a VIP may be added).
func (e *BindError) Transient() bool { return !e.privilege() }

func (e *BindError) privilege() bool {
	return errors.Is(e.Err, os.ErrPermission) && e.Bind.Port < 1024
}
