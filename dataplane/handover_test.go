package dataplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestInheritSockets hands a proxy's listening sockets to another, as an
// upgrade in place does between two processes: the second serves on the
// same port without binding it again, and keeps serving once the first has
// stopped and closed its own descriptors.
func TestInheritSockets(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	port := testkit.QuietPort(t) // bound again by the proxy: not in the ephemeral range
	cfg := Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{backendOf("a", srv("a1", a.addr))}}
	cfg.Listeners[0].Bind = mustBind(t, port)

	old := New(Options{Logger: testkit.Logger(t, slog.LevelInfo)})
	if err := old.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	octx, ostop := context.WithCancel(context.Background())
	odone := make(chan error, 1)
	go func() { odone <- old.Run(octx) }()
	<-old.Ready()

	socks := old.Sockets()
	if len(socks) != 1 || socks[0].Key != "tcp4 "+port {
		t.Fatalf("Sockets: %+v", socks)
	}
	// What the new process receives: a duplicate of the descriptor.
	f, err := socks[0].Listener.File()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	next := New(Options{Logger: testkit.Logger(t, slog.LevelInfo), Inherit: func(key string) *net.TCPListener {
		asked = append(asked, key)
		if key == socks[0].Key {
			return ln.(*net.TCPListener)
		}
		return nil
	}})
	if err := next.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply on the inherited socket: %v", err)
	}
	if len(asked) != 1 {
		t.Errorf("Inherit asked for %q", asked)
	}
	nctx, nstop := context.WithCancel(context.Background())
	ndone := make(chan error, 1)
	go func() { ndone <- next.Run(nctx) }()
	// Run logs through t while it stops: the test must outlive it.
	defer func() {
		nstop()
		if err := <-ndone; err != nil {
			t.Error(err)
		}
	}()
	<-next.Ready()

	ostop()
	if err := <-odone; err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if code, body := get(t, port, "a.test", "/"); code != 200 || body != "a1 a.test" {
			t.Fatalf("request %d after the old proxy stopped: %d %q", i, code, body)
		}
	}
}

// TestDrainServesFirstRequest: a connection accepted just before the
// listener stops accepting (the proxy stopping for an upgrade in place, or
// a reload that removes the listener), whose request or ClientHello
// arrives after the drain began, is served (http: with Connection: close)
// rather than closed without an answer; a connection that sends nothing
// is closed once the grace is over, not before. Both whether they still
// wait with a goroutine or were parked already (silent past the linger).
func TestDrainServesFirstRequest(t *testing.T) {
	for _, mode := range []Mode{ModeHTTP, ModeTLS} {
		for _, parked := range []bool{false, true} {
			for _, reload := range []bool{false, true} {
				name := string(mode)
				if parked {
					name += "/parked"
				}
				if reload {
					name += "/reload"
				}
				t.Run(name, func(t *testing.T) { testDrainServesFirst(t, mode, parked, reload) })
			}
		}
	}
}

func testDrainServesFirst(t *testing.T, mode Mode, parked, reload bool) {
	var cfg Config
	if mode == ModeHTTP {
		a := startHTTPBackend(t, "a1", false)
		cfg = Config{Listeners: []Listener{httpListener("l", "a")}, Backends: []Backend{backendOf("a", srv("a1", a.addr))}}
	} else {
		a := startTLSBackend(t, "a1", false)
		cfg = Config{Listeners: []Listener{tlsListener("l", "a")}, Backends: []Backend{backendOf("a", srv("a1", a))}}
	}
	// A listener that stays, so that a reload has something to keep.
	cfg.Listeners = append(cfg.Listeners, httpListener("other", "a"))
	p := startProxy(t, cfg)
	addr, _ := p.Addr("l")
	dialed := time.Now() // before the accepts, where the grace starts
	c := dialClient(t, addr.String())
	silent := dialClient(t, addr.String())
	// Both accepted and waiting for a first request.
	for deadline := time.Now().Add(waitFor); ; time.Sleep(5 * time.Millisecond) {
		p.mu.Lock()
		n := 0
		for _, s := range p.socks {
			s.mu.Lock()
			n += len(s.conns)
			s.mu.Unlock()
		}
		p.mu.Unlock()
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d connections accepted, want 2", n)
		}
	}
	if parked {
		waitParked(t, p.Proxy, 2)
	}
	start := time.Now()
	if reload {
		// The proxy runs on, its sweeper too.
		cfg.Listeners = cfg.Listeners[1:]
		if err := p.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	} else {
		p.stop()
	}
	for deadline := time.Now().Add(waitFor); ; time.Sleep(5 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr.String()); err != nil {
			break
		} else {
			c.Close()
		}
		if time.Now().After(deadline) {
			t.Fatal("still accepting after the drain began")
		}
	}
	if mode == ModeHTTP {
		if r := c.do("GET", "a.test", "/", ""); r.StatusCode != 200 || !r.Close || bodyOf(r) != "a1 a.test" {
			t.Fatalf("first request after the drain began: %d close=%v", r.StatusCode, r.Close)
		}
	} else {
		tc := tls.Client(c.c, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
		line, err := bufio.NewReader(tc).ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "a1 sni=a.test") {
			t.Fatalf("TLS after the drain began: %q %v", line, err)
		}
		tc.Close()
	}
	if _, err := io.ReadAll(silent.c); err != nil {
		t.Fatalf("the silent connection: %v", err)
	}
	if d := time.Since(start); d > time.Second+waitFor/2 {
		t.Errorf("the silent connection closed after %v", d)
	}
	if d := time.Since(dialed); d < freshGrace {
		t.Errorf("the silent connection closed %v after its accept, before its grace of %v", d, freshGrace)
	}
}

func mustBind(t *testing.T, s string) Bind {
	t.Helper()
	b, err := ParseBind(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
