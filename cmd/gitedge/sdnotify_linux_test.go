package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gitedge/gitedge/internal/testkit"
)

// sdListen opens the manager's side of a notify socket: a unixgram socket
// with SO_PASSCRED, as systemd sets it, so each message arrives with the
// sender's credentials.
func sdListen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen %s: %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatalf("SO_PASSCRED: %v %v", err, serr)
	}
	return c
}

// sdMessage is one received notification.
type sdMessage struct {
	lines []string
	pid   int32
}

// sdRecv waits (bounded) for the next message.
func sdRecv(t *testing.T, c *net.UnixConn) sdMessage {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf, oob := make([]byte, 4096), make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		t.Fatalf("waiting for a notification: %v", err)
	}
	msg := sdMessage{lines: strings.Split(strings.TrimSuffix(string(buf[:n]), "\n"), "\n"), pid: -1}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range scms {
		if cred, err := unix.ParseUnixCredentials(&m); err == nil {
			msg.pid = cred.Pid
		}
	}
	return msg
}

func sdEnv(vars map[string]string) func(string) string {
	return func(k string) string { return vars[k] }
}

func TestSDNotifyMessages(t *testing.T) {
	for _, socket := range []struct{ name, addr string }{
		{"path", filepath.Join(t.TempDir(), "notify")},
		{"abstract", fmt.Sprintf("@gitedge-sdnotify-test-%d", os.Getpid())},
	} {
		t.Run(socket.name, func(t *testing.T) {
			srv := sdListen(t, socket.addr)
			n, err := sdNotifierFromEnv(sdEnv(map[string]string{"NOTIFY_SOCKET": socket.addr}), 4242)
			if err != nil || n == nil {
				t.Fatalf("notifier: %v %v", n, err)
			}
			for _, tc := range []struct {
				name string
				send func() error
				want []string
			}{
				{"ready", func() error { return n.Ready("serving abc123") }, []string{"READY=1", "STATUS=serving abc123"}},
				{"ready without status", func() error { return n.Ready("") }, []string{"READY=1"}},
				{"stopping", func() error { return n.Stopping("draining") }, []string{"STOPPING=1", "STATUS=draining"}},
				{"status on one line", func() error { return n.Status("fetch failed:\nhost unreachable") }, []string{"STATUS=fetch failed: host unreachable"}},
				{"main pid", func() error { return n.ReadyAsMain("upgraded") }, []string{"MAINPID=4242", "READY=1", "STATUS=upgraded"}},
				{"main pid back", n.MainPID, []string{"MAINPID=4242"}},
				{"extend timeout", func() error { return n.ExtendTimeout(90 * time.Second) }, []string{"EXTEND_TIMEOUT_USEC=90000000"}},
				{"raw", func() error { return n.Notify("WATCHDOG=1") }, []string{"WATCHDOG=1"}},
			} {
				if err := tc.send(); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				got := sdRecv(t, srv)
				if !slices.Equal(got.lines, tc.want) {
					t.Errorf("%s: got %q, want %q", tc.name, got.lines, tc.want)
				}
				// What systemd attributes the message by.
				if got.pid != int32(os.Getpid()) {
					t.Errorf("%s: sender pid %d, want %d", tc.name, got.pid, os.Getpid())
				}
			}

			// RELOADING=1 carries CLOCK_MONOTONIC in microseconds.
			before := monotonicUsec()
			if err := n.Reloading("reloading"); err != nil {
				t.Fatal(err)
			}
			after := monotonicUsec()
			got := sdRecv(t, srv)
			if len(got.lines) != 3 || got.lines[0] != "RELOADING=1" || got.lines[2] != "STATUS=reloading" {
				t.Fatalf("reloading: %q", got.lines)
			}
			usec, err := strconv.ParseInt(strings.TrimPrefix(got.lines[1], "MONOTONIC_USEC="), 10, 64)
			if err != nil || usec < before || usec > after {
				t.Errorf("reloading: %q, want MONOTONIC_USEC in [%d, %d]", got.lines[1], before, after)
			}
		})
	}
}

func TestSDNotifyUnsetIsNoop(t *testing.T) {
	n, err := sdNotifierFromEnv(sdEnv(nil), os.Getpid())
	if err != nil || n != nil {
		t.Fatalf("NOTIFY_SOCKET unset: got %v, %v; want nil, nil", n, err)
	}
	for name, err := range map[string]error{
		"Ready": n.Ready("x"), "Reloading": n.Reloading("x"), "Stopping": n.Stopping("x"),
		"Status": n.Status("x"), "ReadyAsMain": n.ReadyAsMain("x"), "MainPID": n.MainPID(), "ExtendTimeout": n.ExtendTimeout(time.Second),
		"Notify": n.Notify("READY=1"),
	} {
		if err != nil {
			t.Errorf("%s on a nil notifier: %v", name, err)
		}
	}
	if d := n.WatchdogInterval(); d != 0 {
		t.Errorf("WatchdogInterval: %v", d)
	}
	n.Watchdog(t.Context(), func() bool { t.Error("healthy called without a watchdog"); return true }, nil)
}

