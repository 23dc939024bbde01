//go:build !linux

package dataplane

import "errors"

// errNoSplice is what moving a body says off Linux, where the proxy does
// not run (gitedge refuses to start it); the package builds for validate
// and plan.
var errNoSplice = errors.New("dataplane: moving bodies needs Linux (splice)")

func putPipe(*pipe) {}

func (m *mover) spliceIn(uintptr) bool {
	m.err = errNoSplice
	return true
}

func (m *mover) spliceOut(uintptr) bool {
	m.err = errNoSplice
	return true
}
