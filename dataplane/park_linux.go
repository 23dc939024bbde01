package dataplane

import (
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// start creates the epoll set and its goroutine. Called under k.mu.
func (k *parker) start() error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	if err := unix.SetNonblock(ep, true); err != nil {
		unix.Close(ep)
		return os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(ep), "parker-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return err
	}
	k.ep, k.f, k.rc = ep, f, rc
	k.held = map[int32]parkable{}
	k.timer = time.AfterFunc(time.Hour, k.expire)
	k.timer.Stop()
	k.wg.Add(1)
	go k.wait()
	return nil
}

// park registers x, idle, until its descriptor is readable or deadline
// (unix ns; 0 none) passes. false: it cannot be parked (a drain started,
// the proxy is stopping); the caller goes on with it.
func (k *parker) park(x parkable, deadline int64) bool {
	f := x.fields()
	fd := f.parkFD
	if fd < 0 {
		return false // no read saw its descriptor yet
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || x.refuse() {
		return false
	}
	if k.f == nil {
		if err := k.start(); err != nil {
			k.p.log.Warn("idle connections cannot be parked: they keep their goroutines until their timeouts", "error", err)
			k.closed = true
			k.failed.Store(true)
			return false
		}
	}
	f.idleAt.Store(deadline)
	f.parkGen++
	k.held[fd] = x
	if deadline != 0 {
		k.push(x)
	}
	f.state.Store(stParked)
	// A drain that started meanwhile either saw stParked (and owns x
	// now) or is seen here.
	if x.refuse() && f.state.CompareAndSwap(stParked, stBusy) {
		k.take(x)
		return false
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: fd, Pad: int32(f.parkGen)}
	op := unix.EPOLL_CTL_ADD
	if f.inEpoll {
		op = unix.EPOLL_CTL_MOD
	}
	err := epollCtl(k.ep, op, int(fd), &ev)
	if err == unix.EEXIST {
		err = epollCtl(k.ep, unix.EPOLL_CTL_MOD, int(fd), &ev)
	}
	if err != nil {
		if !f.state.CompareAndSwap(stParked, stBusy) {
			return true // a drain owns it
		}
		k.take(x)
		return false
	}
	f.inEpoll = true
	if f.parkIdx == 0 {
		k.timer.Reset(time.Until(time.Unix(0, deadline)))
	}
	return true
}

// wait is the parker's goroutine: it waits for the epoll set to be
// readable through the netpoller, then hands each readable descriptor to
// a worker.
func (k *parker) wait() {
	defer k.wg.Done()
	evs := make([]unix.EpollEvent, 128)
	n := 0
	poll := func(uintptr) bool {
		for {
			m, err := epollPoll(k.ep, evs)
			if err == unix.EINTR {
				continue
			}
			n = max(m, 0)
			return m > 0 || err != nil
		}
	}
	for {
		n = 0
		if err := k.rc.Read(poll); err != nil {
			return // closed
		}
		if n == 0 {
			return // epoll_wait failed
		}
		k.mu.Lock()
		for i := range evs[:n] {
			ev := &evs[i]
			x := k.held[ev.Fd]
			if x == nil {
				continue
			}
			if f := x.fields(); int32(f.parkGen) != ev.Pad || !f.state.CompareAndSwap(stParked, stBusy) {
				continue // stale: it left meanwhile
			}
			k.take(x)
			k.p.workers.run(x)
		}
		k.mu.Unlock()
	}
}

// The parker's epoll calls are raw, as a connection's reads and writes
// (sys_linux.go): neither blocks (the wait has a zero timeout), and a
// call through syscall.Syscall wakes the runtime's monitor thread when
// the proxy has idled (see closer).

// epollPoll is epoll_pwait(2) with a zero timeout and no signal mask.
func epollPoll(ep int, evs []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// epollCtl is epoll_ctl(2).
func epollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(ep), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
