package dataplane

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// reloadConfigs returns two configs that differ the way the bench's
// reloads do (B adds d.test) plus a listener that comes and goes.
func reloadConfigs(a, b, def, ta netip.AddrPort) (Config, Config) {
	base := Config{
		Listeners: []Listener{httpListener("http", "def"), tlsListener("tls", "tls-a")},
		Routes:    []Route{routeHTTP("a", "a", "a.test"), routeHTTP("b", "b", "b.test", "www.b.test")},
		Backends: []Backend{
			backendOf("a", srv("a1", a)), backendOf("b", srv("b1", b)), backendOf("def", srv("def1", def)),
			backendOf("tls-a", srv("ta1", ta)),
		},
	}
	cfgB := base
	cfgB.Listeners = append([]Listener{}, base.Listeners...)
	cfgB.Listeners = append(cfgB.Listeners, httpListener("extra", "a"))
	cfgB.Routes = append([]Route{routeHTTP("d", "a", "d.test")}, base.Routes...)
	cfgB.Backends = append([]Backend{}, base.Backends...)
	cfgB.Backends[0].Servers = []Server{{Name: "a1", Address: a, Weight: 5}}
	return base, cfgB
}

// TestReloadUnderLoad applies 30 reloads while clients loop over kept-alive
// and new connections, HTTP and TLS; not one request may fail.
func TestReloadUnderLoad(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	b := startHTTPBackend(t, "b1", false)
	def := startHTTPBackend(t, "def1", false)
	ta := startTLSBackend(t, "ta1", false)
	cfgA, cfgB := reloadConfigs(a.addr, b.addr, def.addr, ta)
	p := startProxy(t, cfgA)
	httpAddr, tlsAddr := p.addr(t, "http"), p.addr(t, "tls")

	var stop atomic.Bool
	var requests, failures atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		failures.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	var wg sync.WaitGroup
	deadline := time.Now().Add(60 * time.Second) // a bound, not a wait
	for i := range 6 {
		keepAlive := i%2 == 0
		wg.Go(func() {
			var c net.Conn
			var br *bufio.Reader
			for !stop.Load() && time.Now().Before(deadline) {
				if c == nil {
					var err error
					if c, err = net.Dial("tcp", httpAddr); err != nil {
						fail(err)
						return
					}
					br = bufio.NewReader(c)
				}
				// Each request is bounded, not the connection: a loaded
				// machine may stretch the test past waitFor.
				c.SetDeadline(time.Now().Add(waitFor))
				host := []string{"a.test", "b.test", "d.test", "other.test"}[requests.Load()%4]
				hdr := ""
				if !keepAlive {
					hdr = "Connection: close\r\n"
				}
				if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\n%s\r\n", host, hdr); err != nil {
					fail(err)
					return
				}
				r, err := readResponse(br)
				requests.Add(1)
				if err != nil || r.status != 200 {
					fail(fmt.Errorf("host %s: status %d, %v", host, r.status, err))
					return
				}
				if !keepAlive || r.close {
					c.Close()
					c = nil
				}
			}
			if c != nil {
				c.Close()
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for !stop.Load() && time.Now().Before(deadline) {
				raw, err := net.Dial("tcp", tlsAddr)
				if err != nil {
					fail(err)
					return
				}
				raw.SetDeadline(time.Now().Add(waitFor))
				c := tls.Client(raw, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
				line, err := bufio.NewReader(c).ReadString('\n')
				c.Close()
				requests.Add(1)
				if err != nil || !strings.HasPrefix(line, "ta1 ") {
					fail(fmt.Errorf("tls: %q %v", line, err))
					return
				}
			}
		})
	}
	for i := range 30 {
		cfg := cfgA
		if i%2 == 0 {
			cfg = cfgB
		}
		if err := p.Apply(context.Background(), cfg); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		// Let some requests run on this generation (bounded by count).
		target := requests.Load() + 60
		for requests.Load() < target && failures.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	stop.Store(true)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d failed requests of %d during 30 reloads; first: %v", n, requests.Load(), firstErr.Load())
	}
	t.Logf("%d requests, 0 errors, 30 reloads", requests.Load())
	// The last reload (i=29) applied A again: d.test goes to the default.
	if _, body := get(t, httpAddr, "d.test", "/"); !strings.HasPrefix(body, "def1 ") {
		t.Fatalf("after the reloads d.test went to %q", body)
	}
	if v := p.metric(t, MetricReloads, map[string]string{"result": "applied"}); v != 31 {
		t.Errorf("applied reloads %v, want 31", v)
	}
}

type shortResp struct {
	status int
	close  bool
}

// readResponse reads one Content-Length response.
func readResponse(br *bufio.Reader) (shortResp, error) {
	var r shortResp
	line, err := br.ReadString('\n')
	if err != nil {
		return r, err
	}
	r.status = statusOf(line)
	cl := -1
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			return r, err
		}
		if l == "\r\n" {
			break
		}
		k, v, _ := strings.Cut(strings.TrimSpace(l), ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "content-length":
			fmt.Sscan(v, &cl)
		case "connection":
			r.close = strings.EqualFold(v, "close")
		}
	}
	if cl < 0 {
		return r, errors.New("no Content-Length")
	}
	_, err = io.CopyN(io.Discard, br, int64(cl))
	return r, err
}

