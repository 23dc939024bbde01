//go:build !linux

package dataplane

import (
	"errors"
	"time"
)

// kicker: the idle poll is Linux's (eventfd), where the proxy runs.
type kicker struct{}

func (kicker) kick() {}

func (q *idlePoller) start() (func(), error) {
	return nil, errors.New("no idle poll here")
}

func processCPU() time.Duration { return 0 }
