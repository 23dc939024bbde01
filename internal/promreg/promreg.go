// Package promreg registers a package's metrics into the registry it is
// given, sharing the collectors another instance already registered there
// (two sources, two webhooks or two reporters in one process).
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Register registers c with reg (nil: nowhere) and returns the collector
// to use: c, or the one already registered under the same description. A
// conflicting registration (same name, other labels) is a programming
// error and panics, naming the package.
func Register[C prometheus.Collector](pkg string, reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		if are, ok := errors.AsType[prometheus.AlreadyRegisteredError](err); ok {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(pkg + ": registering metrics: " + err.Error())
	}
	return c
}
