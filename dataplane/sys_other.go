//go:build !linux

package dataplane

import "syscall"

func rawRead(fd int, p []byte) (int, error) { return syscall.Read(fd, p) }

func rawWrite(fd int, p []byte) (int, error) { return syscall.Write(fd, p) }

// rawReadInq is never reached here (setInq fails): more is unknown.
func rawReadInq(fd int, p []byte) (int, bool, error) {
	n, err := syscall.Read(fd, p)
	return n, true, err
}

func rawPeekEmpty(fd int) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(fd, b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN
}

// rawAcked is unknown here: a write timeout is then final.
func rawAcked(int) int64 { return -1 }

// rawUnacked: TCP_INFO's byte counts are Linux's; elsewhere a request the
// server may have read is never sent again unless idempotent.
func rawUnacked(int) int64 { return -1 }

// setInq: TCP_INQ is Linux's; elsewhere a tunnel reads until a read
// finds nothing.
func setInq(uintptr) bool { return false }
