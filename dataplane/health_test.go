package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type healthEvent struct {
	backend, server string
	up              bool
}

func healthEvents(o *Options, ch chan healthEvent) {
	o.OnServerHealth = func(backend, server string, up bool, reason string) {
		ch <- healthEvent{backend, server, up}
	}
}

func waitHealth(t *testing.T, ch chan healthEvent, want healthEvent) {
	t.Helper()
	timeout := time.After(waitFor)
	for {
		select {
		case ev := <-ch:
			if ev == want {
				return
			}
		case <-timeout:
			t.Fatalf("no health event %+v", want)
		}
	}
}

// watchedProxy runs a proxy with an http listener whose default backend
// is be, its server health events on the returned channel.
func watchedProxy(t *testing.T, be Backend) (*proxyRig, chan healthEvent, Config) {
	t.Helper()
	events := make(chan healthEvent, 100)
	cfg := Config{Listeners: []Listener{httpListener("http", be.Name)}, Backends: []Backend{be}}
	return startProxy(t, cfg, func(o *Options) { healthEvents(o, events) }), events, cfg
}

func TestHealthRiseFall(t *testing.T) {
	s1 := startHTTPBackend(t, "s1", false)
	s2 := startHTTPBackend(t, "s2", false)
	be := backendOf("be", srv("s1", s1.addr), srv("s2", s2.addr))
	be.HealthCheck = HealthCheck{Type: CheckHTTP, Path: "/health", Interval: 30 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2}
	p, events, _ := watchedProxy(t, be)
	addr := p.addr(t, "http")
	seen := func() map[string]int {
		m := map[string]int{}
		c := dialClient(t, addr)
		for range 8 {
			m[strings.Fields(bodyOf(c.do("GET", "x", "/", "")))[0]]++
		}
		return m
	}
	if m := seen(); m["s1"] != 4 || m["s2"] != 4 {
		t.Fatalf("both up: %v", m)
	}
	s1.sick.Store(true)
	waitHealth(t, events, healthEvent{"be", "s1", false})
	if m := seen(); m["s2"] != 8 {
		t.Fatalf("s1 down: %v", m)
	}
	if v := p.metric(t, MetricServerUp, map[string]string{"backend": "be", "server": "s1"}); v != 0 {
		t.Errorf("up gauge %v", v)
	}
	s1.sick.Store(false)
	waitHealth(t, events, healthEvent{"be", "s1", true})
	if m := seen(); m["s1"] != 4 {
		t.Fatalf("s1 back: %v", m)
	}
	st := p.Status()
	if len(st) != 2 || !st[0].Up || !st[1].Up || st[0].Server != "s1" {
		t.Errorf("status %+v", st)
	}
}

// TestHealthTCPAndAllDown: a TCP check sees a server go away; with every
// server down the backend answers 503 at once.
func TestHealthTCPAndAllDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr).AddrPort()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				if _, err := http.ReadRequest(br); err == nil {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
				}
			}()
		}
	}()
	be := backendOf("be", srv("s1", addr))
	be.HealthCheck = HealthCheck{Type: CheckTCP, Interval: 30 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
	// A request that waited in the queue would take all of it: far more
	// than the bound below, which leaves room for -race on a loaded machine.
	be.QueueTimeout = 3 * waitFor
	p, events, _ := watchedProxy(t, be)
	if code, _ := get(t, p.addr(t, "http"), "x", "/"); code != 200 {
		t.Fatal(code)
	}
	ln.Close()
	waitHealth(t, events, healthEvent{"be", "s1", false})
	start := time.Now()
	if code, _ := get(t, p.addr(t, "http"), "x", "/"); code != 503 {
		t.Fatalf("all servers down: %d", code)
	}
	if el := time.Since(start); el > waitFor {
		t.Errorf("503 took %v: must not wait in the queue when nothing is up", el)
	}
}

