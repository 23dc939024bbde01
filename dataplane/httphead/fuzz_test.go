package httphead

import (
	"bytes"
	"io"
	"net/http/httputil"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// seeds are the request fixtures in testdata/requests plus the smuggling
// cases of the table tests.
func requestSeeds(f *testing.F) {
	files, _ := filepath.Glob("testdata/requests/*.http")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
		"GET http://b/ HTTP/1.1\r\nHost: a\r\nConnection: close, x\r\nX: 1\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n 2\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		// RFC 9112 §3.2: absolute-form without Host, with two, with a bad one.
		"GET http://a.test/ HTTP/1.1\r\n\r\n",
		"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nhost: b.test\r\n\r\n",
		"GET http://a.test/ HTTP/1.1\r\nHost: a/b\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\n\r\n",
		// A Connection option naming a framing field, a repeated length.
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: content-length\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: x, Transfer-Encoding\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\n",
		"CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n",
		// An absolute-form target whose authority the Host field does
		// not match, or an HTTP/1.0 one without Host.
		"GET http://a.test/x HTTP/1.1\r\nHost: other.test\r\n\r\n",
		"GET HTTPS://A.test:8443?q HTTP/1.1\r\nX: 1\r\nhost: a.TEST:8443\r\n\r\n",
		"GET http://a.test/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		// HTTP/1.2+ goes to the server as HTTP/1.1 (RFC 9110 §6.2).
		"GET /v HTTP/1.7\r\nHost: a\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
}

// FuzzParseRequest checks that parsing never panics, that a parsed head's
// length is where HeadComplete found its end, that a rewritten head parses
// again with the same routing and framing and no hop-by-hop fields, and
// that the server gets as Host the host the request was routed by, whether
// the head goes as it came or rewritten.
func FuzzParseRequest(f *testing.F) {
	requestSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := HeadComplete(b, 0)
		if err != nil || n == 0 {
			return
		}
		var r Request
		if err := ParseRequest(b[:n], &r); err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error %v is not an *Error", err)
			}
			return
		}
		if r.HeadLen != n {
			t.Fatalf("HeadLen %d, HeadComplete %d", r.HeadLen, n)
		}
		if hosts := countHostLines(b[:n]); hosts > 1 || (r.Minor == 1 && hosts != 1) {
			t.Fatalf("accepted an HTTP/1.%d request with %d Host fields (RFC 9112 §3.2):\n%q", r.Minor, hosts, b[:n])
		}
		if !r.NeedsRewrite(&Rewrite{}) {
			checkHost(t, b[:n], &r, "head forwarded as is")
		}
		rw := Rewrite{ForwardedFor: netip.MustParseAddr("192.0.2.1"), Proto: "http"}
		out := AppendRequest(nil, b[:n], &r, &rw)
		checkHost(t, out, &r, "rewritten head")
		// Only an HTTP/1.2+ version changes, to ours (RFC 9110 §6.2).
		line := requestLine(b[:n])
		if r.Flags&VersionOther != 0 {
			line = append(bytes.Clone(line[:len(line)-8]), "HTTP/1.1"...)
		}
		if !bytes.Equal(requestLine(out), line) {
			t.Fatalf("rewrite changed the request line:\n%q\n%q", b[:n], out)
		}
		var r2 Request
		if err := ParseRequest(out, &r2); err != nil {
			t.Fatalf("rewritten head does not parse: %v\n%q", err, out)
		}
		if r2.HeadLen != len(out) || !bytes.Equal(r2.Host, r.Host) || r2.ContentLength != r.ContentLength ||
			r2.Chunked != r.Chunked || r2.Upgrade() != r.Upgrade() || r2.Flags&(HopOther|ConnClose|CLList) != 0 ||
			r2.NeedsRewrite(&Rewrite{}) {
			t.Fatalf("rewrite changed the request:\n%q\n%q", b[:n], out)
		}
	})
}

