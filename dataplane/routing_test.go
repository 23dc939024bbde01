package dataplane

import (
	"net/netip"
	"strings"
	"testing"
)

// longestName is a host name of 253 characters, the most DNS allows.
var longestName = strings.Repeat("x", 63) + "." + strings.Repeat("y", 63) + "." + strings.Repeat("z", 63) + "." + strings.Repeat("w", 50) + ".domain.tld"

// routingConfig is the repository format's routing cases over four backends.
func routingConfig(a, b, wild, deep, def netip.AddrPort) Config {
	return Config{
		Listeners: []Listener{httpListener("http", "def"), httpListener("http-nodefault", "")},
		Routes: []Route{
			routeHTTP("blog", "a", "blog.domain.tld", "www.blog.domain.tld", longestName),
			routeHTTP("apps", "wild", "*.apps.domain.tld"),
			routeHTTP("deep", "deep", "*.x.apps.domain.tld"),
			routeHTTP("exact-over-wild", "b", "special.apps.domain.tld"),
		},
		Backends: []Backend{
			backendOf("a", srv("a1", a)),
			backendOf("b", srv("b1", b)),
			backendOf("wild", srv("w1", wild)),
			backendOf("deep", srv("d1", deep)),
			backendOf("def", srv("def1", def)),
		},
	}
}

func TestHTTPRouting(t *testing.T) {
	a := startHTTPBackend(t, "a", false)
	b := startHTTPBackend(t, "b", false)
	w := startHTTPBackend(t, "wild", false)
	d := startHTTPBackend(t, "deep", false)
	def := startHTTPBackend(t, "def", false)
	p := startProxy(t, routingConfig(a.addr, b.addr, w.addr, d.addr, def.addr))
	addr := p.addr(t, "http")
	tests := []struct {
		name, host, want string
	}{
		{"exact", "blog.domain.tld", "a"},
		{"second host of a route", "www.blog.domain.tld", "a"},
		{"case-insensitive", "BLOG.Domain.TLD", "a"},
		{"port ignored", "blog.domain.tld:8080", "a"},
		{"trailing dot", "blog.domain.tld.", "a"},
		{"wildcard", "foo.apps.domain.tld", "wild"},
		{"wildcard, deeper name", "a.b.apps.domain.tld", "wild"},
		{"longest wildcard wins", "y.x.apps.domain.tld", "deep"},
		{"exact beats wildcard", "special.apps.domain.tld", "b"},
		{"wildcard does not match its suffix", "apps.domain.tld", "def"},
		{"unknown host to default", "unknown.test", "def"},
		{"IP literal to default", "[2001:db8::1]:80", "def"},
		{"empty host to default", "", "def"},
		{"longest name", longestName, "a"},
		{"longest name, trailing dot", longestName + ".", "a"},
		{"longest name, port", longestName + ":80", "a"},
		{"a name too long to default", "v" + longestName, "def"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, addr, tt.host, "/")
			if code != 200 || !strings.HasPrefix(body, tt.want+" ") {
				t.Fatalf("Host %q: %d %q, want backend %s", tt.host, code, body, tt.want)
			}
		})
	}
	t.Run("absolute-form target overrides Host", func(t *testing.T) {
		code, resp := rawRequest(t, addr, "GET http://blog.domain.tld/ HTTP/1.1\r\nHost: unknown.test\r\nConnection: close\r\n\r\n")
		if code != 200 || !strings.Contains(resp, "\r\n\r\na ") {
			t.Fatalf("%d %q", code, resp)
		}
	})
	t.Run("HTTP/1.0 without Host goes to default", func(t *testing.T) {
		code, resp := rawRequest(t, addr, "GET / HTTP/1.0\r\n\r\n")
		if code != 200 || !strings.Contains(resp, "\r\n\r\ndef ") {
			t.Fatalf("%d %q", code, resp)
		}
	})
	t.Run("no route and no default is 503", func(t *testing.T) {
		code, _ := get(t, p.addr(t, "http-nodefault"), "unknown.test", "/")
		if code != 503 {
			t.Fatalf("got %d, want 503", code)
		}
		code, body := get(t, p.addr(t, "http-nodefault"), "blog.domain.tld", "/")
		if code != 200 || !strings.HasPrefix(body, "a ") {
			t.Fatalf("routed host on listener without default: %d %q", code, body)
		}
	})
	t.Run("each kept-alive request routed by its own Host", func(t *testing.T) {
		c := dialClient(t, addr)
		for _, tc := range []struct{ host, want string }{
			{"blog.domain.tld", "a"}, {"foo.apps.domain.tld", "wild"}, {"x.test", "def"}, {"special.apps.domain.tld", "b"},
		} {
			r := c.do("GET", tc.host, "/", "")
			if got := bodyOf(r); !strings.HasPrefix(got, tc.want+" ") {
				t.Fatalf("Host %s: %q", tc.host, got)
			}
		}
	})
}

