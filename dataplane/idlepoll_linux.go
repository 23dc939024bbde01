package dataplane

import (
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kicker is the poller's eventfd. It is never closed: a touch may kick it
// while the poller stops, and a closed descriptor's number may by then
// name another file.
type kicker struct {
	efd int
	rc  syscall.RawConn
}

// kick makes the eventfd readable: the poller runs at the next netpoll.
func (k *kicker) kick() {
	one := uint64(1)
	_, _, _ = unix.RawSyscall(unix.SYS_WRITE, uintptr(k.efd), uintptr(unsafe.Pointer(&one)), 8)
}

// start runs the poller's goroutine. Called under q.mu.
func (q *idlePoller) start() (stop func(), err error) {
	if q.rc == nil {
		efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return nil, os.NewSyscallError("eventfd", err)
		}
		rc, err := os.NewFile(uintptr(efd), "idle-poll").SyscallConn()
		if err != nil {
			unix.Close(efd)
			return nil, err
		}
		q.efd, q.rc = efd, rc
	}
	var quit atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		// The eventfd is never drained: each write makes a new edge for
		// the netpoller (EPOLLET), and its counter will not fill up. The
		// first call, not woken, finds the poller deaf (step).
		_ = q.rc.Read(func(uintptr) bool {
			if quit.Load() {
				return true
			}
			if q.step(q.now()) {
				q.kick() // here, after the netpoller reset readiness
			}
			return false
		})
	}()
	return func() {
		quit.Store(true)
		q.kick()
		<-done
	}, nil
}

// processCPU is the CPU time the process's threads have run.
func processCPU() time.Duration {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_PROCESS_CPUTIME_ID, &ts) != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