// TestHealthCheckHaltedInFlight: a reload that removes a server, or
// changes its check, and a stop, each while that server's check is in
// flight and about to take it down, return at once and report nothing
// for the old check. Waiting for the check under the proxy's lock used to
// deadlock them when the state change's callback asked for Status, as
// the node does.
func TestHealthCheckHaltedInFlight(t *testing.T) {
	const slow = 2 * time.Second // how long the server takes to fail a check
	for _, tc := range []string{"server removed", "check changed", "proxy stopped"} {
		t.Run(tc, func(t *testing.T) {
			asked := make(chan struct{}, 10)
			sick := rawServer(t, func(c net.Conn) {
				defer c.Close()
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					return
				}
				asked <- struct{}{}
				// slow, or until the test's end closes c
				c.SetReadDeadline(time.Now().Add(slow))
				c.Read(make([]byte, 1))
				io.WriteString(c, "HTTP/1.1 500 Sick\r\nContent-Length: 0\r\n\r\n")
			})
			other := startHTTPBackend(t, "s2", false)
			hc := HealthCheck{Type: CheckHTTP, Path: "/health", Interval: time.Hour, Timeout: 2 * slow, Rise: 1, Fall: 1}
			be := backendOf("be", srv("s1", sick), srv("s2", other.addr))
			be.HealthCheck = hc
			cfg := Config{Listeners: []Listener{httpListener("http", "be")}, Backends: []Backend{be}}
			events := make(chan healthEvent, 10)
			var p *proxyRig
			p = startProxy(t, cfg, func(o *Options) {
				o.OnServerHealth = func(backend, server string, up bool, reason string) {
					_ = p.Status() // as the node does: it takes the proxy's lock
					events <- healthEvent{backend, server, up}
				}
			})
			select {
			case <-asked:
			case <-time.After(waitFor):
				t.Fatal("s1's check never came")
			}
			done := make(chan error, 1)
			start := time.Now()
			switch tc {
			case "server removed":
				be2 := backendOf("be", srv("s2", other.addr))
				be2.HealthCheck = hc
				go func() {
					done <- p.Apply(context.Background(), Config{Listeners: cfg.Listeners, Backends: []Backend{be2}})
				}()
			case "check changed":
				be2 := be
				be2.HealthCheck.Type = CheckTCP // passes: only the old check could take s1 down
				go func() {
					done <- p.Apply(context.Background(), Config{Listeners: cfg.Listeners, Backends: []Backend{be2}})
				}()
			case "proxy stopped":
				go func() { p.stop(); <-p.Proxy.done; done <- nil }()
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(slow + waitFor):
				t.Fatal("not done: waiting for the check in flight, or deadlocked on the proxy's lock")
			}
			if el := time.Since(start); el >= slow {
				t.Errorf("took %v: it waited for the check in flight (%v)", el, slow)
			}
			select {
			case ev := <-events:
				if ev.server == "s1" {
					t.Errorf("the halted check reported %+v", ev)
				}
			case <-time.After(slow + 200*time.Millisecond):
			}
		})
	}
}

