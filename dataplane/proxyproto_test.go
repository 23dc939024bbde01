package dataplane

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

func ppHeader(t testing.TB, version byte, src, dst string) []byte {
	t.Helper()
	h := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(netip.MustParseAddrPort(src)), net.TCPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
	b, err := h.Format()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAcceptProxy(t *testing.T) {
	be := startHTTPBackend(t, "a1", false)
	tb := startTLSBackend(t, "ta1", true)
	trusted := httpListener("trusted", "a")
	trusted.ForwardFor = true
	trusted.AcceptProxy = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	untrusted := httpListener("untrusted", "a")
	untrusted.AcceptProxy = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	tlsL := tlsListener("tls", "t")
	tlsL.AcceptProxy = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}
	tbe := backendOf("t", srv("ta1", tb))
	tbe.ProxyProtocol = ProxyV2
	p := startProxy(t, Config{
		Listeners: []Listener{trusted, untrusted, tlsL},
		Backends:  []Backend{backendOf("a", srv("a1", be.addr)), tbe},
	})
	req := "GET /headers HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
	for _, v := range []byte{1, 2} {
		hdr := ppHeader(t, v, "192.0.2.7:51000", "192.0.2.1:80")
		code, resp := rawRequest(t, p.addr(t, "trusted"), string(hdr)+req)
		if code != 200 || !strings.Contains(resp, "X-Forwarded-For=192.0.2.7\n") {
			t.Fatalf("v%d: %d %q", v, code, resp)
		}
	}
	t.Run("header in pieces", func(t *testing.T) {
		c, err := net.Dial("tcp", p.addr(t, "trusted"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		all := string(ppHeader(t, 1, "198.51.100.3:1234", "192.0.2.1:80")) + req
		for i := 0; i < len(all); i += 9 {
			c.Write([]byte(all[i:min(i+9, len(all))]))
		}
		c.SetReadDeadline(time.Now().Add(waitFor))
		resp, _ := io.ReadAll(c)
		if !strings.Contains(string(resp), "X-Forwarded-For=198.51.100.3\n") {
			t.Fatalf("%q", resp)
		}
	})
	t.Run("no header is refused", func(t *testing.T) {
		if code, resp := rawRequest(t, p.addr(t, "trusted"), req); code != 0 {
			t.Fatalf("served without a PROXY header: %q", resp)
		}
	})
	t.Run("untrusted source is refused", func(t *testing.T) {
		hdr := ppHeader(t, 2, "192.0.2.7:51000", "192.0.2.1:80")
		if code, resp := rawRequest(t, p.addr(t, "untrusted"), string(hdr)+req); code != 0 {
			t.Fatalf("served a PROXY header from an untrusted peer: %q", resp)
		}
	})
	t.Run("TLS: client address passed on to a PROXY v2 server", func(t *testing.T) {
		raw, err := net.Dial("tcp", p.addr(t, "tls"))
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		raw.SetDeadline(time.Now().Add(waitFor))
		raw.Write(ppHeader(t, 2, "[2001:db8::7]:4433", "[2001:db8::1]:443"))
		c := tls.Client(raw, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || strings.TrimSpace(line) != "ta1 sni=a.test peer=[2001:db8::7]:4433" {
			t.Fatalf("%q %v", line, err)
		}
	})
	if v := p.metric(t, MetricListenerErrors, map[string]string{"listener": "untrusted", "kind": errKindProxyRefused}); v != 1 {
		t.Errorf("proxy_refused on untrusted %v", v)
	}
}

// FuzzReadProxyHeader drives the PROXY header reader of acceptProxy
// listeners (go-proxyproto behind our wrapper): no panic, the bytes after a
// header are kept exactly, and a header read back from its own encoding is
// the same.
func FuzzReadProxyHeader(f *testing.F) {
	files, _ := filepath.Glob("testdata/proxyproto/*.bin")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(ppHeader(f, 1, "192.0.2.7:51000", "192.0.2.1:80"))
	f.Add(append(ppHeader(f, 2, "[2001:db8::7]:1", "[2001:db8::1]:443"), "GET / HTTP/1.1\r\n"...))
	f.Add([]byte("PROXY UNKNOWN\r\nGET /"))
	f.Add([]byte("PROXY TCP4 192.0.2.7 192.0.2.1 65536 80\r\n"))
	f.Add([]byte("\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		hdr, rest, err := readProxyHeader(r)
		if err != nil {
			return
		}
		// What follows the header, buffered or not yet read, is the input's
		// tail: nothing lost, nothing made up.
		unread, _ := io.ReadAll(r)
		after := append(rest, unread...)
		if !bytes.HasSuffix(in, after) || len(after) >= len(in) {
			t.Fatalf("bytes after the header changed: %q", after)
		}
		enc, err := hdr.Format()
		if err != nil {
			return // e.g. v1 UNKNOWN with addresses: readable, not re-encodable
		}
		again, rest2, err := readProxyHeader(bytes.NewReader(enc))
		if err != nil {
			t.Fatalf("re-reading %q: %v", enc, err)
		}
		if len(rest2) != 0 || !again.EqualsTo(hdr) {
			t.Fatalf("round trip changed the header: %#v vs %#v", hdr, again)
		}
	})
}

// TestReadProxyHeaderInPieces: a header that arrives a byte at a time is
// read whole (the spec recommends tolerance), and nothing after it is lost.
func TestReadProxyHeaderInPieces(t *testing.T) {
	for _, v := range []byte{1, 2} {
		hdr := ppHeader(t, v, "198.51.100.3:1234", "192.0.2.1:80")
		in := append(slices.Clone(hdr), "GET / HTTP/1.1\r\n"...)
		r := iotest.OneByteReader(bytes.NewReader(in))
		got, rest, err := readProxyHeader(r)
		if err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		if got.SourceAddr.String() != "198.51.100.3:1234" {
			t.Errorf("v%d: source %v", v, got.SourceAddr)
		}
		unread, _ := io.ReadAll(r)
		if s := string(rest) + string(unread); s != "GET / HTTP/1.1\r\n" {
			t.Errorf("v%d: bytes after the header: %q", v, s)
		}
	}
	for _, bad := range []string{"GET / HTTP/1.1\r\n", "PROXX TCP4", "PROXY " + strings.Repeat("x", 120)} {
		if _, _, err := readProxyHeader(iotest.OneByteReader(strings.NewReader(bad))); err == nil {
			t.Errorf("%q: read without error", bad)
		}
	}
}