func TestSDNotifyEnvErrors(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"NOTIFY_SOCKET": "run/notify"}, `NOTIFY_SOCKET="run/notify": expected an absolute path or an abstract socket name starting with @`},
		{map[string]string{"NOTIFY_SOCKET": "vsock:2:1234"}, `NOTIFY_SOCKET="vsock:2:1234": expected an absolute path`},
		{map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "ten"}, `WATCHDOG_USEC="ten": expected a positive number of microseconds`},
		{map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "0"}, `WATCHDOG_USEC="0": expected a positive number`},
		{map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "x"}, `WATCHDOG_PID="x": expected a process id`},
	} {
		_, err := sdNotifierFromEnv(sdEnv(tc.env), 1)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.env, err, tc.want)
		}
	}
}

func TestSDNotifySocketGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone")
	n, err := sdNotifierFromEnv(sdEnv(map[string]string{"NOTIFY_SOCKET": path}), 1)
	if err != nil {
		t.Fatal(err)
	}
	err = n.Ready("")
	if err == nil || !strings.Contains(err.Error(), "systemd notify socket "+path) {
		t.Fatalf("got %v, want an error naming the socket", err)
	}
}

func TestSDNotifyWatchdogInterval(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  map[string]string
		want time.Duration
	}{
		{"not set", map[string]string{"NOTIFY_SOCKET": "/run/n"}, 0},
		{"for any pid", map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000"}, 30 * time.Second},
		{"for this pid", map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 30 * time.Second},
		{"for another pid", map[string]string{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "8"}, 0},
	} {
		n, err := sdNotifierFromEnv(sdEnv(tc.env), 7)
		if err != nil {
			t.Fatal(err)
		}
		if got := n.WatchdogInterval(); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestSDNotifyWatchdogPings runs the ping loop against a real socket: a
// ping per tick while healthy, none when not, and none from a process
// started for another pid until it becomes the main one.
func TestSDNotifyWatchdogPings(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	srv := sdListen(t, addr)
	// The watchdog was set up for pid 100 (the old process of an upgrade);
	// this is pid 200.
	n, err := sdNotifierFromEnv(sdEnv(map[string]string{"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "20000", "WATCHDOG_PID": "100"}), 200)
	if err != nil {
		t.Fatal(err)
	}
	if n.WatchdogInterval() != 0 {
		t.Fatal("a process started for another pid owns the watchdog")
	}
	var calls atomic.Int32
	healthy := func() bool {
		c := calls.Add(1)
		return c != 2 // unhealthy on the second check only
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); n.Watchdog(ctx, healthy, nil) }()

	if err := n.ReadyAsMain(""); err != nil {
		t.Fatal(err)
	}
	if got := sdRecv(t, srv).lines; !slices.Equal(got, []string{"MAINPID=200", "READY=1"}) {
		t.Fatalf("handover: %q", got)
	}
	if calls.Load() != 0 {
		t.Fatalf("healthy checked %d times before this process owned the watchdog", calls.Load())
	}
	if n.WatchdogInterval() != 20*time.Millisecond {
		t.Fatalf("interval after ReadyAsMain: %v", n.WatchdogInterval())
	}
	for i := range 3 {
		if got := sdRecv(t, srv).lines; !slices.Equal(got, []string{"WATCHDOG=1"}) {
			t.Fatalf("ping %d: %q", i, got)
		}
	}
	cancel()
	// Count the pings while the loop stops, not after: the socket queues
	// 10 datagrams (net.unix.max_dgram_qlen), and a ping sent into a full
	// queue blocks the loop until it is read (this test descheduled for
	// 100ms on a loaded machine left it waiting forever). Once the loop
	// has returned, every ping it sent is queued: read until none is left.
	pings := 3
	stopped := false
	for deadline := time.Now().Add(testkit.Deadline); ; {
		if time.Now().After(deadline) {
			t.Fatalf("the ping loop did not stop within %s of its context's end", testkit.Deadline)
		}
		if err := srv.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := srv.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				t.Fatal(err)
			}
			if stopped {
				break
			}
			select {
			case <-done:
				stopped = true // one more read: what it sent last
			default:
			}
			continue
		}
		if string(buf[:n]) != "WATCHDOG=1\n" {
			t.Fatalf("unexpected message %q", buf[:n])
		}
		pings++
	}
	// One ping per healthy check; the unhealthy second check sent none.
	if c := int(calls.Load()); pings != c-1 {
		t.Errorf("%d pings for %d health checks (one unhealthy), want %d", pings, c, c-1)
	}
}

// TestSDNotifyProcessEnv reads the real environment, as `gitedge run` will.
func TestSDNotifyProcessEnv(t *testing.T) {
	addr := filepath.Join(t.TempDir(), "notify")
	srv := sdListen(t, addr)
	t.Setenv("NOTIFY_SOCKET", addr)
	t.Setenv("WATCHDOG_USEC", "5000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := newSDNotifier()
	if err != nil {
		t.Fatal(err)
	}
	if d := n.WatchdogInterval(); d != 5*time.Second {
		t.Errorf("WatchdogInterval: %v", d)
	}
	if err := n.ReadyAsMain(""); err != nil {
		t.Fatal(err)
	}
	want := []string{"MAINPID=" + strconv.Itoa(os.Getpid()), "READY=1"}
	if got := sdRecv(t, srv).lines; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// Left in place for a process started by an upgrade.
	if os.Getenv("NOTIFY_SOCKET") != addr {
		t.Error("NOTIFY_SOCKET was removed from the environment")
	}
}
