package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestHandOverUnderNewConnections: proxies hand one listening socket to
// the next, as upgrades in place do, while clients open a new connection
// per request: no connection is closed without an answer. The old proxy's
// accept loop could take a connection from the shared socket after its
// drain began and close it unanswered (seen as one EOF in
// TestRunUpgradeUnderLoad on a loaded machine); it now serves that
// connection's first request, as a drain does for one accepted before.
func TestHandOverUnderNewConnections(t *testing.T) {
	a := startHTTPBackend(t, "a1", false)
	port := testkit.QuietPort(t) // bound again by each proxy: not in the ephemeral range
	cfg := Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{backendOf("a", srv("a1", a.addr))}}
	cfg.Listeners[0].Bind = mustBind(t, port)

	type running struct {
		p    *Proxy
		stop context.CancelFunc
		done chan error
	}
	start := func(inherit func(string) *net.TCPListener) running {
		t.Helper()
		p := New(Options{Logger: testkit.Logger(t, slog.LevelWarn), Inherit: inherit})
		if err := p.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		r := running{p, stop, make(chan error, 1)}
		go func() { r.done <- p.Run(ctx) }()
		<-p.Ready()
		return r
	}
	stopped := func(r running) {
		t.Helper()
		r.stop()
		select {
		case err := <-r.done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(testkit.Deadline):
			t.Fatal("the old proxy did not stop")
		}
	}
	cur := start(nil)

	// Clients: a new connection per request, bounded in count and time.
	var ok, failed atomic.Int64
	var mu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 20000 {
				select {
				case <-stop:
					return
				default:
				}
				err := func() error {
					c, err := net.DialTimeout("tcp", port, testkit.Deadline)
					if err != nil {
						return err
					}
					defer c.Close()
					c.SetDeadline(time.Now().Add(testkit.Deadline))
					fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
					r, err := http.ReadResponse(bufio.NewReader(c), nil)
					if err != nil {
						return err
					}
					r.Body.Close()
					if r.StatusCode != 200 {
						return fmt.Errorf("status %d", r.StatusCode)
					}
					return nil
				}()
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if len(errs) < 10 {
						errs = append(errs, err.Error())
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	// Hand the socket over again and again while they run.
	for range 30 {
		socks := cur.p.Sockets()
		if len(socks) != 1 {
			t.Fatalf("Sockets: %+v", socks)
		}
		f, err := socks[0].Listener.File()
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		next := start(func(key string) *net.TCPListener {
			if key == socks[0].Key {
				return ln.(*net.TCPListener)
			}
			return nil
		})
		stopped(cur)
		cur = next
	}
	close(stop)
	wg.Wait()
	stopped(cur)
	t.Logf("%d requests over 30 hand-overs, %d failed", ok.Load()+failed.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d requests failed (%d served): %q", failed.Load(), ok.Load(), errs)
	}
}
