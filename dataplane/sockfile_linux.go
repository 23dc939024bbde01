//go:build linux && !go1.27

package dataplane

import (
	"os"
	_ "unsafe" // go:linkname
)

// newSockFile wraps a socket the proxy made non-blocking (accept4 and
// socket with SOCK_NONBLOCK) in an *os.File the netpoller serves, as
// os.NewFile does, minus os.NewFile's fcntl(F_GETFL), which for a socket
// only asks whether it is non-blocking (and in append mode, which a
// socket never is). That is one system call of the ten a new HTTP
// connection costs (docs/benchmarks.md, Round 16), where the benchmark
// machine's hypervisor makes each cost a microsecond or two.
//
// net.newUnixFile is the entry point package os keeps for package net's
// sockets (os pushes it with go:linkname, so the linker lets a package
// refer to it): the same pollable File, marked as made non-blocking by
// Go, so its Fd method would turn the socket blocking, as for net's; the
// proxy never calls Fd on these. It is checked against Go 1.26
// (TestNewSockFile, TestNewSockFileAsksNothing); a later Go builds
// sockfile_go127_linux.go, os.NewFile, until it is checked against that
// release too.
//
//go:linkname newSockFile net.newUnixFile
func newSockFile(fd int, name string) *os.File
