//go:build gitedgetest

package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

// A test build's hooks (testhooks.go), from the environment: a process an
// upgrade starts inherits it.
func init() {
	for _, h := range []struct {
		env string
		d   *time.Duration
	}{
		{"GITEDGE_TEST_SUCCESSOR_LISTEN_DELAY", &successorListenDelay},
		{"GITEDGE_TEST_SUCCESSOR_READY_DELAY", &successorReadyDelay},
		{"GITEDGE_TEST_SUCCESSOR_MAIN_DELAY", &successorMainDelay},
		{"GITEDGE_TEST_UPGRADE_TIMEOUT", &upgradeTimeout},
	} {
		s := os.Getenv(h.env)
		if s == "" {
			continue
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			panic(fmt.Sprintf("$%s=%q: %v (a test build's hook: a Go duration, as 2s)", h.env, s, err))
		}
		*h.d = d
	}
	for _, h := range []struct {
		env string
		p   *int
	}{
		{"GITEDGE_TEST_OLD_PROTOCOL", &oldProtocol},
		{"GITEDGE_TEST_NEW_PROTOCOL", &newProtocol},
	} {
		s := os.Getenv(h.env)
		if s == "" {
			continue
		}
		p, err := strconv.Atoi(s)
		if err != nil || p < 1 || p > upgradeProtocol {
			panic(fmt.Sprintf("$%s=%q: want a protocol from 1 to %d (a test build's hook)", h.env, s, upgradeProtocol))
		}
		*h.p = p
	}
	if s := os.Getenv("GITEDGE_TEST_ABORT_UPGRADE_AT_READY"); s != "" {
		b, err := strconv.ParseBool(s)
		if err != nil {
			panic(fmt.Sprintf("$GITEDGE_TEST_ABORT_UPGRADE_AT_READY=%q: %v (a test build's hook: a boolean)", s, err))
		}
		abortUpgradeAtReady = b
	}
}