// FuzzParseResponse checks the response parser and its rewrite the same way.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close, x\r\nX: 1\r\n\r\n",
		"HTTP/1.0 304 Not Modified\r\nKeep-Alive: 5\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: content-length\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2,2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 426 Upgrade Required\r\nUpgrade: HTTP/3.0\r\nConnection: close, upgrade\r\n\r\n",
		"HTTP/1.5 200 OK\r\nContent-Length: 2\r\n\r\n",
	} {
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, b []byte, keepAlive bool) {
		n, err := HeadComplete(b, 0)
		if err != nil || n == 0 {
			return
		}
		var r Response
		if err := ParseResponse(b[:n], &r); err != nil {
			return
		}
		// Fields named by Connection go with it (RFC 9110 §7.6.1); an
		// Upgrade stays only in a 101, which switches this connection.
		dropUpgrade := r.Status != 101 && r.Flags&ConnUpgrade != 0
		if r.ForwardAsIs(keepAlive, 1) && (r.Flags&(HopOther|CLList|VersionOther) != 0 || (dropUpgrade && r.Flags&HasUpgrade != 0)) {
			t.Fatalf("a head to rewrite would go as it came:\n%q", b[:n])
		}
		out := AppendResponse(nil, b[:n], &r, keepAlive, 1)
		var r2 Response
		if err := ParseResponse(out, &r2); err != nil {
			t.Fatalf("rewritten head does not parse: %v\n%q", err, out)
		}
		if r2.Status != r.Status || r2.ContentLength != r.ContentLength || r2.Chunked != r.Chunked || r2.Flags&(HopOther|CLList|VersionOther) != 0 {
			t.Fatalf("rewrite changed framing:\n%q\n%q", b[:n], out)
		}
		if r.Status >= 200 && r2.KeepAlive() != keepAlive {
			t.Fatalf("rewrite says keep-alive %v, want %v:\n%q", r2.KeepAlive(), keepAlive, out)
		}
		if dropUpgrade && r2.Flags&HasUpgrade != 0 || r.Status == 101 && r2.Flags&HasUpgrade != r.Flags&HasUpgrade {
			t.Fatalf("rewrite kept or lost Upgrade wrongly:\n%q\n%q", b[:n], out)
		}
		// For an HTTP/1.0 client a chunked body is decoded and ended by
		// the close: its head loses the Transfer-Encoding, and only that.
		if r.ForwardAsIs(false, 0) && r.Chunked {
			t.Fatalf("a chunked head would go to an HTTP/1.0 client as it came:\n%q", b[:n])
		}
		out = AppendResponse(nil, b[:n], &r, false, 0)
		var r3 Response
		if err := ParseResponse(out, &r3); err != nil {
			t.Fatalf("head rewritten for HTTP/1.0 does not parse: %v\n%q", err, out)
		}
		if r.Chunked && (r3.Flags&HasTE != 0 || r3.ContentLength != -1) {
			t.Fatalf("head rewritten for HTTP/1.0 keeps a framing for the chunked body:\n%q\n%q", b[:n], out)
		}
		if !r.Chunked && (r3.ContentLength != r.ContentLength || r3.Flags&HasTE != r.Flags&HasTE) {
			t.Fatalf("head rewritten for HTTP/1.0 changed framing:\n%q\n%q", b[:n], out)
		}
		if dropUpgrade && r3.Flags&HasUpgrade != 0 {
			t.Fatalf("head rewritten for HTTP/1.0 keeps an Upgrade named by Connection:\n%q\n%q", b[:n], out)
		}
		if r3.Status != r.Status || (r.Status >= 200 && r3.KeepAlive()) {
			t.Fatalf("head rewritten for HTTP/1.0: status %d, keep-alive %v:\n%q", r3.Status, r3.KeepAlive(), out)
		}
	})
}

// FuzzChunked checks that scanning a body in two pieces finds the same end
// as scanning it whole.
func FuzzChunked(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\nGET"), 3)
	f.Add([]byte("3;a=b\r\nabc\r\n0\r\nX: y\r\n\r\n"), 9)
	f.Add([]byte("fffffffffffffff\r\n"), 1)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		var whole Chunked
		n, err := whole.Scan(b)
		if n > len(b) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		if split < 0 || split > len(b) {
			return
		}
		var parts Chunked
		n1, err1 := parts.Scan(b[:split])
		total, errP := n1, err1
		if err1 == nil && !parts.Done() {
			n2, err2 := parts.Scan(b[split:])
			total += n2
			errP = err2
		}
		if (err == nil) != (errP == nil) || whole.Done() != parts.Done() {
			t.Fatalf("whole: n=%d err=%v done=%v; parts: n=%d err=%v done=%v", n, err, whole.Done(), total, errP, parts.Done())
		}
		if err == nil && n != total {
			t.Fatalf("whole consumed %d, parts %d", n, total)
		}
		// Decode, in the same two pieces, ends where Scan ends, refuses
		// what it refuses, and gives the data Go's own chunked reader
		// reads from the body (where that reader takes it).
		var dec Chunked
		var data []byte
		used := 0
		var errD error
		for _, part := range [][]byte{b[:split], b[split:]} {
			if dec.Done() {
				break
			}
			p := bytes.Clone(part)
			k, d, err := dec.Decode(p)
			used += k
			data = append(data, p[:d]...)
			if errD = err; err != nil {
				break
			}
		}
		if (err == nil) != (errD == nil) || whole.Done() != dec.Done() || (err == nil && used != n) {
			t.Fatalf("Scan: n=%d err=%v done=%v; Decode: n=%d err=%v done=%v", n, err, whole.Done(), used, errD, dec.Done())
		}
		if err == nil && whole.Done() {
			if want, rerr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(b[:n]))); rerr == nil && !bytes.Equal(data, want) {
				t.Fatalf("Decode: %q; net/http/httputil: %q", data, want)
			}
		}
	})
}