// TestInFlightKeepsItsBackend: a request in flight across Apply finishes
// on the server it started on; the next request on the same kept-alive
// connection uses the new table.
func TestInFlightKeepsItsBackend(t *testing.T) {
	x := startHTTPBackend(t, "x1", false)
	y := startHTTPBackend(t, "y1", false)
	cfg := func(be string) Config {
		return Config{
			Listeners: []Listener{httpListener("http", "")},
			Routes:    []Route{routeHTTP("a", be, "a.test")},
			Backends:  []Backend{backendOf("x", srv("x1", x.addr)), backendOf("y", srv("y1", y.addr))},
		}
	}
	p := startProxy(t, cfg("x"))
	c := dialClient(t, p.addr(t, "http"))
	io.WriteString(c.c, "GET /hold?id=1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
	select {
	case <-x.started:
	case <-timeAfter():
		t.Fatal("request did not reach x1")
	}
	if err := p.Apply(context.Background(), cfg("y")); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, p.addr(t, "http"), "a.test", "/"); !strings.HasPrefix(body, "y1 ") {
		t.Fatalf("new connection after Apply went to %q", body)
	}
	close(x.hold)
	if body := bodyOf(c.read("GET")); body != "x1 held 1" {
		t.Fatalf("in-flight request answered %q", body)
	}
	if body := bodyOf(c.do("GET", "a.test", "/", "")); !strings.HasPrefix(body, "y1 ") {
		t.Fatalf("next request on the kept-alive connection went to %q", body)
	}
}

// TestIdleKeepAliveTakesNewTable: a kept-alive client connection that sat
// idle across Apply routes its next request by the new table (it must not
// keep the table it loaded when its previous request ended).
func TestIdleKeepAliveTakesNewTable(t *testing.T) {
	x := startHTTPBackend(t, "x1", false)
	y := startHTTPBackend(t, "y1", false)
	cfg := func(be string) Config {
		return Config{
			Listeners: []Listener{httpListener("http", "")},
			Routes:    []Route{routeHTTP("a", be, "a.test")},
			Backends:  []Backend{backendOf("x", srv("x1", x.addr)), backendOf("y", srv("y1", y.addr))},
		}
	}
	p := startProxy(t, cfg("x"))
	c := dialClient(t, p.addr(t, "http"))
	if body := bodyOf(c.do("GET", "a.test", "/", "")); !strings.HasPrefix(body, "x1 ") {
		t.Fatalf("first request went to %q", body)
	}
	// The connection is idle now, waiting for its next request.
	if err := p.Apply(context.Background(), cfg("y")); err != nil {
		t.Fatal(err)
	}
	if body := bodyOf(c.do("GET", "a.test", "/", "")); !strings.HasPrefix(body, "y1 ") {
		t.Fatalf("next request on the idle kept-alive connection went to %q, want y1", body)
	}
}

