//go:build !linux

package dataplane

import (
	"net"
	"net/netip"
)

// acceptor accepts through the listener itself off Linux, where the proxy
// does not run (gitedge refuses to start it); the package builds for
// validate and plan.
type acceptor struct{ ln *net.TCPListener }

func (a *acceptor) open(ln *net.TCPListener, _ Bind) error { a.ln = ln; return nil }

func (a *acceptor) close() {}

func (a *acceptor) accept() (sockConn, netip.AddrPort, netip.AddrPort, error) {
	return acceptNet(a.ln)
}
