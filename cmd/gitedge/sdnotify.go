package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// sdNotifier speaks systemd's service notification protocol (sd_notify(3))
// for the unit's Type=notify: each message is one datagram of
// newline-separated VAR=VALUE lines, sent to the AF_UNIX socket named by
// $NOTIFY_SOCKET. The manager learns the sender's pid from the kernel
// (SCM_CREDENTIALS), which is how it checks NotifyAccess=.
//
// A nil *sdNotifier, what newSDNotifier returns when NOTIFY_SOCKET is unset
// (not started by systemd, or not as Type=notify), makes every method a
// no-op, so callers never check.
//
// The environment is left as it is: a process started by an in-place
// upgrade inherits NOTIFY_SOCKET and WATCHDOG_USEC and notifies the same
// manager (see ReadyAsMain).
type sdNotifier struct {
	addr *net.UnixAddr
	// watchdog is WatchdogSec= (from WATCHDOG_USEC), 0 when not set.
	watchdog time.Duration
	// watchdogPID is the process the manager asked for pings (WATCHDOG_PID),
	// 0 when unspecified.
	watchdogPID int
	pid         int
	// main is set once this process told the manager it is the main one.
	main atomic.Bool
}

// newSDNotifier reads the notify socket and watchdog settings of this
// process from the environment.
func newSDNotifier() (*sdNotifier, error) {
	return sdNotifierFromEnv(os.Getenv, os.Getpid())
}

// sdNotifierFromEnv is newSDNotifier with the environment and pid given.
func sdNotifierFromEnv(getenv func(string) string, pid int) (*sdNotifier, error) {
	name := getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil, nil
	}
	// A path, or "@name" for an abstract socket: Go's net package maps a
	// leading '@' to the abstract namespace's leading NUL itself.
	if name[0] != '/' && name[0] != '@' {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: expected an absolute path or an abstract socket name starting with @", name)
	}
	n := &sdNotifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}, pid: pid}
	if s := getenv("WATCHDOG_USEC"); s != "" {
		usec, err := strconv.ParseUint(s, 10, 63)
		if err != nil || usec == 0 {
			return nil, fmt.Errorf("WATCHDOG_USEC=%q: expected a positive number of microseconds", s)
		}
		n.watchdog = time.Duration(usec) * time.Microsecond
		if p := getenv("WATCHDOG_PID"); p != "" {
			if n.watchdogPID, err = strconv.Atoi(p); err != nil || n.watchdogPID <= 0 {
				return nil, fmt.Errorf("WATCHDOG_PID=%q: expected a process id", p)
			}
		}
	}
	return n, nil
}

// Notify sends the given VAR=VALUE assignments as one message.
func (n *sdNotifier) Notify(assignments ...string) error {
	if n == nil || len(assignments) == 0 {
		return nil
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("systemd notify socket %s: %w", n.addr.Name, err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("systemd notify socket %s: %w", n.addr.Name, err)
	}
	return nil
}

// Ready says startup is complete (the last good commit serves), or a reload
// finished.
func (n *sdNotifier) Ready(status string) error {
	return n.Notify(withStatus(status, "READY=1")...)
}

// Reloading says a reload (SIGHUP) started; send Ready when it is done.
// MONOTONIC_USEC lets the manager tell this reload from an earlier one.
func (n *sdNotifier) Reloading(status string) error {
	return n.Notify(withStatus(status, "RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(monotonicUsec(), 10))...)
}

// Stopping says the process is shutting down (priority 0 advert, drain).
// A process that handed over to a successor must not send it: the unit
// would stop.
func (n *sdNotifier) Stopping(status string) error {
	return n.Notify(withStatus(status, "STOPPING=1")...)
}

// Status sets the one-line status `systemctl status` shows.
func (n *sdNotifier) Status(status string) error {
	return n.Notify(withStatus(status)...)
}

// ReadyAsMain is what the new process of an in-place upgrade sends once it
// serves: it becomes the unit's main process (MAINPID, which needs
// NotifyAccess=all because it is not the main process yet) and ready, in one
// message. It must be sent before the old process exits, or the manager
// sees the main process end and stops the unit. From then on this process
// also sends the watchdog pings.
func (n *sdNotifier) ReadyAsMain(status string) error {
	if n == nil {
		return nil
	}
	if err := n.Notify(withStatus(status, "MAINPID="+strconv.Itoa(n.pid), "READY=1")...); err != nil {
		return err
	}
	n.main.Store(true)
	return nil
}

// MainPID says this process is the unit's main one (MAINPID=), without a
// word on readiness: what the old process of an upgrade in place sends when
// it gives the upgrade up while the new one may have claimed the unit
// (ReadyAsMain) already, before that one exits, so that the manager does
// not take its exit for the service's.
func (n *sdNotifier) MainPID() error {
	if n == nil {
		return nil
	}
	if err := n.Notify("MAINPID=" + strconv.Itoa(n.pid)); err != nil {
		return err
	}
	n.main.Store(true)
	return nil
}

// ExtendTimeout asks for d more before the start (or stop) times out, as
// for a first clone of a large repository.
func (n *sdNotifier) ExtendTimeout(d time.Duration) error {
	return n.Notify("EXTEND_TIMEOUT_USEC=" + strconv.FormatInt(d.Microseconds(), 10))
}

// WatchdogInterval is how often the manager expects WATCHDOG=1 (the unit's
// WatchdogSec=), or 0 when it expects none from this process.
func (n *sdNotifier) WatchdogInterval() time.Duration {
	if n == nil || !n.watchdogOwner() {
		return 0
	}
	return n.watchdog
}

func (n *sdNotifier) watchdogOwner() bool {
	return n.watchdogPID == 0 || n.watchdogPID == n.pid || n.main.Load()
}

// Watchdog sends WATCHDOG=1 at half the watchdog interval while healthy
// reports true, until ctx is done. A process that is alive but not healthy
// stops pinging, so the manager restarts it after WatchdogSec=. It returns
// at once when no watchdog is configured. healthy must not block. A failed
// ping is logged and the next one tried: the manager acts on missing pings.
func (n *sdNotifier) Watchdog(ctx context.Context, healthy func() bool, log *slog.Logger) {
	if n == nil || n.watchdog == 0 {
		return
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(n.watchdog / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// Checked on every tick: the new process of an upgrade becomes the
		// owner when it sends ReadyAsMain.
		if !n.watchdogOwner() || !healthy() {
			continue
		}
		if err := n.Notify("WATCHDOG=1"); err != nil {
			log.Warn("systemd watchdog ping failed", "err", err)
		}
	}
}

// withStatus appends STATUS= when status is set. The protocol is
// line-based: a newline in status would start a new assignment.
func withStatus(status string, assignments ...string) []string {
	if status != "" {
		assignments = append(assignments, "STATUS="+strings.ReplaceAll(status, "\n", " "))
	}
	return assignments
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock systemd
// compares MONOTONIC_USEC with.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}