// TestReloadKeepsStateAndListeners: a listener that stays keeps its socket,
// and a server that stays keeps its counters and health.
func TestReloadKeepsStateAndListeners(t *testing.T) {
	s1 := startHTTPBackend(t, "s1", false)
	s2 := startHTTPBackend(t, "s2", false)
	be := backendOf("be", srv("s1", s1.addr), srv("s2", s2.addr))
	be.HealthCheck = HealthCheck{Type: CheckHTTP, Path: "/health", Interval: 30 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
	cfg := Config{Listeners: []Listener{httpListener("http", "be")}, Backends: []Backend{be}}
	events := make(chan healthEvent, 100)
	p := startProxy(t, cfg, func(o *Options) { healthEvents(o, events) })
	addr := p.addr(t, "http")
	for range 4 {
		get(t, addr, "x", "/")
	}
	s2.sick.Store(true)
	waitHealth(t, events, healthEvent{"be", "s2", false})
	cfg2 := cfg
	cfg2.Routes = []Route{routeHTTP("new", "be", "new.test")}
	cfg2.Backends = []Backend{be}
	cfg2.Backends[0].Retries = 3 // a change to the backend, servers unchanged
	if err := p.Apply(context.Background(), cfg2); err != nil {
		t.Fatal(err)
	}
	if got := p.addr(t, "http"); got != addr {
		t.Fatalf("listener moved from %s to %s: it was reopened", addr, got)
	}
	if v := p.metric(t, MetricServerRequests, map[string]string{"backend": "be", "server": "s1"}); v != 2 {
		t.Errorf("s1 request counter after reload: %v, want 2", v)
	}
	for range 3 {
		if _, body := get(t, addr, "new.test", "/"); !strings.HasPrefix(body, "s1 ") {
			t.Fatalf("s2 is down yet got %q: health lost in the reload", body)
		}
	}
}

func TestReloadFailureKeepsServing(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	cfg := Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{backendOf("a", srv("a1", a.addr))}}
	p := startProxy(t, cfg)
	addr := p.addr(t, "http")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	bad := cfg
	taken := httpListener("taken", "a")
	taken.Bind = Bind{Addr: loopback, Port: uint16(busy.Addr().(*net.TCPAddr).Port)}
	other := httpListener("other", "a")
	bad.Listeners = []Listener{cfg.Listeners[0], other, taken}
	bad.Routes = []Route{routeHTTP("r", "a", "r.test")}
	err = p.Apply(context.Background(), bad)
	if err == nil || !strings.Contains(err.Error(), `listener "taken"`) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Apply with a taken bind: %v", err)
	}
	if _, ok := p.Addr("other"); ok {
		t.Fatal("a listener of the failed config was left open")
	}
	invalid := cfg
	invalid.Routes = []Route{routeHTTP("r", "nope", "r.test")}
	if err := p.Apply(context.Background(), invalid); err == nil || !strings.Contains(err.Error(), `no Backend named "nope"`) {
		t.Fatalf("Apply of an invalid config: %v", err)
	}
	if v := p.metric(t, MetricLastReloadOK, nil); v != 0 {
		t.Errorf("last reload successful = %v after a failure", v)
	}
	if code, body := get(t, addr, "x", "/"); code != 200 || !strings.HasPrefix(body, "a1 ") {
		t.Fatalf("old config stopped serving: %d %q", code, body)
	}
	if !p.Healthy() {
		t.Error("unhealthy after a failed reload")
	}
}

// TestRemovedListenerDrains: a removed listener refuses new connections at
// once, closes idle ones, lets a request in flight finish (with
// Connection: close), and cuts what is left after drainTimeout.
func TestRemovedListenerDrains(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	gone := httpListener("gone", "a")
	gone.DrainTimeout = waitFor
	cut := httpListener("cut", "a")
	cut.DrainTimeout = 300 * time.Millisecond
	cfg := Config{
		Listeners: []Listener{httpListener("http", "a"), gone, cut},
		Backends:  []Backend{backendOf("a", srv("a1", a.addr))},
	}
	p := startProxy(t, cfg)
	goneAddr, cutAddr := p.addr(t, "gone"), p.addr(t, "cut")
	idle := dialClient(t, goneAddr)
	if r := idle.do("GET", "a.test", "/", ""); r.StatusCode != 200 {
		t.Fatal(r.StatusCode)
	}
	busy := dialClient(t, goneAddr)
	io.WriteString(busy.c, "GET /hold?id=gone HTTP/1.1\r\nHost: a.test\r\n\r\n")
	stuck := dialClient(t, cutAddr)
	io.WriteString(stuck.c, "GET /hold?id=cut HTTP/1.1\r\nHost: a.test\r\n\r\n")
	for range 2 {
		select {
		case <-a.started:
		case <-timeAfter():
			t.Fatal("held requests did not arrive")
		}
	}
	cfg.Listeners = cfg.Listeners[:1]
	start := time.Now()
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := net.Dial("tcp", goneAddr); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a removed listener: %v, want connection refused", err)
	}
	if _, err := idle.br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection on a removed listener: %v, want EOF", err)
	}
	// The stuck one is cut after its drain timeout.
	if _, err := stuck.br.ReadByte(); err == nil {
		t.Fatal("stuck request got an answer")
	}
	if el := time.Since(start); el < 250*time.Millisecond || el > 5*time.Second {
		t.Errorf("cut after %v, want about 300ms", el)
	}
	close(a.hold)
	r := busy.read("GET")
	if bodyOf(r) != "a1 held gone" || !r.Close {
		t.Fatalf("in-flight request on the removed listener: %q close=%v", bodyOf(r), r.Close)
	}
	if _, err := busy.br.ReadByte(); err != io.EOF {
		t.Fatalf("after its last response: %v, want EOF", err)
	}
}

