package clienthello

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// recordConn captures what a TLS client writes and fails its reads, so
// the handshake stops after the ClientHello.
type recordConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *recordConn) Write(p []byte) (int, error)      { return c.buf.Write(p) }
func (c *recordConn) Read([]byte) (int, error)         { return 0, errors.New("capture only") }
func (c *recordConn) Close() error                     { return nil }
func (c *recordConn) SetDeadline(time.Time) error      { return nil }
func (c *recordConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recordConn) SetWriteDeadline(time.Time) error { return nil }

// goHello returns the ClientHello crypto/tls sends for serverName (an IP
// or "" sends none).
func goHello(t testing.TB, serverName string, maxVersion uint16) []byte {
	t.Helper()
	c := &recordConn{}
	cfg := &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MaxVersion: maxVersion}
	_ = tls.Client(c, cfg).Handshake()
	if c.buf.Len() == 0 {
		t.Fatal("no ClientHello captured")
	}
	return c.buf.Bytes()
}

// refragment re-splits the handshake bytes of the first record(s) of hello
// into records of at most sizes[i] bytes each, the last size repeated.
func refragment(t testing.TB, hello []byte, sizes ...int) []byte {
	t.Helper()
	var msg []byte
	for b := hello; len(b) >= 5; {
		l := int(b[3])<<8 | int(b[4])
		msg = append(msg, b[5:5+l]...)
		b = b[5+l:]
	}
	var out []byte
	for i := 0; len(msg) > 0; i++ {
		n := min(sizes[min(i, len(sizes)-1)], len(msg))
		out = append(out, 22, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestServerName(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name  string
		hello []byte
		want  string
	}{
		{"go tls1.3 sni", goHello(t, "a.test", 0), "a.test"},
		{"go tls1.2 sni", goHello(t, "Mixed.Case.Test", tls.VersionTLS12), "Mixed.Case.Test"},
		{"go no sni (IP)", goHello(t, "192.0.2.1", 0), ""},
		{"go fragmented in 40-byte records", refragment(t, goHello(t, "blog.domain.tld", 0), 40), "blog.domain.tld"},
		{"go fragmented header split", refragment(t, goHello(t, "x.apps.domain.tld", 0), 2, 1, 500), "x.apps.domain.tld"},
		{"go fragmented in MaxRecords records", refragment(t, goHello(t, "a.test", 0), (len(goHello(t, "a.test", 0))+MaxRecords-1)/MaxRecords), "a.test"},
		{"trailing dot", namedHello(t, "abcdefg", 6, '.'), "abcdef"},
		{"openssl sni", read("openssl-sni.bin"), "blog.domain.tld"},
		{"openssl no sni", read("openssl-nosni.bin"), ""},
		{"openssl tls1.2", read("openssl-tls12-sni.bin"), "www.b.test"},
		{"openssl fragmented", refragment(t, read("openssl-sni.bin"), 100), "blog.domain.tld"},
	}
	scratch := make([]byte, MaxHello+4)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ServerName(tt.hello, scratch)
			if err != nil {
				t.Fatalf("ServerName: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			// Every proper prefix (TCP segments) is incomplete, never wrong.
			for i := 0; i < len(tt.hello); i++ {
				got, err := ServerName(tt.hello[:i], scratch)
				if err == nil {
					// Only possible when trailing bytes are not part of the message.
					if string(got) != tt.want {
						t.Fatalf("prefix %d: got %q", i, got)
					}
					continue
				}
				if err != ErrIncomplete {
					t.Fatalf("prefix %d: %v, want ErrIncomplete", i, err)
				}
			}
		})
	}
}

func TestServerNameErrors(t *testing.T) {
	hello := goHello(t, "a.test", 0)
	corrupt := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), hello...)) }
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"http", []byte("GET / HTTP/1.1\r\n"), ErrNotTLS},
		{"ssl2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, ErrNotTLS},
		{"not version 3", []byte{22, 2, 0, 0, 5}, ErrNotTLS},
		{"server hello type", corrupt(func(b []byte) []byte { b[5] = 2; return b }), ErrMalformed},
		{"zero record", []byte{22, 3, 1, 0, 0}, ErrMalformed},
		{"huge message", []byte{22, 3, 1, 0, 4, 1, 0xff, 0xff, 0xff}, ErrTooLarge},
		{"extensions length off", corrupt(func(b []byte) []byte {
			// shorten the handshake and record by one byte, leaving the extension lengths inconsistent
			b = b[:len(b)-1]
			b[4]--
			b[8]--
			return b
		}), ErrMalformed},
		{"bad name chars", namedHello(t, "abcdef", 2, ' '), ErrBadName},
		{"only a dot", namedHello(t, "a", 0, '.'), ErrBadName},
		{"1-byte records", refragment(t, hello, 1), ErrFragmented},
	}
	scratch := make([]byte, MaxHello+4)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ServerName(tt.in, scratch); err != tt.want {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

// namedHello is goHello(t, name) with the byte at index i of its
// server_name set to c: a name crypto/tls would not send. The name is
// found with its length before it, not by its bytes alone, which a short
// name may share with the random fields.
func namedHello(t *testing.T, name string, i int, c byte) []byte {
	t.Helper()
	h := goHello(t, name, 0)
	at := bytes.Index(h, append([]byte{0, byte(len(name))}, name...))
	if at < 0 {
		t.Fatalf("no server_name %q in the ClientHello", name)
	}
	h[at+2+i] = c
	return h
}

func TestServerNameAllocs(t *testing.T) {
	hello := goHello(t, "a.test", 0)
	frag := refragment(t, hello, 64)
	scratch := make([]byte, MaxHello+4)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := ServerName(hello, scratch); err != nil {
			t.Fatal(err)
		}
		if _, err := ServerName(frag, scratch); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations, want 0", allocs)
	}
}

// FuzzServerName checks that the parser never panics, that fragmenting a
// hello does not change its answer, and that a found name is valid.
func FuzzServerName(f *testing.F) {
	for _, name := range []string{"openssl-sni.bin", "openssl-nosni.bin", "openssl-tls12-sni.bin"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, 50)
	}
	f.Add(goHello(f, "a.test", 0), 3)
	f.Add(goHello(f, "a.test", 0), 40)
	f.Add([]byte{22, 3, 1, 0, 4, 1, 0, 0, 0}, 1)
	f.Fuzz(func(t *testing.T, b []byte, size int) {
		scratch := make([]byte, MaxHello+4)
		name, err := ServerName(b, scratch)
		if err != nil {
			return
		}
		if len(name) > 0 && !validName(name) {
			t.Fatalf("invalid name %q accepted", name)
		}
		if size < 1 || size > 1<<14 || len(b) < 5 {
			return
		}
		l := int(b[3])<<8 | int(b[4])
		if 5+l > len(b) {
			return
		}
		// Re-split the first record only when it holds the whole message.
		msgLen := int(b[6])<<16 | int(b[7])<<8 | int(b[8])
		if 4+msgLen > l {
			return
		}
		rec := append([]byte{22, 3, 1, byte((4 + msgLen) >> 8), byte(4 + msgLen)}, b[5:5+4+msgLen]...)
		frag := refragment(t, rec, size)
		name2, err := ServerName(frag, make([]byte, MaxHello+4))
		if err == ErrFragmented && (4+msgLen+size-1)/size > MaxRecords {
			return // refused for its record count, as it should be
		}
		if err != nil || !bytes.Equal(name, name2) {
			t.Fatalf("fragmented into %d-byte records: %q %v, whole: %q", size, name2, err, name)
		}
	})
}
