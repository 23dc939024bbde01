package dataplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestListenerMaxConn: a listener with maxConn connections open stops
// accepting; the next client's connection waits in the kernel's accept
// queue, unanswered, until one ends or a config raises the cap, and a
// stop does not hang on the waiting accept loop (startProxy's cleanup
// checks that Run returns).
func TestListenerMaxConn(t *testing.T) {
	be := startHTTPBackend(t, "a1", false)
	cfg := func(maxConn int) Config {
		ln := httpListener("http", "a")
		ln.MaxConn = maxConn
		return Config{Listeners: []Listener{ln}, Backends: []Backend{backendOf("a", srv("a1", be.addr))}}
	}
	p := startProxy(t, cfg(2))
	addr := p.addr(t, "http")
	labels := map[string]string{"listener": "http"}
	kept := make([]*client, 0, 4)
	for range 2 {
		c := dialClient(t, addr)
		if r := c.do("GET", "a.test", "/", ""); r.StatusCode != 200 {
			t.Fatalf("under the cap: %d", r.StatusCode)
		}
		kept = append(kept, c) // kept alive, idle: they count
	}
	// waiting sends a request on a new connection and checks that it is
	// not answered: the proxy has not accepted it.
	waiting := func(what string) *client {
		t.Helper()
		c := dialClient(t, addr) // the kernel completes the handshake
		io.WriteString(c.c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		c.c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if b, err := c.br.ReadByte(); err == nil {
			t.Fatalf("%s: answered (%q...) past maxConn", what, b)
		}
		c.c.SetReadDeadline(time.Time{})
		return c
	}
	answered := func(what string, c *client) {
		t.Helper()
		c.c.SetReadDeadline(time.Now().Add(waitFor))
		if r := c.read("GET"); r.StatusCode != 200 {
			t.Fatalf("%s: %d", what, r.StatusCode)
		}
		c.c.SetReadDeadline(time.Time{})
	}

	third := waiting("a third connection")
	if v := p.metric(t, MetricListenerFull, labels); v != 1 {
		t.Errorf("times at maxConn: %v, want 1", v)
	}
	if v := p.metric(t, MetricActiveConns, labels); v != 2 {
		t.Errorf("open connections: %v, want 2", v)
	}
	kept[0].c.Close() // its end makes room
	answered("the third once one ended", third)
	kept = append(kept[1:], third)

	fourth := waiting("a fourth connection")
	if err := p.Apply(context.Background(), cfg(3)); err != nil {
		t.Fatal(err)
	}
	answered("the fourth once the cap was raised", fourth)
	kept = append(kept, fourth)
	for _, c := range kept {
		if r := c.do("GET", "a.test", "/", ""); r.StatusCode != 200 {
			t.Fatalf("a kept connection after the reload: %d", r.StatusCode)
		}
	}
	// At the cap with two open, again once the third took the room the
	// first left, and at the raised cap once the fourth was in.
	if v := p.metric(t, MetricListenerFull, labels); v != 3 {
		t.Errorf("times at maxConn: %v, want 3", v)
	}
	// At the cap again when the test ends: the stop must reach the
	// accept loop waiting for room.
	waiting("a fifth connection")
}

// TestListenerMaxConnTLS: on a tls listener the cap counts connections
// that have sent nothing yet, parked without a goroutine, as HAProxy
// counts them: a handshake behind them waits until one goes.
func TestListenerMaxConnTLS(t *testing.T) {
	be := startTLSBackend(t, "t1", false)
	ln := tlsListener("tls", "t")
	ln.MaxConn = 2
	p := startProxy(t, Config{Listeners: []Listener{ln}, Backends: []Backend{backendOf("t", srv("t1", be))}})
	addr := p.addr(t, "tls")
	silent := dialMany(t, addr, 2)
	// The dial completes in the kernel's accept queue; the handshake
	// waits for the proxy.
	c := tls.Client(dialMany(t, addr, 1)[0], &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
	greeting := make(chan string, 1)
	go func() { greeting <- tlsGreeting(c) }()
	select {
	case line := <-greeting:
		t.Fatalf("a handshake past maxConn was passed through (%q)", line)
	case <-time.After(300 * time.Millisecond):
	}
	if v := p.metric(t, MetricListenerFull, map[string]string{"listener": "tls"}); v != 1 {
		t.Errorf("times at maxConn: %v, want 1", v)
	}
	silent[0].Close()
	select {
	case line := <-greeting:
		if !strings.HasPrefix(line, "t1 ") {
			t.Fatalf("greeting %q, want t1's", line)
		}
	case <-timeAfter():
		t.Fatal("the waiting handshake was not passed through once a silent connection closed")
	}
}

// TestQueueTakesReloadCapacity: requests queued behind a server at its
// maxConn are served as soon as a reload adds capacity (a higher maxConn,
// or another server), not at their queueTimeout; so are requests that
// come after the reload. Queued requests used to pick from the
// generation they queued under, and nothing woke them.
func TestQueueTakesReloadCapacity(t *testing.T) {
	for _, tc := range []string{"maxConn raised", "server added"} {
		t.Run(tc, func(t *testing.T) {
			a := startHTTPBackend(t, "a1", false)
			b2 := startHTTPBackend(t, "a2", false)
			be := backendOf("a", srv("a1", a.addr))
			be.Servers[0].MaxConn = 1
			be.QueueTimeout = 10 * time.Second
			cfg := Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{be}}
			p := startProxy(t, cfg)
			t.Cleanup(func() { close(a.hold) }) // before the proxy's stop waits for it
			addr := p.addr(t, "http")
			held := dialClient(t, addr)
			io.WriteString(held.c, "GET /hold?id=first HTTP/1.1\r\nHost: a.test\r\n\r\n")
			select {
			case <-a.started:
			case <-timeAfter():
				t.Fatal("the first request did not reach the server")
			}
			queued := make(chan int, 1)
			go func() { code, _ := get(t, addr, "a.test", "/"); queued <- code }()
			testkit.Poll(t, waitFor, func() string {
				if v := p.metric(t, MetricBackendQueued, map[string]string{"backend": "a"}); v != 1 {
					return fmt.Sprintf("%v requests queued, want 1", v)
				}
				return ""
			})
			be2 := be
			be2.Servers = slices.Clone(be.Servers)
			switch tc {
			case "maxConn raised":
				be2.Servers[0].MaxConn = 3
			case "server added":
				be2.Servers = append(be2.Servers, srv("a2", b2.addr))
			}
			start := time.Now()
			if err := p.Apply(context.Background(), Config{Listeners: cfg.Listeners, Backends: []Backend{be2}}); err != nil {
				t.Fatal(err)
			}
			select {
			case code := <-queued:
				if code != 200 {
					t.Fatalf("the queued request: %d", code)
				}
			case <-time.After(waitFor):
				t.Fatal("the queued request is still waiting")
			}
			if code, _ := get(t, addr, "a.test", "/"); code != 200 {
				t.Fatalf("a request after the reload: %d", code)
			}
			if el := time.Since(start); el > 3*time.Second {
				t.Errorf("served %v after the reload, want at once (queueTimeout %v)", el, be.QueueTimeout)
			}
		})
	}
}

// acquired is what an acquire returned.
type acquired struct {
	s   *server
	err error
}

// acquireLater runs an acquire of b on a goroutine of its own, and waits
// (bounded) until it is the queue's only waiter.
func acquireLater(t *testing.T, b *backend) chan acquired {
	t.Helper()
	c := make(chan acquired, 1)
	go func() {
		s, err := b.acquire(0, nil, nil)
		c <- acquired{s, err}
	}()
	testkit.Poll(t, waitFor, func() string {
		b.st.mu.Lock()
		defer b.st.mu.Unlock()
		if n := len(b.st.waiters); n != 1 {
			return fmt.Sprintf("%d requests queued, want 1", n)
		}
		return ""
	})
	return c
}

// TestQueueFirstComeFirstServed: a slot a release frees goes to the
// request first in the queue, which it wakes, not to one that asks for a
// slot before the woken one has run. The newcomer used to take it (the
// queue looked empty once the first waiter left it to run), and the
// waiter queued again: under load, a request could wait out its
// queueTimeout while later ones were served.
func TestQueueFirstComeFirstServed(t *testing.T) {
	be := backendOf("be", srv("s1", deadAddr(t)))
	be.Servers[0].MaxConn = 1
	be.QueueTimeout = waitFor
	_, b := bareBackend(t, be)
	held, err := b.acquire(0, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		first := acquireLater(t, b)
		// The slot is freed, and at once asked for by a newcomer.
		held.release()
		later := make(chan acquired, 1)
		go func() {
			s, err := b.acquire(0, nil, nil)
			later <- acquired{s, err}
		}()
		select {
		case g := <-later:
			if g.err == nil {
				g.s.release()
			}
			t.Fatalf("round %d: the newcomer took the slot before the request queued first (%v)", i, g.err)
		case g := <-first:
			if g.err != nil {
				t.Fatalf("round %d: the request queued first: %v", i, g.err)
			}
			g.s.release() // the newcomer's turn
		case <-time.After(waitFor):
			t.Fatalf("round %d: no request got the slot", i)
		}
		select {
		case g := <-later:
			if g.err != nil {
				t.Fatalf("round %d: the newcomer: %v", i, g.err)
			}
			held = g.s
		case <-time.After(waitFor):
			t.Fatalf("round %d: the newcomer never got the slot", i)
		}
	}
	held.release()
}

// TestQueueSpareSlotTaken: a newcomer takes a free slot at once when
// more are free than those kept for woken requests: two slots freed
// together, one queued request woken for the first, and the newcomer
// gets the second. Keeping every slot while any woken request had not
// run (the first version of the hand-over) queued the newcomer beside
// the free slot until its queueTimeout (3 s, in a review's test).
func TestQueueSpareSlotTaken(t *testing.T) {
	be := backendOf("be", srv("s1", deadAddr(t)))
	be.Servers[0].MaxConn = 2
	be.QueueTimeout = 3 * time.Second
	_, b := bareBackend(t, be)
	for i := range 20 {
		var held [2]*server
		for k := range held {
			s, err := b.acquire(0, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			held[k] = s
		}
		first := acquireLater(t, b)
		held[0].release()
		held[1].release()
		// At once, before the woken request has run.
		start := time.Now()
		s, err := b.acquire(0, nil, nil)
		if err != nil {
			t.Fatalf("round %d: the newcomer: %v", i, err)
		}
		if in := time.Since(start); in > time.Second {
			t.Fatalf("round %d: the newcomer waited %v for one of two free slots", i, in)
		}
		s.release()
		select {
		case g := <-first:
			if g.err != nil {
				t.Fatalf("round %d: the queued request: %v", i, g.err)
			}
			g.s.release()
		case <-time.After(waitFor):
			t.Fatalf("round %d: the queued request never got the slot kept for it", i)
		}
	}
}
