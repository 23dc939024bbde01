package dataplane

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawFD returns c's descriptor for raw calls; c stays open (and
// non-blocking) as long as the test keeps c.
func rawFD(t testing.TB, c interface {
	SyscallConn() (syscall.RawConn, error)
}) int {
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// TestRawReadWrite: rawRead and rawWrite (recv and send) move bytes,
// tell an empty socket (EAGAIN) and an end (0), and a write to a peer
// that reset fails with EPIPE or ECONNRESET without raising SIGPIPE.
func TestRawReadWrite(t *testing.T) {
	a, b := tcpPair(t)
	fa, fb := rawFD(t, a), rawFD(t, b)
	buf := make([]byte, 64)
	if _, err := rawRead(fb, buf); err != syscall.EAGAIN {
		t.Fatalf("read of an empty socket: %v, want EAGAIN", err)
	}
	if n, err := rawWrite(fa, []byte("hello")); n != 5 || err != nil {
		t.Fatalf("write: %d, %v", n, err)
	}
	var n int
	var err error
	eventually(t, "the bytes arrive", func() bool {
		n, err = rawRead(fb, buf)
		return err != syscall.EAGAIN
	})
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %q, %v", buf[:n], err)
	}

	// The peer resets (SO_LINGER 0), and writes fail without a signal.
	a.SetLinger(0)
	a.Close()
	var werr error
	eventually(t, "a write fails after the reset", func() bool {
		_, werr = rawWrite(fb, []byte("x"))
		return werr != nil
	})
	if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("write to a reset peer: %v, want EPIPE or ECONNRESET", werr)
	}
	// A second write after the reset is the one that raises SIGPIPE
	// without MSG_NOSIGNAL. The signal is the process's: it is watched
	// only around that write, so that another test's socket is unlikely
	// to be the one heard.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGPIPE)
	_, werr = rawWrite(fb, []byte("x"))
	select {
	case s := <-sig:
		signal.Stop(sig)
		t.Fatalf("a write raised %v", s)
	case <-time.After(50 * time.Millisecond):
	}
	signal.Stop(sig)
	if !errors.Is(werr, syscall.EPIPE) {
		t.Fatalf("second write to a reset peer: %v, want EPIPE", werr)
	}

	// An orderly end reads as 0 bytes.
	c, d := tcpPair(t)
	c.Close()
	fd := rawFD(t, d)
	eventually(t, "the end arrives", func() bool {
		n, err = rawRead(fd, buf)
		return err != syscall.EAGAIN
	})
	if n != 0 || err != nil {
		t.Fatalf("read at the end: %d, %v; want 0, nil", n, err)
	}
}

// BenchmarkSocketCalls compares read(2) and write(2) with recv and send
// (what rawRead and rawWrite make) on a loopback TCP connection: a read
// that finds nothing, and a write followed by the read of its bytes. The
// two kinds alternate in batches of 256 calls, each going first every
// other iteration, so that neither a machine whose speed drifts nor the
// order favours one; each is reported in ns a call.
//
//	go test -run '^$' -bench BenchmarkSocketCalls -cpu 1 -benchtime 400x -count 6 ./dataplane/
func BenchmarkSocketCalls(b *testing.B) {
	x, y := tcpPair(b)
	fx, fy := rawFD(b, x), rawFD(b, y)
	buf := make([]byte, 16<<10)
	msg := make([]byte, 200)
	const batch = 256
	kinds := [4]func(){
		func() { // a read that finds nothing, read(2)
			for range batch {
				unix.RawSyscall(unix.SYS_READ, uintptr(fy), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			}
		},
		func() { // the same with recv
			for range batch {
				rawRead(fy, buf)
			}
		},
		func() { // write(2), then read(2) of its bytes
			for range batch {
				unix.RawSyscall(unix.SYS_WRITE, uintptr(fx), uintptr(unsafe.Pointer(&msg[0])), uintptr(len(msg)))
				unix.RawSyscall(unix.SYS_READ, uintptr(fy), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
			}
		},
		func() { // the same with send and recv
			for range batch {
				rawWrite(fx, msg)
				rawRead(fy, buf)
			}
		},
	}
	var took [4]time.Duration
	timed := func(k int) {
		t := time.Now()
		kinds[k]()
		took[k] += time.Since(t)
	}
	calls, odd := 0, false
	for b.Loop() {
		for _, pair := range [][2]int{{0, 1}, {2, 3}} {
			first, second := pair[0], pair[1]
			if odd {
				first, second = second, first
			}
			timed(first)
			timed(second)
		}
		odd = !odd
		calls += batch
	}
	for i, unit := range []string{"ns/empty-read", "ns/empty-recv", "ns/write+read", "ns/send+recv"} {
		b.ReportMetric(float64(took[i].Nanoseconds())/float64(calls), unit)
	}
	b.ReportMetric(0, "ns/op")
}