// chunkLine is RFC 9112 §7.1.1's chunk size line, written out apart from
// the scanner: a size (at most 15 digits, the scanner's bound) and its
// extensions.
var chunkLine = regexp.MustCompile(`^[0-9A-Fa-f]{1,15}` +
	`(?:[ \t]*;[ \t]*` + token + `(?:[ \t]*=[ \t]*(?:` + token + `|"(?:[\t !#-\[\]-~\x{80}-\x{ff}]|\\[\t -~\x{80}-\x{ff}])*"))?)*` +
	`\r\n$`)

const token = "[!#$%&'*+.^_`|~0-9A-Za-z-]+"

// FuzzChunkLine checks the scanner's verdict on a chunk size line against
// the grammar's.
func FuzzChunkLine(f *testing.F) {
	for _, s := range []string{"1", "a;b", "2 ; a = b", `3;a="b\"c"`, `4;a="b`, "5;a=b c", "6;a b", "7;=b", "8;a=\"\x80\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		// Short lines: the grammar needs no more, and the regexp's time
		// grows with the line (the length bound has its table test).
		if strings.ContainsAny(line, "\r\n") || len(line) > 256 {
			return
		}
		// The grammar reads bytes; the regexp reads runes: each byte as the
		// rune of its value (Latin-1).
		runes := make([]rune, 0, len(line)+2)
		for i := 0; i < len(line); i++ {
			runes = append(runes, rune(line[i]))
		}
		want := chunkLine.MatchString(string(append(runes, '\r', '\n')))
		var c Chunked
		_, err := c.Scan([]byte(line + "\r\n"))
		if got := err == nil; got != want {
			t.Fatalf("%q: scanner accepts %v, grammar %v (err %v)", line, got, want, err)
		}
	})
}

// checkHost checks, independently of the parser, that head (sent to the
// server for r) has at most one Host field, whose value is r.Host up to
// case, and has one whenever it is HTTP/1.1 or its target is
// absolute-form (RFC 9112 §3.2, §3.2.2). Without a Host field r.Host is
// empty.
func checkHost(t *testing.T, head []byte, r *Request, what string) {
	t.Helper()
	target := bytes.Fields(requestLine(head))[1]
	absolute := target[0] != '/' && target[0] != '*'
	hosts, value := 0, []byte(nil)
	for _, l := range bytes.Split(head, []byte("\r\n"))[1:] {
		if i := bytes.IndexByte(l, ':'); i == 4 && bytes.EqualFold(l[:4], []byte("host")) {
			hosts++
			value = bytes.Trim(l[5:], " \t")
		}
	}
	if hosts > 1 || (hosts == 0 && (r.Minor == 1 || absolute)) || !bytes.EqualFold(value, r.Host) {
		t.Fatalf("%s has %d Host fields, the last %q, routed by %q:\n%q", what, hosts, value, r.Host, head)
	}
}

func requestLine(head []byte) []byte {
	return head[:bytes.Index(head, []byte("\r\n"))]
}

// countHostLines counts the Host field lines of a head, independently of
// the parser.
func countHostLines(head []byte) int {
	lines := bytes.Split(head, []byte("\r\n"))
	n := 0
	for _, l := range lines[1:] {
		if i := bytes.IndexByte(l, ':'); i == 4 && bytes.EqualFold(l[:4], []byte("host")) {
			n++
		}
	}
	return n
}
