package main

import (
	"context"
	"time"
)

// Delays a test build (-tags gitedgetest, testhooks_gitedgetest.go) sets
// from the environment to force an ordering between the two processes of
// an upgrade in place; a release build leaves them as they are here.
var (
	// successorListenDelay holds a process started by an upgrade this
	// long (or until it stops) before it takes or opens the admin and
	// webhook sockets.
	successorListenDelay time.Duration
)

// holdSuccessorListen is successorListenDelay's wait.
func holdSuccessorListen(ctx context.Context, u *upgrades) {
	if successorListenDelay <= 0 || u == nil || u.spec.PID == 0 {
		return
	}
	t := time.NewTimer(successorListenDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