// closingServer answers every request on a connection of its own (it
// closes after each answer, so that each request through the proxy makes
// a new connect), /health with health's status.
func closingServer(t *testing.T, health *atomic.Int32) netip.AddrPort {
	return rawServer(t, func(c net.Conn) {
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if req.URL.Path == "/health" {
			fmt.Fprintf(c, "HTTP/1.1 %d Health\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", health.Load())
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
	})
}

// TestActiveCheckDecidesUnderTraffic: a server whose HTTP check fails
// (its /health answers 503 to be drained) goes down after fall checks
// while requests keep reaching it. Every successful connect of the
// traffic used to reset the checks' failure run, so it never went down
// while anyone used it.
func TestActiveCheckDecidesUnderTraffic(t *testing.T) {
	var health atomic.Int32
	health.Store(200)
	be := backendOf("be", srv("s1", closingServer(t, &health)))
	be.HealthCheck = HealthCheck{Type: CheckHTTP, Path: "/health", Interval: 50 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 3}
	p, events, _ := watchedProxy(t, be)
	addr := p.addr(t, "http")
	deadline := time.After(waitFor)
	for n := 0; ; n++ {
		if n == 10 {
			health.Store(503) // drain it, traffic going on
		}
		select {
		case ev := <-events:
			if ev != (healthEvent{"be", "s1", false}) || n <= 10 {
				t.Fatalf("event %+v after %d requests, want s1 down once its checks fail", ev, n)
			}
			return
		case <-deadline:
			t.Fatalf("s1 still up after %d requests and %v of failing checks (fall 3 every 50ms)", n, waitFor)
		default:
		}
		get(t, addr, "x", "/")
		time.Sleep(10 * time.Millisecond)
	}
}

// TestNewServerFirstCheck: a server added with an active check is down
// as soon as its first check fails (HAProxy starts it at health = rise),
// not after fall checks, during which it took requests nobody had seen
// it answer.
func TestNewServerFirstCheck(t *testing.T) {
	var health atomic.Int32
	health.Store(500)
	be := backendOf("be", srv("s1", closingServer(t, &health)))
	be.HealthCheck = HealthCheck{Type: CheckHTTP, Path: "/health", Interval: time.Second, Timeout: time.Second, Rise: 2, Fall: 3}
	start := time.Now()
	_, events, _ := watchedProxy(t, be)
	waitHealth(t, events, healthEvent{"be", "s1", false})
	if el := time.Since(start); el > 900*time.Millisecond {
		t.Errorf("down %v after it was added, want at its first check (the next comes after 1s)", el)
	}
}

// TestCheckRemovedRaisesServer: a server an active check put down is up
// again as soon as a reload removes the check (as a server without one
// is); nothing brought it back before, and it answered 503 for good.
func TestCheckRemovedRaisesServer(t *testing.T) {
	var health atomic.Int32
	health.Store(500)
	be := backendOf("be", srv("s1", closingServer(t, &health)))
	be.HealthCheck = HealthCheck{Type: CheckHTTP, Path: "/health", Interval: 30 * time.Millisecond, Timeout: time.Second, Rise: 1, Fall: 1}
	p, events, cfg := watchedProxy(t, be)
	waitHealth(t, events, healthEvent{"be", "s1", false})
	be.HealthCheck = HealthCheck{}
	if err := p.Apply(context.Background(), Config{Listeners: cfg.Listeners, Backends: []Backend{be}}); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, events, healthEvent{"be", "s1", true})
	if st := p.Status(); len(st) != 1 || !st[0].Up {
		t.Errorf("status %+v, want s1 up", st)
	}
	if code, _ := get(t, p.addr(t, "http"), "x", "/"); code != 200 {
		t.Errorf("a request after the check went: %d", code)
	}
	if v := p.metric(t, MetricServerUp, map[string]string{"backend": "be", "server": "s1"}); v != 1 {
		t.Errorf("up gauge %v", v)
	}
}

// TestRetryWaitsForRestartingServer: a request to the only server, which
// refuses connections while it restarts, retries it after a pause
// (HAProxy's turn-around timer) and is answered once it is back; its
// failed connects count once against the server's health. The retries
// used to follow each other at once, all refused, and each counted: one
// request took the server out for passiveRetry.
func TestRetryWaitsForRestartingServer(t *testing.T) {
	addr := deadAddr(t)
	be := backendOf("be", srv("s1", addr))
	p, events, _ := watchedProxy(t, be)
	back := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond) // restarting
		ln, err := net.Listen("tcp", addr.String())
		if err != nil {
			back <- err
			return
		}
		t.Cleanup(func() { ln.Close() })
		back <- nil
		http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	}()
	code, body := get(t, p.addr(t, "http"), "x", "/")
	if err := <-back; err != nil {
		t.Fatalf("could not listen on %v again: %v", addr, err)
	}
	if code != 200 {
		t.Errorf("the request while s1 restarted: %d %q, want 200 once it is back", code, body)
	}
	for range 5 {
		if code, _ := get(t, p.addr(t, "http"), "x", "/"); code != 200 {
			t.Errorf("a request once s1 is back: %d", code)
		}
	}
	select {
	case ev := <-events:
		t.Errorf("health event %+v: one request's retries took the server out", ev)
	default:
	}
	retries := func(kind string) float64 {
		return p.metric(t, MetricBackendRetries, map[string]string{"backend": "be", "kind": kind})
	}
	if r, d := retries(retryKindRetry), retries(retryKindRedispatch); r < 1 || d != 0 {
		t.Errorf("retries counted: %v retry, %v redispatch; want at least 1, and 0 (one server)", r, d)
	}
}

