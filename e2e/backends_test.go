//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
	proxyproto "github.com/pires/go-proxyproto"
)

// echo is what a lab backend answers: its name, the peer of the TCP
// connection it got (the node that proxied it), and the client address
// the node passed on in a PROXY header or in X-Forwarded-For.
type echo struct {
	Backend string `json:"backend"`
	Via     string `json:"via"`             // TCP peer address: the node
	Proxy   string `json:"proxy,omitempty"` // source address of the PROXY header
	XFF     string `json:"xff,omitempty"`   // X-Forwarded-For as received
	Host    string `json:"host"`
	TLS     bool   `json:"tls"`
}

// backends is a namespace of servers be1..beN on 192.0.2.51.., each with
// HTTP on :80 and TLS on :443, both taking an optional PROXY v1/v2 header.
// They run in the test process and stop when the test ends.
type backends struct {
	ns    string
	addrs map[string]string // name -> IPv4
}

func (l *lab) startBackends(n int) *backends {
	t := l.t
	t.Helper()
	b := &backends{addrs: map[string]string{}}
	var ips []string
	for i := 1; i <= n; i++ {
		ip := fmt.Sprintf("192.0.2.%d", 50+i)
		ips = append(ips, ip)
		b.addrs[fmt.Sprintf("be%d", i)] = ip
	}
	b.ns = l.addHost("be", ips...)
	cert := testkit.SelfSigned(t, "*.lab")
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("be%d", i)
		for _, port := range []string{"80", "443"} {
			ln, err := nsListen(b.ns, "tcp", net.JoinHostPort(b.addrs[name], port))
			if err != nil {
				t.Fatalf("backend %s: %v", name, err)
			}
			// The header is optional (USE): health checks and backends
			// without proxyProtocol send none.
			var pl net.Listener = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: 5 * time.Second,
				ConnPolicy: func(proxyproto.ConnPolicyOptions) (proxyproto.Policy, error) { return proxyproto.USE, nil }}
			if port == "443" {
				pl = tls.NewListener(pl, &tls.Config{Certificates: []tls.Certificate{cert}})
			}
			srv := &http.Server{
				Handler:           echoHandler(name),
				ReadHeaderTimeout: 10 * time.Second,
				ErrorLog:          log.New(io.Discard, "", 0), // health checks close without a handshake
				ConnContext: func(ctx context.Context, c net.Conn) context.Context {
					return context.WithValue(ctx, connKey{}, c)
				},
			}
			go srv.Serve(pl)
			t.Cleanup(func() { srv.Close() })
		}
	}
	return b
}

type connKey struct{}

// echoHandler answers every request with an echo; ?sleep=D holds the
// request for D first (a request in flight across a reload).
func echoHandler(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 && d < 10*time.Second {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		e := echo{Backend: name, XFF: r.Header.Get("X-Forwarded-For"), Host: r.Host, TLS: r.TLS != nil}
		c, _ := r.Context().Value(connKey{}).(net.Conn)
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		if pc, ok := c.(*proxyproto.Conn); ok {
			if h := pc.ProxyHeader(); h != nil && h.SourceAddr != nil {
				e.Proxy = h.SourceAddr.String()
			}
			c = pc.Raw()
		}
		if c != nil {
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			e.Via = host
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(e)
	})
}

// httpGet sends GET path with Host host to addr (ip:port) from namespace
// ns and decodes the backend's echo.
func httpGet(c *http.Client, addr, host, path string) (echo, int, error) {
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		return echo{}, 0, err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return echo{}, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return echo{}, resp.StatusCode, err
	}
	if resp.StatusCode != http.StatusOK {
		return echo{}, resp.StatusCode, fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var e echo
	if err := json.Unmarshal(body, &e); err != nil {
		return echo{}, resp.StatusCode, fmt.Errorf("not an echo: %q", body)
	}
	return e, resp.StatusCode, nil
}

// tlsGet opens a TLS connection with SNI sni to addr from namespace ns,
// through the node's passthrough listener to the backend, and asks it for
// its echo.
func tlsGet(ns, addr, sni string, timeout time.Duration) (echo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	raw, err := nsDialer(ns)(ctx, "tcp", addr)
	if err != nil {
		return echo{}, err
	}
	defer raw.Close()
	raw.SetDeadline(time.Now().Add(timeout))
	c := tls.Client(raw, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err := c.HandshakeContext(ctx); err != nil {
		return echo{}, fmt.Errorf("TLS handshake with SNI %s: %w", sni, err)
	}
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", sni)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return echo{}, err
	}
	defer resp.Body.Close()
	var e echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		return echo{}, errors.New("TLS backend answered no echo")
	}
	return e, nil
}
