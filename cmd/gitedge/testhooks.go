package main

import (
	"context"
	"strings"
	"time"
)

// Hooks a test build (-tags gitedgetest, testhooks_gitedgetest.go) sets
// from the environment to force an ordering between the two processes of
// an upgrade in place, or to play a binary of an earlier version; a
// release build leaves them as they are here.
var (
	// successorListenDelay holds a process started by an upgrade this
	// long (or until it stops) before it takes or opens the admin and
	// webhook sockets.
	successorListenDelay time.Duration
	// successorReadyDelay holds a process started by an upgrade this long
	// (or until it stops) once its first pass is done, before it reports
	// ready to the old process.
	successorReadyDelay time.Duration
	// successorMainDelay holds a process started by an upgrade of
	// protocol 2 this long (or until it stops) once it claimed the unit,
	// before it tells the old process ("main").
	successorMainDelay time.Duration
	// oldProtocol is the control protocol the old process of an upgrade
	// offers (upgradeSpec.Protocol), newProtocol the highest one the new
	// process speaks: 1 plays a binary of an earlier version.
	oldProtocol = upgradeProtocol
	newProtocol = upgradeProtocol
	// abortUpgradeAtReady makes the old process of an upgrade abort it
	// right after it reads the new process's ready line, as if its
	// upgradeTimeout fired at that instant.
	abortUpgradeAtReady bool
)

// holdSuccessorListen is successorListenDelay's wait.
func holdSuccessorListen(ctx context.Context, u *upgrades) {
	holdSuccessor(ctx, u, successorListenDelay)
}

// holdSuccessorReady is successorReadyDelay's wait.
func holdSuccessorReady(ctx context.Context, u *upgrades) {
	if successorReadyDelay > 0 && u.child() {
		u.log.Info("test hook: holding the new process before it reports ready", "delay", successorReadyDelay)
	}
	holdSuccessor(ctx, u, successorReadyDelay)
}

// holdSuccessorMain is successorMainDelay's wait.
func holdSuccessorMain(ctx context.Context, u *upgrades) {
	holdSuccessor(ctx, u, successorMainDelay)
}

func holdSuccessor(ctx context.Context, u *upgrades, d time.Duration) {
	if d <= 0 || u == nil || u.spec.PID == 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// abortsAtReady says whether abortUpgradeAtReady aborts on line.
func abortsAtReady(line string) bool {
	return abortUpgradeAtReady && (line == "ready" || strings.HasPrefix(line, "ready "))
}
