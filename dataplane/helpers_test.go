package dataplane

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
	proxyproto "github.com/pires/go-proxyproto"
	"github.com/prometheus/client_golang/prometheus"
)

// waitFor bounds every wait on a signal in these tests.
const waitFor = 10 * time.Second

var loopback = netip.MustParseAddr("127.0.0.1")

// proxyRig is a running proxy under test.
type proxyRig struct {
	*Proxy
	reg *prometheus.Registry
	// stop cancels Run's context: the proxy drains and stops, as on
	// SIGTERM. The test's cleanup checks that Run returns.
	stop context.CancelFunc
	// ran is closed when Run has returned, with runErr.
	ran    chan struct{}
	runErr error
}

// startProxy applies cfg and runs a proxy until the test ends.
func startProxy(t testing.TB, cfg Config, opts ...func(*Options)) *proxyRig {
	t.Helper()
	reg := prometheus.NewRegistry()
	o := Options{Registry: reg, Logger: testkit.Logger(t, slog.LevelInfo)}
	for _, f := range opts {
		f(&o)
	}
	p := New(o)
	if err := p.Apply(context.Background(), cfg); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &proxyRig{Proxy: p, reg: reg, stop: cancel, ran: make(chan struct{})}
	go func() {
		r.runErr = p.Run(ctx)
		close(r.ran)
	}()
	select {
	case <-p.Ready():
	case <-time.After(waitFor):
		t.Fatal("proxy not ready")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.ran:
			if r.runErr != nil {
				t.Errorf("Run: %v", r.runErr)
			}
		case <-time.After(2 * waitFor):
			t.Error("Run did not return")
		}
	})
	return r
}

// dialMany opens n connections to addr that send nothing, closed when the
// test ends.
func dialMany(t testing.TB, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns
}

func (r *proxyRig) addr(t testing.TB, listener string) string {
	t.Helper()
	a, ok := r.Addr(listener)
	if !ok {
		t.Fatalf("no listener %q", listener)
	}
	return a.String()
}

// metric returns the value of a counter or gauge with these labels.
func (r *proxyRig) metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return -1
}

// bareBackend applies a config of be alone to a proxy that serves no
// listener, and returns the backend as requests see it: acquire,
// release and connectServer called directly.
func bareBackend(t *testing.T, be Backend) (*Proxy, *backend) {
	t.Helper()
	p := New(Options{})
	t.Cleanup(func() { p.Close() })
	if err := p.Apply(context.Background(), Config{Backends: []Backend{be}}); err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p, p.backends[be.Name].cur
}

// Config builders with test-friendly timeouts.

func httpListener(name, def string) Listener {
	return Listener{Name: name, Bind: Bind{Addr: loopback}, Mode: ModeHTTP, DefaultBackend: def,
		InspectTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second, ClientTimeout: 30 * time.Second,
		MaxHeaderBytes: 32 << 10, DrainTimeout: 5 * time.Second}
}

func tlsListener(name, def string) Listener {
	l := httpListener(name, def)
	l.Mode = ModeTLS
	return l
}

func backendOf(name string, servers ...Server) Backend {
	return Backend{Name: name, Balance: BalanceRoundRobin, ProxyProtocol: ProxyNone,
		ConnectTimeout: 2 * time.Second, QueueTimeout: 2 * time.Second, IdleTimeout: 10 * time.Second,
		Retries: 2, Servers: servers}
}

func srv(name string, addr netip.AddrPort) Server {
	return Server{Name: name, Address: addr, Weight: 1}
}

func routeHTTP(name, backend string, hosts ...string) Route {
	return Route{Name: name, Hosts: hosts, HTTPBackend: backend}
}

func routeTLS(name, backend string, hosts ...string) Route {
	return Route{Name: name, Hosts: hosts, TLSBackend: backend}
}

// httpBackend is a real net/http server on loopback that names itself in
// every answer and offers the endpoints the tests need.
type httpBackend struct {
	name  string
	addr  netip.AddrPort
	srv   *http.Server
	ln    net.Listener
	hits  atomic.Int64 // requests for /
	reqs  atomic.Int64 // every request
	conns atomic.Int64 // connections accepted
	sick  atomic.Bool  // /health answers 500 while set
	// hold, when set, blocks /hold requests until it is closed.
	hold chan struct{}
	// started gets a value when a /hold request arrives.
	started chan string
}

// startHTTPBackend starts a backend; pp wraps its listener to read PROXY
// headers (the client address is then what the header says).
func startHTTPBackend(t testing.TB, name string, pp bool) *httpBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &httpBackend{name: name, hold: make(chan struct{}), started: make(chan string, 100)}
	ln = &countingListener{Listener: ln, n: &b.conns}
	if pp {
		ln = &proxyproto.Listener{Listener: ln, ReadHeaderTimeout: 5 * time.Second}
	}
	b.ln = ln
	b.addr = ln.Addr().(*net.TCPAddr).AddrPort()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		fmt.Fprintf(w, "%s %s", name, r.Host)
	})
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if b.sick.Load() {
			http.Error(w, "sick", http.StatusInternalServerError)
		}
	})
	mux.HandleFunc("/client", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", name, r.RemoteAddr)
	})
	mux.HandleFunc("/headers", func(w http.ResponseWriter, r *http.Request) {
		var sb strings.Builder
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "Connection", "Keep-Alive", "X-Secret", "Te"} {
			fmt.Fprintf(&sb, "%s=%s\n", k, strings.Join(r.Header.Values(k), ","))
		}
		io.WriteString(w, sb.String())
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("X-Body-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		for i := range n {
			fmt.Fprintf(w, "chunk %d of %s\n", i, name)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(pattern(n))
	})
	mux.HandleFunc("/hold", func(w http.ResponseWriter, r *http.Request) {
		b.started <- r.URL.Query().Get("id")
		<-b.hold
		fmt.Fprintf(w, "%s held %s", name, r.URL.Query().Get("id"))
	})
	mux.HandleFunc("/head", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1234")
		if r.Method != http.MethodHead {
			w.Write(pattern(1234))
		}
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	mux.HandleFunc("/notmodified", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(304) })
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			http.Error(w, "upgrade required", http.StatusUpgradeRequired)
			return
		}
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		// Echo lines, prefixed with the server's name, until EOF.
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			rw.WriteString(name + ": " + line)
			rw.Flush()
		}
	})
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.reqs.Add(1)
		mux.ServeHTTP(w, r)
	})
	b.srv = &http.Server{Handler: count, ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	t.Cleanup(func() {
		select {
		case <-b.hold:
		default:
			close(b.hold)
		}
		b.srv.Close()
	})
	return b
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// pattern returns n deterministic bytes.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// rawServer accepts connections and hands each to fn.
func rawServer(t testing.TB, fn func(net.Conn)) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { fn(c) })
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().(*net.TCPAddr).AddrPort()
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t testing.TB) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := ln.Addr().(*net.TCPAddr).AddrPort()
	ln.Close()
	return a
}

