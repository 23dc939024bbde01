package dataplane

import (
	"context"
	"io"
	"testing"
	"time"
)

// TestDeferAccept: a listener with DeferAccept takes a connection only once
// its client has sent a byte, so a silent client neither costs the proxy
// anything nor counts as accepted; after about a second (the kernel's
// SYN-ACK retransmission) it is handed over all the same and the
// listener's own timeout cuts it. A reload that turns the option off
// takes the next silent connection at once, on the same socket.
func TestDeferAccept(t *testing.T) {
	t.Parallel()
	be := startHTTPBackend(t, "h1", false)
	tlsBe := startTLSBackend(t, "t1", false)
	for _, tc := range []struct {
		name  string
		ln    Listener
		first func(t *testing.T, addr string) // a client that speaks at once
	}{
		{"http", httpListener("web", "h"), func(t *testing.T, addr string) {
			if code, body := get(t, addr, "a.test", "/"); code != 200 {
				t.Fatalf("a request on the second connection: %d %q", code, body)
			}
		}},
		{"tls", tlsListener("web", "t"), func(t *testing.T, addr string) {
			line, c := tlsHello(t, addr, "a.test")
			c.Close()
			if line == "" {
				t.Fatal("a handshake on the second connection was not passed through")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln := tc.ln
			ln.DeferAccept = true
			ln.RequestTimeout, ln.InspectTimeout = 300*time.Millisecond, 300*time.Millisecond
			cfg := Config{Listeners: []Listener{ln}, Backends: []Backend{
				backendOf("h", srv("h1", be.addr)), backendOf("t", srv("t1", tlsBe)),
			}}
			p := startProxy(t, cfg)
			addr := p.addr(t, "web")
			accepted := func() float64 { return p.metric(t, MetricConnections, map[string]string{"listener": "web"}) }

			silent := dialMany(t, addr, 1)[0]
			begun := time.Now()
			tc.first(t, addr)
			// The kernel hands the silent one over about a second after
			// its connect: a slower first exchange proves nothing here.
			if n := accepted(); time.Since(begun) < 800*time.Millisecond && n != 1 {
				t.Fatalf("%v connections accepted after a silent one and one that spoke, want 1 (the silent one waits in the kernel)", n)
			}
			// Handed over after about a second, then cut by the
			// listener's timeout (300ms).
			_ = silent.SetReadDeadline(time.Now().Add(waitFor))
			_, err := io.ReadAll(silent)
			took := time.Since(begun)
			if err != nil {
				t.Fatalf("the silent connection was not closed: %v", err)
			}
			if took < 900*time.Millisecond {
				t.Errorf("the silent connection was closed %v after its connect: it was taken before the kernel's defer period", took)
			}
			if n := accepted(); n != 2 {
				t.Errorf("%v connections accepted, want 2", n)
			}

			ln.DeferAccept = false
			cfg.Listeners = []Listener{ln}
			if err := p.Apply(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			if now := p.addr(t, "web"); now != addr {
				t.Fatalf("the reload moved the listener from %s to %s: want the same socket", addr, now)
			}
			dialMany(t, addr, 1)
			for deadline := time.Now().Add(500 * time.Millisecond); accepted() != 3; time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("with deferAccept off, a silent connection was not taken within 500ms")
				}
			}
		})
	}
}
