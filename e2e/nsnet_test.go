//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"github.com/vishvananda/netns"
)

// The test process itself acts as the client, the backends, the forge
// sending webhooks and the access log in front of the Proxmox simulator:
// a socket belongs to the network namespace of the thread that created
// it, so inNS creates sockets from a thread switched into a lab namespace
// and they stay there whatever thread later uses them.

// inNS runs f on an OS thread moved into namespace ns, then moves the
// thread back. Only when moving back fails is the thread left locked, so
// that it exits with the goroutine: a thread that exits kills the
// processes it started (Pdeathsig), so threads must not exit needlessly.
func inNS(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("current namespace: %w", err)
			return
		}
		defer orig.Close()
		h, err := netns.GetFromName(ns)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("namespace %s: %w", ns, err)
			return
		}
		defer h.Close()
		if err := netns.Set(h); err != nil {
			netns.Set(orig)
			errc <- fmt.Errorf("entering namespace %s: %w", ns, err)
			return // the thread stays locked and exits
		}
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// nsDialer dials from namespace ns.
func nsDialer(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(ns, func() error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// nsListen listens in namespace ns.
func nsListen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNS(ns, func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// nsClient is an HTTP client whose connections start in namespace ns; with
// keepAlive false every request opens its own connection.
func nsClient(ns string, timeout time.Duration, keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         nsDialer(ns),
			DisableKeepAlives:   !keepAlive,
			MaxIdleConnsPerHost: 64,
			ForceAttemptHTTP2:   false,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