// TestRunStopDrains: cancelling Run stops accepting, finishes the request
// in flight, and Healthy turns false.
func TestRunStopDrains(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	p := New(Options{Logger: testkit.Logger(t, slog.LevelInfo)})
	if p.Healthy() {
		t.Fatal("healthy before Apply")
	}
	if err := p.Apply(context.Background(), Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{backendOf("a", srv("a1", a.addr))}}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Ready():
		t.Fatal("ready before Run")
	default:
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-p.Ready():
	case <-timeAfter():
		t.Fatal("not ready")
	}
	if !p.Healthy() {
		t.Fatal("not healthy while running")
	}
	addr, _ := p.Addr("http")
	c := dialClient(t, addr.String())
	io.WriteString(c.c, "GET /hold?id=stop HTTP/1.1\r\nHost: a.test\r\n\r\n")
	<-a.started
	cancel()
	// Wait until the listener is closed, then let the request finish.
	for deadline := time.Now().Add(waitFor); ; time.Sleep(5 * time.Millisecond) {
		if _, err := net.Dial("tcp", addr.String()); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still accepting after cancel")
		}
	}
	if p.Healthy() {
		t.Error("healthy while stopping")
	}
	close(a.hold)
	if r := c.read("GET"); !r.Close || bodyOf(r) != "a1 held stop" {
		t.Fatalf("in-flight request during stop: %d close=%v", r.StatusCode, r.Close)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-timeAfter():
		t.Fatal("Run did not return")
	}
	if err := p.Apply(context.Background(), Config{}); !errors.Is(err, ErrStopped) {
		t.Errorf("Apply after stop: %v", err)
	}
}

// TestDrainBoundsServerWait: a stop whose drain timeout passes while a
// request waits for a slow server ends within about that timeout, not
// when the server's idle timeout would end the wait: the drain shuts the
// exchange's server connection down as it closes the client's.
func TestDrainBoundsServerWait(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	t.Cleanup(func() { close(a.hold) })
	l := httpListener("http", "a")
	l.DrainTimeout = 300 * time.Millisecond
	be := backendOf("a", srv("a1", a.addr))
	be.IdleTimeout = 20 * time.Second // the wait for the answer, without the cut
	p := startProxy(t, Config{Listeners: []Listener{l}, Backends: []Backend{be}})
	c := dialClient(t, p.addr(t, "http"))
	io.WriteString(c.c, "GET /hold?id=slow HTTP/1.1\r\nHost: a.test\r\n\r\n")
	select {
	case <-a.started:
	case <-timeAfter():
		t.Fatal("the request did not reach the server")
	}
	start := time.Now()
	p.stop()
	select {
	case <-p.ran:
		if p.runErr != nil {
			t.Fatal(p.runErr)
		}
	case <-time.After(waitFor):
		t.Fatalf("Run still draining %v after the stop (drain timeout %v)", waitFor, l.DrainTimeout)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("Run returned %v after the stop, want about the drain timeout (%v)", el, l.DrainTimeout)
	}
	if _, err := c.br.ReadByte(); err == nil {
		t.Error("the cut request got an answer")
	}
}

