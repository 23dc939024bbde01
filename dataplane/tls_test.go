package dataplane

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func tlsRoutingConfig(t *testing.T, pp ProxyProtocol) Config {
	a := startTLSBackend(t, "ta1", pp != ProxyNone)
	w := startTLSBackend(t, "tw1", pp != ProxyNone)
	def := startTLSBackend(t, "tdef1", pp != ProxyNone)
	bA, bW, bD := backendOf("tls-a", srv("ta1", a)), backendOf("tls-w", srv("tw1", w)), backendOf("tls-def", srv("tdef1", def))
	for _, b := range []*Backend{&bA, &bW, &bD} {
		b.ProxyProtocol = pp
	}
	return Config{
		Listeners: []Listener{tlsListener("tls", "tls-def"), tlsListener("tls-nodefault", "")},
		Routes: []Route{
			routeTLS("a", "tls-a", "a.test"),
			routeTLS("w", "tls-w", "*.apps.test"),
			// an HTTP-only route must not catch TLS traffic
			routeHTTP("h", "tls-a", "http-only.test"),
		},
		Backends: []Backend{bA, bW, bD},
	}
}

func TestTLSRouting(t *testing.T) {
	cfg := tlsRoutingConfig(t, ProxyNone)
	p := startProxy(t, cfg)
	addr := p.addr(t, "tls")
	tests := []struct{ name, sni, want string }{
		{"exact", "a.test", "ta1 sni=a.test"},
		{"case-insensitive", "A.Test", "ta1 sni=A.Test"},
		{"wildcard", "x.apps.test", "tw1 sni=x.apps.test"},
		{"unknown to default", "zzz.test", "tdef1 sni=zzz.test"},
		{"no SNI to default", "", "tdef1 sni= "},
		{"http-only route ignored", "http-only.test", "tdef1 sni=http-only.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line, _ := tlsHello(t, addr, tt.sni)
			if !strings.HasPrefix(line+" ", tt.want) {
				t.Fatalf("SNI %q: greeting %q, want %q", tt.sni, line, tt.want)
			}
		})
	}
	t.Run("no route and no default closes", func(t *testing.T) {
		line, _ := tlsHello(t, p.addr(t, "tls-nodefault"), "zzz.test")
		if line != "" {
			t.Fatalf("got %q", line)
		}
		if line, _ := tlsHello(t, p.addr(t, "tls-nodefault"), "a.test"); !strings.HasPrefix(line, "ta1 ") {
			t.Fatalf("routed SNI on a listener without default: %q", line)
		}
	})
	t.Run("echo both ways and half-close", func(t *testing.T) {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(waitFor))
		c := tls.Client(raw, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
		br := bufio.NewReader(c)
		if _, err := br.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		big := strings.Repeat("x", 200<<10) + "\n"
		go io.WriteString(c, big)
		line, err := br.ReadString('\n')
		if err != nil || line != "ta1: "+big {
			t.Fatalf("echo of %d bytes: got %d bytes, %v", len(big), len(line), err)
		}
		// TLS close_notify then TCP half-close: the server closes in turn.
		c.CloseWrite()
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("after close: %v", err)
		}
	})
	if v := p.metric(t, MetricRequests, map[string]string{"listener": "tls", "class": "tls"}); v < 6 {
		t.Errorf("tls connections counted %v", v)
	}
}

// fragmenter splits the client's first write (the ClientHello record)
// into small TLS records sent as separate TCP segments.
type fragmenter struct {
	net.Conn
	size  int
	first bool
}

func (f *fragmenter) Write(p []byte) (int, error) {
	if f.first {
		return f.Conn.Write(p)
	}
	f.first = true
	out := refragmentRecords(p, f.size)
	for len(out) > 0 {
		n := min(len(out), 7)
		if _, err := f.Conn.Write(out[:n]); err != nil {
			return 0, err
		}
		out = out[n:]
		time.Sleep(time.Millisecond) // separate segments: this is the client's pacing, not a wait
	}
	return len(p), nil
}

