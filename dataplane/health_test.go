package dataplane

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
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

func TestHealthRiseFall(t *testing.T) {
	s1 := startHTTPBackend(t, "s1", false)
	s2 := startHTTPBackend(t, "s2", false)
	be := backendOf("be", srv("s1", s1.addr), srv("s2", s2.addr))
	be.HealthCheck = HealthCheck{Type: CheckHTTP, Path: "/health", Interval: 30 * time.Millisecond, Timeout: time.Second, Rise: 2, Fall: 2}
	events := make(chan healthEvent, 100)
	p := startProxy(t, Config{Listeners: []Listener{httpListener("http", "be")}, Backends: []Backend{be}},
		func(o *Options) { healthEvents(o, events) })
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
	events := make(chan healthEvent, 100)
	p := startProxy(t, Config{Listeners: []Listener{httpListener("http", "be")}, Backends: []Backend{be}},
		func(o *Options) { healthEvents(o, events) })
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
