package dataplane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkBigBody is the `big` path in one process: clients downloading
// 1 MiB bodies at once over kept-alive connections, through pooled server
// connections (splice). It reports the tail of a download's time beside
// the throughput, since a stall shows in p99-ms long before it shows in
// MB/s. The delayed-ACK stall spliceIn's ackNow removes needs a server in
// another process on another core to show (`go run ./bench run -scenarios
// big`); here every party shares the proxy's core.
func BenchmarkBigBody(b *testing.B) {
	const size = 1 << 20
	const clients = 4
	body := bytes.Repeat([]byte("x"), size)
	head := fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", size)
	be := rawServer(b, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			if _, err := c.Write(head); err != nil {
				return
			}
			if _, err := c.Write(body); err != nil {
				return
			}
		}
	})
	p := startProxy(b, benchConfig(be, 1), func(o *Options) { o.Logger = nil })
	addr := p.addr(b, "http")
	req := []byte("GET /1m HTTP/1.1\r\nHost: h0.test\r\n\r\n")

	type client struct {
		c  net.Conn
		br *bufio.Reader
	}
	get := func(cl *client) error {
		if _, err := cl.c.Write(req); err != nil {
			return err
		}
		resp, err := http.ReadResponse(cl.br, nil)
		if err != nil {
			return err
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && n != size {
			err = fmt.Errorf("body of %d bytes, want %d", n, size)
		}
		return err
	}
	cls := make([]*client, clients)
	for i := range cls {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Minute))
		cls[i] = &client{c: c, br: bufio.NewReaderSize(c, 64<<10)}
		if err := get(cls[i]); err != nil { // warm the pool
			b.Fatal(err)
		}
	}

	var mu sync.Mutex
	var took []time.Duration
	var failed atomic.Bool
	next := make(chan struct{})
	var wg sync.WaitGroup
	b.SetBytes(size)
	b.ResetTimer()
	for _, cl := range cls {
		wg.Go(func() {
			for range next {
				if failed.Load() {
					continue // drain, so the sender below never blocks
				}
				t0 := time.Now()
				if err := get(cl); err != nil {
					b.Error(err)
					failed.Store(true)
					continue
				}
				d := time.Since(t0)
				mu.Lock()
				took = append(took, d)
				mu.Unlock()
			}
		})
	}
	for range b.N {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	b.StopTimer()
	slices.Sort(took)
	if len(took) > 0 {
		ms := func(q float64) float64 {
			return float64(took[min(len(took)-1, int(q*float64(len(took))))].Microseconds()) / 1000
		}
		b.ReportMetric(ms(0.50), "p50-ms")
		b.ReportMetric(ms(0.99), "p99-ms")
	}
}