func TestRoundRobinWeights(t *testing.T) {
	s1 := startHTTPBackend(t, "s1", false)
	s2 := startHTTPBackend(t, "s2", false)
	s3 := startHTTPBackend(t, "s3", false)
	be := backendOf("be", srv("s1", s1.addr), srv("s2", s2.addr), srv("s3", s3.addr))
	be.Servers[0].Weight = 3
	be.Servers[1].Weight = 1
	be.Servers[2].Weight = 0 // drained: no new requests
	p := startProxy(t, Config{Listeners: []Listener{httpListener("http", "be")}, Backends: []Backend{be}})
	c := dialClient(t, p.addr(t, "http"))
	var seq []string
	for range 8 {
		seq = append(seq, strings.Fields(bodyOf(c.do("GET", "x", "/", "")))[0])
	}
	// Smooth WRR with 3:1 interleaves: s1 s1 s2 s1, twice.
	if got := strings.Join(seq, " "); got != "s1 s1 s2 s1 s1 s1 s2 s1" {
		t.Fatalf("sequence %s", got)
	}
}

func TestBalanceLeastConnAndSource(t *testing.T) {
	s1 := startHTTPBackend(t, "s1", false)
	s2 := startHTTPBackend(t, "s2", false)
	lc := backendOf("lc", srv("s1", s1.addr), srv("s2", s2.addr))
	lc.Balance = BalanceLeastConn
	src := backendOf("src", srv("s1", s1.addr), srv("s2", s2.addr))
	src.Balance = BalanceSource
	cfg := Config{
		Listeners: []Listener{httpListener("http", "lc")},
		Routes:    []Route{routeHTTP("src", "src", "src.test")},
		Backends:  []Backend{lc, src},
	}
	p := startProxy(t, cfg)
	addr := p.addr(t, "http")
	// Hold one request on s1 or s2; the next must go to the other server.
	c1 := dialClient(t, addr)
	if _, err := c1.c.Write([]byte("GET /hold?id=1 HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	var busy *httpBackend
	select {
	case <-s1.started:
		busy = s1
	case <-s2.started:
		busy = s2
	case <-timeAfter():
		t.Fatal("held request did not arrive")
	}
	for range 4 {
		code, body := get(t, addr, "x", "/")
		if code != 200 || strings.HasPrefix(body, busy.name+" ") {
			t.Fatalf("leastconn sent a request to the busy server %s: %d %q", busy.name, code, body)
		}
	}
	close(busy.hold)
	if r := c1.read("GET"); r.StatusCode != 200 {
		t.Fatalf("held request: %d", r.StatusCode)
	}
	// Source hashing: one client address always lands on one server.
	first := ""
	for range 6 {
		_, body := get(t, addr, "src.test", "/")
		name := strings.Fields(body)[0]
		if first == "" {
			first = name
		}
		if name != first {
			t.Fatalf("source balance moved the client from %s to %s", first, name)
		}
	}
}
