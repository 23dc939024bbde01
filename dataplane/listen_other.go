//go:build !linux

package dataplane

import (
	"net"
	"syscall"
)

// listenControl sets no option off Linux, where the proxy does not run
// (gitedge refuses to start it); the package builds for validate and plan.
func listenControl(Bind) func(network, address string, c syscall.RawConn) error { return nil }

// setDeferAccept: no such option here.
func setDeferAccept(*net.TCPListener, bool) error { return nil }