// refragmentRecords re-splits the handshake record(s) in p into records of
// at most size bytes.
func refragmentRecords(p []byte, size int) []byte {
	var msg []byte
	for b := p; len(b) >= 5 && b[0] == 22; {
		l := int(b[3])<<8 | int(b[4])
		msg = append(msg, b[5:5+l]...)
		b = b[5+l:]
	}
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

// TestTLSFragmentedClientHello: a ClientHello split into records (each
// in a segment of its own) is routed; one split into more than
// clienthello.MaxRecords records (here 1-byte ones) is refused, never
// routed: its inspection would cost CPU quadratic in the records.
func TestTLSFragmentedClientHello(t *testing.T) {
	cfg := tlsRoutingConfig(t, ProxyNone)
	p := startProxy(t, cfg)
	for _, tc := range []struct {
		size   int
		routed bool
	}{{64, true}, {100, true}, {1000, true}, {1, false}} {
		raw, err := net.Dial("tcp", p.addr(t, "tls"))
		if err != nil {
			t.Fatal(err)
		}
		raw.SetDeadline(time.Now().Add(waitFor))
		c := tls.Client(&fragmenter{Conn: raw, size: tc.size}, &tls.Config{ServerName: "x.apps.test", InsecureSkipVerify: true})
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if routed := err == nil && strings.HasPrefix(line, "tw1 sni=x.apps.test"); routed != tc.routed {
			t.Fatalf("records of %d bytes: %q %v, want routed %v", tc.size, line, err, tc.routed)
		}
	}
	if v := p.metric(t, MetricListenerErrors, map[string]string{"listener": "tls", "kind": "bad_hello"}); v != 1 {
		t.Errorf("bad_hello count %v, want 1 (the 1-byte records)", v)
	}
}

func TestTLSNotTLSAndInspectTimeout(t *testing.T) {
	cfg := tlsRoutingConfig(t, ProxyNone)
	cfg.Listeners[0].InspectTimeout = 500 * time.Millisecond
	p := startProxy(t, cfg)
	addr := p.addr(t, "tls")
	t.Run("plain HTTP is closed", func(t *testing.T) {
		code, resp := rawRequest(t, addr, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
		if code != 0 || resp != "" {
			t.Fatalf("got %q", resp)
		}
	})
	t.Run("no ClientHello within inspectTimeout", func(t *testing.T) {
		// Before the dial: the proxy's clock starts at its accept, which
		// may come before Dial returns here.
		start := time.Now()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte{22, 3, 1, 0, 200, 1}) // a ClientHello that never completes
		c.SetReadDeadline(time.Now().Add(waitFor))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("got %v, want EOF", err)
		}
		// The upper bound only tells a cut at the timeout from none, with
		// room for -race on a loaded machine.
		if el := time.Since(start); el < 400*time.Millisecond || el > waitFor/2 {
			t.Errorf("closed after %v, want about 500ms", el)
		}
	})
	if v := p.metric(t, MetricListenerErrors, map[string]string{"listener": "tls", "kind": errKindNotTLS}); v != 1 {
		t.Errorf("not_tls %v", v)
	}
	if v := p.metric(t, MetricListenerErrors, map[string]string{"listener": "tls", "kind": errKindInspect}); v != 1 {
		t.Errorf("inspect_timeout %v", v)
	}
}

// TestProxyProtocolToBackends: TLS and HTTP servers behind PROXY v1 and v2
// see the client's real address.
func TestProxyProtocolToBackends(t *testing.T) {
	for _, pp := range []ProxyProtocol{ProxyV1, ProxyV2} {
		t.Run(string(pp), func(t *testing.T) {
			cfg := tlsRoutingConfig(t, pp)
			hb := startHTTPBackend(t, "h1", true)
			hbe := backendOf("http-pp", srv("h1", hb.addr))
			hbe.ProxyProtocol = pp
			cfg.Backends = append(cfg.Backends, hbe)
			cfg.Listeners = append(cfg.Listeners, httpListener("http", "http-pp"))
			p := startProxy(t, cfg)
			line, c := tlsHello(t, p.addr(t, "tls"), "a.test")
			local := c.LocalAddr().String()
			if line != "ta1 sni=a.test peer="+local {
				t.Fatalf("TLS backend greeting %q, want peer %s", line, local)
			}
			// HTTP: the private server connection is reused by the same client.
			hc := dialClient(t, p.addr(t, "http"))
			for range 3 {
				body := bodyOf(hc.do("GET", "a.test", "/client", ""))
				if body != "h1 "+hc.c.LocalAddr().String() {
					t.Fatalf("HTTP backend saw %q, want client %s", body, hc.c.LocalAddr())
				}
			}
			if n := hb.conns.Load(); n != 1 {
				t.Errorf("3 requests of one client used %d PROXY connections, want 1", n)
			}
			// Another client gets its own connection.
			if _, body := get(t, p.addr(t, "http"), "a.test", "/client"); !strings.HasPrefix(body, "h1 127.0.0.1:") {
				t.Fatalf("second client: %q", body)
			}
			if n := hb.conns.Load(); n != 2 {
				t.Errorf("two clients used %d PROXY connections, want 2", n)
			}
		})
	}
}
