//go:build linux && go1.27

package dataplane

import "os"

// newSockFile wraps a non-blocking socket in an *os.File the netpoller
// serves. See sockfile_linux.go: on Go releases after 1.26 it is
// os.NewFile until net.newUnixFile is checked against them.
func newSockFile(fd int, name string) *os.File { return os.NewFile(uintptr(fd), name) }
