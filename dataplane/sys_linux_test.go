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
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if n, err = rawRead(fb, buf); err != syscall.EAGAIN {
			break
		}
	}
	if err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("read: %q, %v", buf[:n], err)
	}

	// The peer resets (SO_LINGER 0), and writes fail without a signal.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGPIPE)
	defer signal.Stop(sig)
	a.SetLinger(0)
	a.Close()
	var werr error
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, werr = rawWrite(fb, []byte("x")); werr != nil {
			break
		}
	}
	if !errors.Is(werr, syscall.EPIPE) && !errors.Is(werr, syscall.ECONNRESET) {
		t.Fatalf("write to a reset peer: %v, want EPIPE or ECONNRESET", werr)
	}
	// A second write after the reset is the one that raises SIGPIPE
	// without MSG_NOSIGNAL.
	if _, werr = rawWrite(fb, []byte("x")); !errors.Is(werr, syscall.EPIPE) {
		t.Fatalf("second write to a reset peer: %v, want EPIPE", werr)
	}
	select {
	case s := <-sig:
		t.Fatalf("a write raised %v", s)
	case <-time.After(50 * time.Millisecond):
	}

	// An orderly end reads as 0 bytes.
	c, d := tcpPair(t)
	c.Close()
	fd := rawFD(t, d)
	for deadline := time.Now().Add(waitFor); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if n, err = rawRead(fd, buf); err != syscall.EAGAIN {
			break
		}
	}
	if n != 0 || err != nil {
		t.Fatalf("read at the end: %d, %v; want 0, nil", n, err)
	}
}

// BenchmarkSocketCalls compares read(2) and write(2) with recv and send
// (what rawRead and rawWrite make) on a loopback TCP connection: a read
// that finds nothing, and a write followed by the read of its bytes. The
// two kinds alternate in batches of 256 calls, so that a machine whose
// speed drifts weighs on both alike; each is reported in ns a call.
//
//	go test -run '^$' -bench BenchmarkSocketCalls -cpu 1 -benchtime 200000x ./dataplane/
func BenchmarkSocketCalls(b *testing.B) {
	x, y := tcpPair(b)
	fx, fy := rawFD(b, x), rawFD(b, y)
	buf := make([]byte, 16<<10)
	msg := make([]byte, 200)
	read := func(fd int, p []byte) {
		unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	}
	write := func(fd int, p []byte) {
		unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	}
	const batch = 256
	var took [4]time.Duration
	calls := 0
	for b.Loop() {
		t0 := time.Now()
		for range batch {
			read(fy, buf)
		}
		t1 := time.Now()
		for range batch {
			rawRead(fy, buf)
		}
		t2 := time.Now()
		for range batch {
			write(fx, msg)
			read(fy, buf)
		}
		t3 := time.Now()
		for range batch {
			rawWrite(fx, msg)
			rawRead(fy, buf)
		}
		t4 := time.Now()
		took[0] += t1.Sub(t0)
		took[1] += t2.Sub(t1)
		took[2] += t3.Sub(t2)
		took[3] += t4.Sub(t3)
		calls += batch
	}
	for i, unit := range []string{"ns/empty-read", "ns/empty-recv", "ns/write+read", "ns/send+recv"} {
		b.ReportMetric(float64(took[i].Nanoseconds())/float64(calls), unit)
	}
	b.ReportMetric(0, "ns/op")
}