// TestRetryTriesEachServer: a request's retries go to servers it has not
// tried while there is one (source balance, two servers of three dead,
// retries 2): the third attempt used to exclude only the second server
// and went back to the first.
func TestRetryTriesEachServer(t *testing.T) {
	live := startHTTPBackend(t, "live", false)
	be := backendOf("be", srv("d1", deadAddr(t)), srv("d2", deadAddr(t)), srv("live", live.addr))
	be.Balance = BalanceSource
	p, b := bareBackend(t, be)
	// Equal weights: the hash modulo 3 picks among all three (0: d1),
	// modulo 2 among the two left (0: d2 once d1 is excluded, d1 again
	// when only d2 is).
	for i := range 1000 {
		peer := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}), uint16(40000+i))
		if h := sourceHash(peer.Addr()); h%3 != 0 || h%2 != 0 {
			continue
		}
		s, u, err := p.connectServer(b, nil, peer, peer, true, nil, nil)
		if err != nil {
			t.Fatalf("client %v: %v, though server live is up", peer, err)
		}
		if s.cfg.Name != "live" {
			t.Errorf("client %v reached %s", peer, s.cfg.Name)
		}
		u.c.Close()
		s.release()
		return
	}
	t.Fatal("no client address hashes to d1 then d2")
}

// TestPassiveTrialSilent: a server that refuses connections, without an
// active check, goes down once; tried again after passiveRetry, it is
// announced up only when a connect to it succeeds. It used to be
// announced up at every retry and down at the next failure: its gauge
// flapped and an alert on it staying down never fired.
func TestPassiveTrialSilent(t *testing.T) {
	old := passiveRetry
	passiveRetry = 200 * time.Millisecond
	t.Cleanup(func() { passiveRetry = old })
	live := startHTTPBackend(t, "live", false)
	dead := deadAddr(t)
	be := backendOf("be", srv("dead", dead), srv("live", live.addr))
	p, events, _ := watchedProxy(t, be)
	addr := p.addr(t, "http")
	gauge := func() float64 {
		return p.metric(t, MetricServerUp, map[string]string{"backend": "be", "server": "dead"})
	}
	end := time.Now().Add(10 * passiveRetry)
	for time.Now().Before(end) {
		if code, _ := get(t, addr, "x", "/"); code != 200 {
			t.Fatalf("a request: %d (live is up)", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	var got []healthEvent
	for len(events) > 0 {
		got = append(got, <-events)
	}
	if len(got) != 1 || got[0] != (healthEvent{"be", "dead", false}) {
		t.Fatalf("events %+v over %v of retries, want dead down once", got, 10*passiveRetry)
	}
	if v := gauge(); v != 0 {
		t.Errorf("up gauge of the dead server %v", v)
	}
	// Back: its trial's connect succeeds, and it is announced.
	ln, err := net.Listen("tcp", dead.String())
	if err != nil {
		t.Fatalf("could not listen on %v again: %v", dead, err)
	}
	t.Cleanup(func() { ln.Close() })
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "dead") }))
	deadline := time.After(waitFor)
	for {
		select {
		case ev := <-events:
			if ev != (healthEvent{"be", "dead", true}) {
				t.Fatalf("event %+v, want dead up", ev)
			}
			if v := gauge(); v != 1 {
				t.Errorf("up gauge once back %v", v)
			}
			return
		case <-deadline:
			t.Fatal("the server back was never announced up")
		default:
		}
		get(t, addr, "x", "/")
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTrialThenCheckAdded: a server on trial after connect failures (up
// again, not announced) when a reload gives its backend an active check
// is announced up by that check once it passes. The trial used to stay:
// the check found the server up already and said nothing, and its gauge
// stayed 0 while it served.
func TestTrialThenCheckAdded(t *testing.T) {
	old := passiveRetry
	passiveRetry = 100 * time.Millisecond
	t.Cleanup(func() { passiveRetry = old })
	addr := deadAddr(t)
	be := backendOf("be", srv("s1", addr))
	be.Retries = 0
	p, events, cfg := watchedProxy(t, be)
	for range passiveFall {
		get(t, p.addr(t, "http"), "x", "/")
	}
	waitHealth(t, events, healthEvent{"be", "s1", false})
	time.Sleep(3 * passiveRetry) // on trial
	ln, err := net.Listen("tcp", addr.String())
	if err != nil {
		t.Fatalf("could not listen on %v again: %v", addr, err)
	}
	t.Cleanup(func() { ln.Close() })
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	be.HealthCheck = HealthCheck{Type: CheckHTTP, Path: "/", Interval: 30 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2}
	if err := p.Apply(context.Background(), Config{Listeners: cfg.Listeners, Backends: []Backend{be}}); err != nil {
		t.Fatal(err)
	}
	waitHealth(t, events, healthEvent{"be", "s1", true})
	if v := p.metric(t, MetricServerUp, map[string]string{"backend": "be", "server": "s1"}); v != 1 {
		t.Errorf("up gauge %v once the check passed", v)
	}
}
