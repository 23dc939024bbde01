package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitedge/gitedge/internal/tlscert"
)

func get(addr, host string) (string, error) {
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	req.Host = host
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

func tlsPeer(addr, sni string) (string, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
		&tls.Config{ServerName: sni, InsecureSkipVerify: true}) // the demo backend's certificate is self-signed
	if err != nil {
		return "", err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// load runs keep-alive requests through the proxy until stopped.
type load struct {
	stopc    chan struct{}
	done     chan struct{}
	n, fails atomic.Int64
	mu       sync.Mutex
	seen     []string
}

func startLoad(addr, host string) *load {
	l := &load{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(l.done)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			l.fails.Add(1)
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		req := "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		for i := 0; i < 200000; i++ { // bounded in count and by stop
			select {
			case <-l.stopc:
				return
			default:
			}
			conn.SetDeadline(time.Now().Add(5 * time.Second))
			resp, err := writeRead(conn, br, req)
			if err != nil {
				l.fails.Add(1)
				return
			}
			l.n.Add(1)
			l.mu.Lock()
			if len(l.seen) == 0 || l.seen[len(l.seen)-1] != resp {
				l.seen = append(l.seen, resp)
			}
			l.mu.Unlock()
		}
	}()
	return l
}

func writeRead(conn net.Conn, br *bufio.Reader, req string) (string, error) {
	if _, err := io.WriteString(conn, req); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("status %s %v", resp.Status, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func (l *load) stop() (int64, int64, []string) {
	close(l.stopc)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	short := make([]string, len(l.seen))
	for i, s := range l.seen {
		short[i], _, _ = strings.Cut(s, " ")
	}
	return l.n.Load(), l.fails.Load(), short
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// freePorts reserves n loopback ports and releases them for the node.
func freePorts(n int) ([]string, error) {
	var out []string
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().String())
	}
	return out, nil
}

// serve serves h on a loopback port, over TLS with cert when it is set,
// until ctx ends, and returns the address.
func serve(ctx context.Context, wg *sync.WaitGroup, cert *tls.Certificate, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	if cert != nil {
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{*cert}})
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	wg.Go(func() { _ = srv.Serve(ln) })
	wg.Go(func() {
		<-ctx.Done()
		_ = srv.Close()
	})
	return addr, nil
}

func demoHTTPBackend(ctx context.Context, wg *sync.WaitGroup, name string) (string, error) {
	return serve(ctx, wg, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s (X-Forwarded-For: %s)\n", name, r.Header.Get("X-Forwarded-For"))
	}))
}

func demoTLSBackend(ctx context.Context, wg *sync.WaitGroup, name string) (string, error) {
	cert, _, err := tlscert.SelfSigned(name+".demo.test", []string{name + ".demo.test"}, 24*time.Hour)
	if err != nil {
		return "", err
	}
	return serve(ctx, wg, &cert, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s over TLS\n", name)
	}))
}
