package dataplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestAcquireAfterReload: a request routed to a backend just before a
// reload takes the servers the reload left it, not the ones it retired
// (which are never eligible: the request got 503, "no server is up", in
// the e2e fleet's reloads under load); one routed to a backend the reload
// removed is told so, for its connection to route it again.
func TestAcquireAfterReload(t *testing.T) {
	old := netip.MustParseAddrPort("192.0.2.1:80")
	moved := netip.MustParseAddrPort("192.0.2.2:80")
	p, b := bareBackend(t, backendOf("a", srv("s1", old)))
	if err := p.Apply(context.Background(), Config{Backends: []Backend{backendOf("a", srv("s1", moved))}}); err != nil {
		t.Fatal(err)
	}
	s, err := b.acquire(0, nil, nil)
	if err != nil {
		t.Fatalf("a request routed before the reload: %v; want the server the reload left", err)
	}
	if s.cfg.Address != moved {
		t.Errorf("server %v, want %v (the reload's)", s.cfg.Address, moved)
	}
	s.release()
	if err := p.Apply(context.Background(), Config{Backends: []Backend{backendOf("b", srv("s1", moved))}}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.acquire(0, nil, nil); err != errBackendGone {
		t.Errorf("a backend the reload removed: %v, want %v", err, errBackendGone)
	}
}

// TestQueuedRerouted: a request (http) or connection (tls) waiting in the
// queue of a backend that a reload then removes goes where the new table
// sends it, rather than failing because its backend's servers are gone;
// the one in flight on the removed backend finishes there.
func TestQueuedRerouted(t *testing.T) {
	t.Parallel()
	h1, h2 := startHTTPBackend(t, "h1", false), startHTTPBackend(t, "h2", false)
	t1, t2 := startTLSBackend(t, "t1", false), startTLSBackend(t, "t2", false)
	for _, tc := range []struct {
		name  string
		ln    Listener
		one   Server // the removed backend's only server, maxConn 1
		other Server
		// hold occupies the server's slot until release; ask sends
		// what then queues and returns its answer.
		hold func(t *testing.T, addr string) (release func())
		ask  func(t *testing.T, addr string) string
		want string
	}{
		{"http", httpListener("l", "a"), srv("h1", h1.addr), srv("h2", h2.addr),
			func(t *testing.T, addr string) func() {
				done := make(chan string, 1)
				go func() { done <- fetch(addr, "a.test", "/hold?id=1") }()
				<-h1.started
				return func() {
					close(h1.hold)
					if got := <-done; got != "200 h1 held 1" {
						t.Errorf("the request in flight on the removed backend: %q, want h1's answer", got)
					}
				}
			},
			func(t *testing.T, addr string) string { return fetch(addr, "a.test", "/") },
			"200 h2 a.test"},
		{"tls", tlsListener("l", "a"), srv("t1", t1), srv("t2", t2),
			func(t *testing.T, addr string) func() {
				line, c := tlsHello(t, addr, "a.test")
				if !strings.HasPrefix(line, "t1 ") {
					t.Fatalf("the first connection: %q, want t1's greeting", line)
				}
				return func() { c.Close() }
			},
			func(t *testing.T, addr string) string {
				raw, err := net.Dial("tcp", addr)
				if err != nil {
					return err.Error()
				}
				c := tls.Client(raw, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
				defer c.Close()
				name, _, _ := strings.Cut(tlsGreeting(c), " ")
				return name
			},
			"t2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a := backendOf("a", tc.one)
			a.Servers[0].MaxConn = 1
			a.QueueTimeout = waitFor
			p := startProxy(t, Config{Listeners: []Listener{tc.ln}, Backends: []Backend{a}})
			addr := p.addr(t, "l")
			release := tc.hold(t, addr)
			got := make(chan string, 1)
			go func() { got <- tc.ask(t, addr) }()
			for deadline := time.Now().Add(waitFor); p.metric(t, MetricBackendQueued, map[string]string{"backend": "a"}) != 1; time.Sleep(5 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the second request never queued")
				}
			}
			ln := tc.ln
			ln.DefaultBackend = "b"
			if err := p.Apply(context.Background(), Config{Listeners: []Listener{ln}, Backends: []Backend{backendOf("b", tc.other)}}); err != nil {
				t.Fatal(err)
			}
			select {
			case g := <-got:
				if g != tc.want {
					t.Errorf("the queued one after the reload: %q, want %q", g, tc.want)
				}
			case <-time.After(waitFor):
				t.Fatal("the queued one got no answer")
			}
			release()
		})
	}
}

// fetch asks addr for target with a Host, on a connection of its own, and
// returns "STATUS BODY" or the error; safe off the test's goroutine.
func fetch(addr, host, target string) string {
	req, err := http.NewRequest("GET", "http://"+addr+target, nil)
	if err != nil {
		return err.Error()
	}
	req.Host = host
	cl := &http.Client{Timeout: waitFor, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := cl.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, body)
}

// TestReloadWindow: in the instant of a reload between the listeners'
// new routes and the retiring of what the reload removed, a request the
// new table routes to a backend the reload adds is served by it, and one
// to a backend whose server moved reaches the moved server, not the one
// being retired.
func TestReloadWindow(t *testing.T) {
	t.Parallel()
	h1, h2 := startHTTPBackend(t, "h1", false), startHTTPBackend(t, "h2", false)
	ln := httpListener("l", "a")
	p := startProxy(t, Config{Listeners: []Listener{ln}, Backends: []Backend{backendOf("a", srv("s1", h1.addr))}})
	addr := p.addr(t, "l")
	if got := fetch(addr, "old.test", "/"); got != "200 h1 old.test" {
		t.Fatalf("before the reload: %q", got)
	}
	var got []string
	p.swapped = func() {
		// Under the reload's lock; the requests need none of it.
		got = append(got, fetch(addr, "new.test", "/"), fetch(addr, "old.test", "/"))
	}
	cfg := Config{Listeners: []Listener{ln},
		Routes:   []Route{routeHTTP("new", "b", "new.test")},
		Backends: []Backend{backendOf("a", srv("s1", h2.addr)), backendOf("b", srv("s1", h2.addr))}}
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	p.swapped = nil
	want := []string{"200 h2 new.test", "200 h2 old.test"}
	if !slices.Equal(got, want) {
		t.Errorf("during the reload: %q, want %q", got, want)
	}
}