// TestDrainEndsQueuedRequest: a request (or a ClientHello) waiting in a
// backend's queue for a server slot when its listener's drain times out
// leaves the queue then. It used to wait out the backend's queueTimeout
// (its client long gone), holding a place against maxQueue and the stop
// of the proxy (or of an upgrade's old process) that long.
func TestDrainEndsQueuedRequest(t *testing.T) {
	for _, mode := range []string{"http", "tls"} {
		t.Run(mode, func(t *testing.T) {
			// The server takes a connection and holds it until closed.
			hold := rawServer(t, func(c net.Conn) { io.Copy(io.Discard, c) })
			listener := func(name string) Listener {
				l := httpListener(name, "a")
				if mode == "tls" {
					l = tlsListener(name, "a")
				}
				l.DrainTimeout = 300 * time.Millisecond
				return l
			}
			be := backendOf("a", srv("a1", hold))
			be.Servers[0].MaxConn = 1
			be.QueueTimeout = 20 * time.Second
			keep := Config{Listeners: []Listener{listener("keep")}, Backends: []Backend{be}}
			p := startProxy(t, Config{Listeners: []Listener{listener("keep"), listener("gone")}, Backends: []Backend{be}})
			send := func(listener string) net.Conn {
				c := dialMany(t, p.addr(t, listener), 1)[0]
				if mode == "tls" {
					c.Write(clientHelloBytes(t, "a.test"))
				} else {
					io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
				}
				return c
			}
			gauge := func(name string, labels map[string]string, want float64) func() string {
				return func() string {
					if v := p.metric(t, name, labels); v != want {
						return fmt.Sprintf("%s %v, want %v", name, v, want)
					}
					return ""
				}
			}
			send("keep") // takes the slot, and keeps it
			testkit.Poll(t, waitFor, gauge(MetricServerActive, map[string]string{"backend": "a", "server": "a1"}, 1))
			queued := send("gone")
			testkit.Poll(t, waitFor, gauge(MetricBackendQueued, map[string]string{"backend": "a"}, 1))
			start := time.Now()
			if err := p.Apply(context.Background(), keep); err != nil {
				t.Fatal(err)
			}
			testkit.Poll(t, waitFor, gauge(MetricBackendQueued, map[string]string{"backend": "a"}, 0))
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("the queued request left the queue %v after its listener went, want about the drain timeout (300ms; queueTimeout %v)", el, be.QueueTimeout)
			}
			queued.SetReadDeadline(time.Now().Add(waitFor))
			if n, err := queued.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("the queued connection: %d bytes, %v; want it closed", n, err)
			}
			if v := p.metric(t, MetricServerActive, map[string]string{"backend": "a", "server": "a1"}); v != 1 {
				t.Errorf("%v active on a1 after the drain, want the kept connection's 1", v)
			}
		})
	}
}

// TestBindMovesOnItsPort: a listener whose bind changes address but keeps
// its port (":8080" to "127.0.0.1:8080" and on) is applied by a reload:
// the socket the old bind had is stopped before the new one binds, where
// the new bind used to fail on the proxy's own socket, every time. A
// reload that then fails listens on the old bind again.
func TestBindMovesOnItsPort(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	port := netip.MustParseAddrPort(testkit.QuietPort(t)).Port()
	cfgAt := func(addr string) Config {
		l := httpListener("http", "a")
		l.Bind = Bind{Port: port}
		if addr != "" {
			l.Bind.Addr = netip.MustParseAddr(addr)
		}
		return Config{Listeners: []Listener{l}, Backends: []Backend{backendOf("a", srv("a1", a.addr))}}
	}
	target := fmt.Sprintf("127.0.0.1:%d", port)
	p := startProxy(t, cfgAt(""))
	for _, addr := range []string{"127.0.0.1", "0.0.0.0", "", "127.0.0.1"} {
		if err := p.Apply(context.Background(), cfgAt(addr)); err != nil {
			t.Fatalf("moving the bind to %q:%d: %v", addr, port, err)
		}
		if code, _ := get(t, target, "a.test", "/"); code != 200 {
			t.Fatalf("after the move to %q:%d: %d", addr, port, code)
		}
	}
	// A reload that moves the bind and fails on another listener keeps
	// the running one.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	bad := cfgAt("0.0.0.0")
	other := httpListener("other", "a")
	other.Bind = Bind{Addr: loopback, Port: uint16(held.Addr().(*net.TCPAddr).Port)}
	bad.Listeners = append(bad.Listeners, other)
	var be *BindError
	if err := p.Apply(context.Background(), bad); !errors.As(err, &be) || be.Listener != "other" {
		t.Fatalf("a reload binding a held port: %v, want the other listener's bind error", err)
	}
	if code, _ := get(t, target, "a.test", "/"); code != 200 {
		t.Fatalf("after the failed reload: %d", code)
	}
	if !p.Healthy() {
		t.Error("unhealthy after the failed reload")
	}
}
