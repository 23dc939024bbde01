package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
	"golang.org/x/sys/unix"
)

// TestAcceptedAddresses: the raw accept names the client and the address
// it connected to, for a listener bound to one address (known from the
// bind) and for a wildcard one (asked of the kernel), over IPv4 and IPv6:
// a server behind a PROXY v1 backend sees both.
func TestAcceptedAddresses(t *testing.T) {
	t.Parallel()
	hello := clientHelloBytes(t, "a.test")
	server := rawServer(t, func(c net.Conn) {
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(waitFor))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return
		}
		_, _ = io.WriteString(c, line)
	})
	for _, tc := range []struct {
		name string
		bind netip.Addr // invalid: wildcard
		dial string     // the address the client dials, without the port
		fam  string
	}{
		{"ipv4 address", loopback, "127.0.0.1", "TCP4"},
		{"ipv6 address", netip.MustParseAddr("::1"), "::1", "TCP6"},
		{"wildcard over ipv4", netip.Addr{}, "127.0.0.1", "TCP4"},
		{"wildcard over ipv6", netip.Addr{}, "::1", "TCP6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := tlsListener("tls", "b")
			l.Bind = Bind{Addr: tc.bind}
			be := backendOf("b", srv("s1", server))
			be.ProxyProtocol = ProxyV1
			p := startProxy(t, Config{Listeners: []Listener{l}, Backends: []Backend{be}})
			_, port, err := net.SplitHostPort(p.addr(t, "tls"))
			if err != nil {
				t.Fatal(err)
			}
			c, err := net.Dial("tcp", net.JoinHostPort(tc.dial, port))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(waitFor))
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				t.Fatalf("no PROXY line back: %v", err)
			}
			cl := c.LocalAddr().(*net.TCPAddr).AddrPort()
			want := fmt.Sprintf("PROXY %s %s %s %d %s\r\n", tc.fam, cl.Addr(), tc.dial, cl.Port(), port)
			if got != want {
				t.Fatalf("server saw %q, want %q", got, want)
			}
		})
	}
}

// emfileChildEnv starts TestEMFILEChild's role.
const emfileChildEnv = "GITEDGE_EMFILE_CHILD"

// TestAcceptSurvivesEMFILE: a proxy out of descriptors keeps its
// listener, retries, and serves the connections that waited once
// descriptors are free again. The proxy runs in a child process (this
// test binary again), whose descriptor limit the test lowers and raises.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	t.Parallel()
	ch := startChild(t, "TestEMFILEChild", emfileChildEnv+"=1")
	addr := ch.next(t, "proxy ")
	// More connections than the child has descriptors left: the kernel
	// queues them; the proxy's accept fails with EMFILE.
	const n = 8
	conns := dialMany(t, addr, n)
	ch.next(t, "emfile")
	if _, err := io.WriteString(ch.in, "raise\n"); err != nil {
		t.Fatal(err)
	}
	ch.next(t, "raised")
	for i, c := range conns {
		_ = c.SetDeadline(time.Now().Add(3 * waitFor))
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		status, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || !strings.HasPrefix(status, "HTTP/1.1 200") {
			t.Fatalf("connection %d, queued while the proxy was out of descriptors: %q %v", i, status, err)
		}
	}
}

// TestEMFILEChild is TestAcceptSurvivesEMFILE's child process; it does
// nothing in a normal test run.
func TestEMFILEChild(t *testing.T) {
	if os.Getenv(emfileChildEnv) == "" {
		return // only the parent test runs it, as a child process
	}
	a := startHTTPBackend(t, "a1", false)
	sink := &emfileWatch{Handler: slog.NewTextHandler(os.Stderr, nil), seen: make(chan struct{})}
	p := startProxy(t, Config{
		Listeners: []Listener{httpListener("http", "a")},
		Backends:  []Backend{backendOf("a", srv("a1", a.addr))},
	}, func(o *Options) { o.Logger = slog.New(sink) })
	addr := p.addr(t, "http")
	// Warm the backend pool so serving needs one descriptor (the client's).
	if code, _ := get(t, addr, "a.test", "/"); code != 200 {
		t.Fatalf("before: %d", code)
	}
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	open, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	// No descriptor left (ReadDir's own is closed again by now).
	low := orig
	low.Cur = uint64(len(open) - 1)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("proxy %s\n", addr)
	select {
	case <-sink.seen:
	case <-time.After(3 * waitFor):
		t.Fatal("the proxy's accept did not fail with EMFILE")
	}
	fmt.Println("emfile")
	sc := bufio.NewScanner(os.Stdin)
	if !sc.Scan() || sc.Text() != "raise" {
		t.Fatalf("expected raise, got %q", sc.Text())
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	fmt.Println("raised")
	for sc.Scan() { // until the parent closes stdin
	}
}

// emfileWatch is a log handler that signals the first accept retry
// after EMFILE.
type emfileWatch struct {
	slog.Handler
	once sync.Once
	seen chan struct{}
}

func (w *emfileWatch) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == "accept failed, retrying" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "error" && strings.Contains(a.Value.String(), "too many open files") {
				w.once.Do(func() { close(w.seen) })
			}
			return true
		})
	}
	return w.Handler.Handle(ctx, r)
}

func (w *emfileWatch) WithAttrs(as []slog.Attr) slog.Handler {
	return &emfileWatch{Handler: w.Handler.WithAttrs(as), seen: w.seen}
}

