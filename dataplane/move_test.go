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