// rawRequest sends raw bytes on a new connection and returns the status
// code and the whole answer up to the close.
func rawRequest(t testing.TB, addr string, req string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitFor))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, _ := io.ReadAll(c)
	return statusOf(string(resp)), string(resp)
}

func statusOf(resp string) int {
	if len(resp) < 12 || !strings.HasPrefix(resp, "HTTP/1.") {
		return 0
	}
	n, _ := strconv.Atoi(resp[9:12])
	return n
}

// client is a keep-alive HTTP client over one connection.
type client struct {
	t  testing.TB
	c  net.Conn
	br *bufio.Reader
}

func dialClient(t testing.TB, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(3 * waitFor))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// do sends one request and reads one response.
func (c *client) do(method, host, target, body string, hdrs ...string) *http.Response {
	c.t.Helper()
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, h := range hdrs {
		req += h + "\r\n"
	}
	if body != "" {
		req += fmt.Sprintf("Content-Length: %d\r\n", len(body))
	}
	req += "\r\n" + body
	if _, err := io.WriteString(c.c, req); err != nil {
		c.t.Fatal(err)
	}
	return c.read(method)
}

func (c *client) read(method string) *http.Response {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading body: %v", err)
	}
	resp.Body = io.NopCloser(strings.NewReader(string(body)))
	return resp
}

func bodyOf(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// get does one request on a new connection with net/http's transport
// semantics bypassed: raw, so the Host header is exactly what we say.
func get(t testing.TB, addr, host, target string) (int, string) {
	t.Helper()
	c := dialClient(t, addr)
	defer c.c.Close()
	r := c.do("GET", host, target, "", "Connection: close")
	return r.StatusCode, bodyOf(r)
}

// TLS backends.

// startTLSBackend starts a TLS server that greets each client with its
// name, the SNI it saw and the client address (from a PROXY header when
// pp), then echoes lines.
func startTLSBackend(t testing.TB, name string, pp bool) netip.AddrPort {
	t.Helper()
	cert := testkit.SelfSigned(t, "*.test", "a.test", "b.test")
	return rawServer(t, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * waitFor))
		peer := c.RemoteAddr().String()
		var rd io.Reader = c
		if pp {
			br := bufio.NewReader(c)
			h, err := proxyproto.Read(br)
			if err != nil {
				return
			}
			peer = h.SourceAddr.String()
			rd = br
		}
		tc := tls.Server(readConn{Conn: c, r: rd}, &tls.Config{Certificates: []tls.Certificate{cert}})
		if err := tc.Handshake(); err != nil {
			return
		}
		fmt.Fprintf(tc, "%s sni=%s peer=%s\n", name, tc.ConnectionState().ServerName, peer)
		br := bufio.NewReader(tc)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			io.WriteString(tc, name+": "+line)
		}
	})
}

// readConn reads from r (bytes already buffered) and writes to the conn.
type readConn struct {
	net.Conn
	r io.Reader
}

func (c readConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// tlsHello connects through the proxy with serverName and returns the
// backend's greeting line and the connection.
func tlsHello(t testing.TB, addr, serverName string) (string, *tls.Conn) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	t.Cleanup(func() { c.Close() })
	return tlsGreeting(c), c
}

// tlsGreeting reads the backend's greeting line through a connection's
// handshake ("" if none came within waitFor); safe off the test's
// goroutine.
func tlsGreeting(c *tls.Conn) string {
	c.SetDeadline(time.Now().Add(waitFor))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimSpace(line)
}

func timeAfter() <-chan time.Time { return time.After(waitFor) }

// clientHelloBytes returns the first flight of a TLS client (its
// ClientHello record) for serverName.
func clientHelloBytes(t testing.TB, serverName string) []byte {
	var c helloCapture
	_ = tls.Client(&c, &tls.Config{ServerName: serverName}).Handshake()
	if c.b.Len() == 0 {
		t.Fatal("no ClientHello captured")
	}
	return c.b.Bytes()
}

// helloCapture is a net.Conn that keeps the first write and fails.
type helloCapture struct {
	net.Conn
	b bytes.Buffer
}

var errCaptured = errors.New("captured")

func (c *helloCapture) Write(p []byte) (int, error) { c.b.Write(p); return 0, errCaptured }
func (c *helloCapture) Read([]byte) (int, error)    { return 0, errCaptured }
func (c *helloCapture) Close() error                { return nil }