// TestAcceptRecoversFromListenerError: an accept error that is the
// listener's (here EINVAL: the socket stopped listening) turns the node
// unhealthy, and it is healthy and serving again once the socket listens
// again, without a restart. The accept loop used to end for good.
func TestAcceptRecoversFromListenerError(t *testing.T) {
	s1 := startHTTPBackend(t, "s1", false)
	p := startProxy(t, Config{Listeners: []Listener{httpListener("http", "be")}, Backends: []Backend{backendOf("be", srv("s1", s1.addr))}})
	addr := p.addr(t, "http")
	if code, _ := get(t, addr, "x", "/"); code != 200 {
		t.Fatalf("before: %d", code)
	}
	p.mu.Lock()
	var rc syscall.RawConn
	for _, s := range p.socks {
		rc, _ = s.ln.SyscallConn()
	}
	p.mu.Unlock()
	control := func(f func(fd int) error) {
		t.Helper()
		var ferr error
		if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil || ferr != nil {
			t.Fatal(err, ferr)
		}
	}
	// A listening socket shut down stops listening (accept: EINVAL) and
	// keeps its port, so it can listen again.
	control(func(fd int) error { return unix.Shutdown(fd, unix.SHUT_RD) })
	testkit.Poll(t, waitFor, func() string {
		if p.Healthy() {
			return "the node still reports healthy with its listener failing"
		}
		return ""
	})
	control(func(fd int) error {
		if err := unix.Listen(fd, 128); err != nil {
			return err
		}
		// Bound to port 0, the socket lost its port with the shutdown.
		sa, err := unix.Getsockname(fd)
		if err == nil {
			addr = fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
		}
		return err
	})
	if code, _ := get(t, addr, "x", "/"); code != 200 {
		t.Fatalf("after listening again: %d", code)
	}
	testkit.Poll(t, waitFor, func() string {
		if !p.Healthy() {
			return "the node still reports unhealthy though its listener accepts"
		}
		return ""
	})
}

// TestOnGrid: deadlines round up to the grid, never down.
func TestOnGrid(t *testing.T) {
	t.Parallel()
	for _, at := range []int64{0, 1, deadlineGrid - 1, deadlineGrid, deadlineGrid + 1, time.Now().UnixNano()} {
		g := onGrid(at)
		if g < at || g-at >= deadlineGrid || g%deadlineGrid != 0 || onGrid(g) != g {
			t.Errorf("onGrid(%d) = %d", at, g)
		}
	}
}

// TestCloserBatch: the first socket of a batch kicks the sweeper, and
// run closes the batch.
func TestCloserBatch(t *testing.T) {
	t.Parallel()
	k := newCloser()
	var files []*os.File
	for range 2 {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Close(); w.Close() })
		files = append(files, r, w)
		k.close(dialedConn{r}, dialedConn{w})
	}
	select {
	case <-k.kick:
	default:
		t.Fatal("a batch did not kick the sweeper")
	}
	if !k.pending() {
		t.Fatal("nothing pending")
	}
	k.run()
	for _, f := range files {
		if _, err := f.Stat(); err == nil {
			t.Fatalf("%s not closed by run", f.Name())
		}
	}
	if k.pending() {
		t.Fatal("still pending after run")
	}
}

// TestTunnelSocketsClosed: a running proxy closes a finished tunnel's
// sockets (on its sweeper's tick), whether the tunnel ended with both
// EOFs or with one peer resetting; a reset reaches the other peer as an
// EOF at once, not at the tunnel's idle timeout.
func TestTunnelSocketsClosed(t *testing.T) {
	t.Parallel()
	hello := clientHelloBytes(t, "a.test")
	for _, tc := range []struct {
		name         string
		serverResets bool
		clientResets bool
	}{
		{name: "both close"},
		{name: "server resets", serverResets: true},
		{name: "client resets", clientResets: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			serverEnd := make(chan error, 1)
			server := rawServer(t, func(c net.Conn) {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(waitFor))
				if _, err := io.ReadFull(c, make([]byte, len(hello))); err != nil {
					serverEnd <- err
					return
				}
				_, _ = io.WriteString(c, "answer\n")
				if tc.serverResets {
					_ = c.(*net.TCPConn).SetLinger(0)
					serverEnd <- nil
					return
				}
				if tc.clientResets {
					// Wait for the client's end, passed on as an EOF.
					_, err := io.Copy(io.Discard, c)
					serverEnd <- err
					return
				}
				serverEnd <- nil
			})
			// An idle timeout past the test's deadline: only the end of
			// one peer's connection may end the other's.
			b := backendOf("b", srv("s1", server))
			b.IdleTimeout = time.Minute
			p := startProxy(t, Config{
				Listeners: []Listener{tlsListener("tls", "b")},
				Backends:  []Backend{b},
			})
			c, err := net.Dial("tcp", p.addr(t, "tls"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(waitFor))
			if _, err := c.Write(hello); err != nil {
				t.Fatal(err)
			}
			if tc.clientResets {
				ans := make([]byte, len("answer\n"))
				if _, err := io.ReadFull(c, ans); err != nil || string(ans) != "answer\n" {
					t.Fatalf("client read %q, %v", ans, err)
				}
				_ = c.(*net.TCPConn).SetLinger(0)
				c.Close()
			} else {
				// The server's end reaches the client, a reset as an EOF
				// (the proxy shuts the client's side down).
				ans, err := io.ReadAll(c)
				if string(ans) != "answer\n" || err != nil {
					t.Fatalf("client read %q, %v; want the answer, then an EOF", ans, err)
				}
				c.Close()
			}
			if err := <-serverEnd; err != nil {
				t.Fatalf("server: %v; want the client's end as an EOF", err)
			}
			testkit.Poll(t, waitFor, func() string {
				if n := p.metric(t, MetricActiveConns, map[string]string{"listener": "tls"}); n != 0 {
					return fmt.Sprintf("%v connections open", n)
				}
				if p.closer.pending() {
					return "sockets wait to be closed"
				}
				return ""
			})
		})
	}
}
