//go:build gitedgetest

package main

import (
	"fmt"
	"os"
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
}
