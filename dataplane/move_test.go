package dataplane

import (
	"bytes"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t testing.TB) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a.(*net.TCPConn), b.(*net.TCPConn)
}

// sideOf is c as an initialised side with this timeout.
func sideOf(t testing.TB, c sockConn, timeout time.Duration) *side {
	t.Helper()
	s := new(side)
	if err := s.init(c, timeout); err != nil {
		t.Fatal(err)
	}
	return s
}

// answerOK answers "ok" to each request of size bytes.
func answerOK(c *net.TCPConn, size int) {
	buf := make([]byte, size)
	for {
		if _, err := io.ReadFull(c, buf); err != nil {
			return
		}
		if _, err := c.Write([]byte("ok")); err != nil {
			return
		}
	}
}

// TestWriteRead: a request written under the wait for its answer gets
// the answer however soon it comes (an answer that came before the wait
// began would be a lost wake-up: the read would time out), the whole of
// a request too big for the socket goes out before the answer is read,
// and a peer that closed or reset ends the wait at once.
func TestWriteRead(t *testing.T) {
	cases := []struct {
		name  string
		size  int // request bytes
		reqs  int
		peer  func(c *net.TCPConn, size int) // answers each request
		want  string
		isErr bool
	}{
		{
			name: "instant answers", size: 100, reqs: 2000, want: "ok",
			peer: answerOK,
		},
		{
			name: "request larger than the socket takes", size: 8 << 20, reqs: 2, want: "ok",
			peer: answerOK,
		},
		{
			name: "peer closes after a request larger than the socket takes", size: 8 << 20, reqs: 1, isErr: true,
			peer: func(c *net.TCPConn, size int) {
				io.ReadFull(c, make([]byte, size))
				c.Close()
			},
		},
		{
			name: "peer closed before the request", size: 100, reqs: 1, isErr: true,
			peer: func(c *net.TCPConn, size int) { c.Close() },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tcpPair(t)
			go tc.peer(b, tc.size)
			if tc.isErr {
				time.Sleep(50 * time.Millisecond) // the FIN is in before the write
			}
			var s side
			if err := s.init(a, time.Minute); err != nil {
				t.Fatal(err)
			}
			req := bytes.Repeat([]byte{'x'}, tc.size)
			buf := make([]byte, 64)
			for i := range tc.reqs {
				s.dl.read(a, time.Now().UnixNano(), 10*time.Second)
				written, n, err := s.writeRead(req, buf)
				if tc.isErr {
					// The closed peer resets the request; either way the
					// wait ends with an error or an EOF, not a timeout.
					if err == nil || isTimeout(err) {
						t.Fatalf("after the peer closed: %d bytes, %v; want an EOF or a reset", n, err)
					}
					if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
						t.Fatalf("after the peer closed: %v", err)
					}
					return
				}
				if err != nil {
					t.Fatalf("request %d: %v (written %d of %d)", i, err, written, tc.size)
				}
				if written != tc.size {
					t.Fatalf("request %d: written %d of %d", i, written, tc.size)
				}
				for n < len(tc.want) {
					m, err := s.read(buf[n:])
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					n += m
				}
				if got := string(buf[:n]); got != tc.want {
					t.Fatalf("request %d: answer %q, want %q", i, got, tc.want)
				}
			}
		})
	}
}

// TestMoveParkAsked: a parking direction's wait that the sweeper asks to
// park (a read deadline in the past) returns errParkAsked; one that ends
// any other way meanwhile (its conn closed) returns that error, never a
// request to park a descriptor that may be gone.
func TestMoveParkAsked(t *testing.T) {
	for _, tc := range []struct {
		name string
		// ask interrupts the idle wait on c as the sweeper would, or not.
		ask  func(f *parkFields, c *net.TCPConn)
		want error
	}{
		{"read deadline (the sweeper)", func(f *parkFields, c *net.TCPConn) { f.askPark(c) }, errParkAsked},
		{"closed while asked", func(f *parkFields, c *net.TCPConn) {
			f.parkReq.Store(true)
			if f.state.CompareAndSwap(stIdle, stPoking) {
				c.Close()
				f.state.Store(stPoked)
			}
		}, net.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, _ := tcpPair(t)
			b, _ := tcpPair(t)
			f := &parkFields{parkIdx: -1}
			m := &mover{src: sideOf(t, a, time.Minute), dst: sideOf(t, b, time.Minute), park: f, lingering: &lingerCount{kick: make(chan struct{}, 1)}}
			m.bind()
			errc := make(chan error, 1)
			go func() {
				_, err := m.move(-1)
				errc <- err
			}()
			for end := time.Now().Add(waitFor); f.state.Load() != stIdle; time.Sleep(time.Millisecond) {
				if time.Now().After(end) {
					t.Fatal("the move never waited")
				}
			}
			tc.ask(f, a)
			select {
			case err := <-errc:
				if !errors.Is(err, tc.want) {
					t.Fatalf("move: %v, want %v", err, tc.want)
				}
			case <-time.After(waitFor):
				t.Fatal("the move went on waiting")
			}
		})
	}
}

// TestMoveAfterSlowWrite: a source's read timeout runs from when the move
// waits for it, not from the start of a chunk that took longer than the
// timeout to drain into a slow reader: a source that sends again soon
// after keeps its move.
func TestMoveAfterSlowWrite(t *testing.T) {
	const first = 600 << 10
	src, srcPeer := tcpPair(t)
	dst, dstPeer := tcpPair(t)
	src.SetReadBuffer(2 << 20) // the chunk is all of first
	dst.SetWriteBuffer(16 << 10)
	dstPeer.SetReadBuffer(64 << 10)
	m := mover{src: sideOf(t, src, 500*time.Millisecond), dst: sideOf(t, dst, time.Minute)}
	m.bind()
	read, sent := make(chan struct{}), make(chan struct{})
	go func() {
		srcPeer.Write(make([]byte, first))
		close(sent)
		select {
		case <-read:
		case <-time.After(waitFor):
		}
		time.Sleep(20 * time.Millisecond)
		srcPeer.Write([]byte("end"))
		srcPeer.CloseWrite()
	}()
	go func() {
		// About 400 KB/s: the chunk takes over a second to drain.
		buf := make([]byte, 4<<10)
		dstPeer.SetReadDeadline(time.Now().Add(waitFor))
		for got := 0; ; {
			n, err := dstPeer.Read(buf)
			if got < first && got+n >= first {
				close(read)
			}
			got += n
			if err != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	<-sent
	time.Sleep(20 * time.Millisecond) // all of first in: one long chunk after the first read
	start := time.Now()
	if n, err := m.move(-1); n != first+3 || err != nil {
		t.Fatalf("moved %d of %d, then %v after %v (read timeout 500ms)", n, first+3, err, time.Since(start))
	}
}
