//go:build linux && !go1.27

package dataplane

import (
	"os"
	_ "unsafe" // go:linkname
)

// newSockFile wraps a socket the proxy made non-blocking (accept4 and
// socket with SOCK_NONBLOCK) in an *os.File the netpoller serves, as
// os.NewFile does, minus os.NewFile's fcntl(F_GETFL), which only asks
// whether the descriptor is non-blocking. That is one system call of the
// ten a new HTTP connection costs (docs/benchmarks.md, Round 16), and a
// system call costs one to two microseconds on a hypervisor that traps
// them.
//
// net.newUnixFile is the entry point package os keeps for package net's
// sockets (os pushes it with go:linkname, so the linker lets a package
// refer to it): the File it returns is the same pollable File, marked
// non-blocking. It is checked against Go 1.26 (TestNewSockFile); a later
// Go builds sockfile_go127_linux.go, os.NewFile, until it is checked
// against that release too.
//
//go:linkname newSockFile net.newUnixFile
func newSockFile(fd int, name string) *os.File
