//go:build linux && !go1.27

package dataplane

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestNewSockFileAsksNothing: newSockFile takes the caller's word that the
// socket is non-blocking, which is the system call it saves. Given a
// blocking socket, os.NewFile finds out (fcntl) and leaves it out of the
// netpoller, where deadlines fail; newSockFile puts it in all the same.
func TestNewSockFileAsksNothing(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0) // blocking
	if err != nil {
		t.Fatal(err)
	}
	f := newSockFile(fd, "tcp")
	defer f.Close()
	if err := f.SetReadDeadline(time.Now().Add(time.Second)); err != nil {
		t.Fatalf("SetReadDeadline: %v: newSockFile asked the descriptor whether it blocks", err)
	}
}
