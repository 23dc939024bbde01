package httphead

import (
	"net/netip"
	"strings"
	"testing"
)

func parseReq(t *testing.T, s string) (*Request, error) {
	t.Helper()
	b := []byte(s)
	n, err := HeadComplete(b, 0)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return nil, ErrIncomplete
	}
	var r Request
	err = ParseRequest(b[:n], &r)
	return &r, err
}

func TestParseRequestValid(t *testing.T) {
	tests := []struct {
		name, in  string
		host      string
		minor     uint8
		cl        int64
		chunked   bool
		keepAlive bool
		upgrade   bool
		flags     Flags
	}{
		{"minimal 1.1", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test", 1, -1, false, true, false, 0},
		{"1.0 no host", "GET / HTTP/1.0\r\n\r\n", "", 0, -1, false, false, false, 0},
		{"1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", "", 0, -1, false, true, false, ConnKeepAlive | HasConnField | HopByHop},
		{"close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "a", 1, -1, false, false, false, ConnClose | HasConnField | HopByHop},
		{"content-length", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n", "a", 1, 42, false, true, false, HasCL},
		{"identical CL list", "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n", "a", 1, 5, false, true, false, HasCL | CLList},
		{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", "a", 1, -1, true, true, false, HasTE},
		{"gzip then chunked over two fields", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", "a", 1, -1, true, true, false, HasTE | TECoded},
		{"host with port, mixed case", "GET / HTTP/1.1\r\nhOsT:   Www.B.Test:8080  \r\n\r\n", "Www.B.Test:8080", 1, -1, false, true, false, 0},
		{"ipv6 host", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:80\r\n\r\n", "[2001:db8::1]:80", 1, -1, false, true, false, 0},
		{"absolute form overrides Host", "GET http://b.test/x?y HTTP/1.1\r\nHost: a.test\r\n\r\n", "b.test", 1, -1, false, true, false, 0},
		{"options asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", "a", 1, -1, false, true, false, 0},
		{"websocket upgrade", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", "a", 1, -1, false, true, true, ConnKeepAlive | ConnUpgrade | HasUpgrade | HasConnField | HopByHop},
		{"expect", "PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 1\r\n\r\n", "a", 1, 1, false, true, false, Expect100 | HasCL},
		{"connection names a field", "GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Foo\r\nX-Foo: 1\r\n\r\n", "a", 1, -1, false, true, false, HasConnField | HopByHop | HopOther},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", "", 1, -1, false, true, false, 0},
		{"tab in value", "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb\r\n\r\n", "a", 1, -1, false, true, false, 0},
		{"obs-text in value", "GET / HTTP/1.1\r\nHost: a\r\nX: caf\xc3\xa9\r\n\r\n", "a", 1, -1, false, true, false, 0},
		{"1.7 read as 1.1", "GET / HTTP/1.7\r\nHost: a\r\n\r\n", "a", 1, -1, false, true, false, VersionOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseReq(t, tt.in)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if string(r.Host) != tt.host || r.Minor != tt.minor || r.ContentLength != tt.cl || r.Chunked != tt.chunked {
				t.Errorf("got host %q minor %d cl %d chunked %v", r.Host, r.Minor, r.ContentLength, r.Chunked)
			}
			if r.KeepAlive() != tt.keepAlive || r.Upgrade() != tt.upgrade {
				t.Errorf("got keepAlive %v upgrade %v", r.KeepAlive(), r.Upgrade())
			}
			if r.Flags != tt.flags {
				t.Errorf("flags %b, want %b", r.Flags, tt.flags)
			}
			if r.HeadLen != len(tt.in) {
				t.Errorf("HeadLen %d, want %d", r.HeadLen, len(tt.in))
			}
		})
	}
}

func TestParseRequestInvalid(t *testing.T) {
	long := "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-A: 1\r\n", MaxFields) + "\r\n"
	tests := []struct {
		name, in string
		status   int
	}{
		{"CL and TE", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"TE and CL", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400},
		{"conflicting CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
		{"conflicting CL list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n", 400},
		{"signed CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\n", 400},
		{"hex CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x3\r\n\r\n", 400},
		{"empty CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", 400},
		{"huge CL", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n", 400},
		{"TE not chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"TE chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 400},
		{"TE chunked then gzip", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
		{"TE unknown coding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n", 501},
		{"TE garbage", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \x01chunked\r\n\r\n", 400},
		{"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 3\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\n continued\r\n\r\n", 400},
		{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\x002\r\n\r\n", 400},
		{"CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r2\r\n\r\n", 400},
		{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", 400},
		{"bare LF in fields", "GET / HTTP/1.1\r\nHost: a\nX: 1\r\n\r\n", 400},
		{"no host 1.1", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"bad host chars", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"host with slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
		{"host bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", 400},
		{"userinfo in absolute form", "GET http://u@a/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"HTTP/3.1", "GET / HTTP/3.1\r\nHost: a\r\n\r\n", 505},
		{"HTTP/0.9", "GET /\r\n\r\n", 400},
		{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"two spaces", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"CTL in target", "GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"relative target", "GET x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"CONNECT", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405},
		{"CONNECT HTTP/1.0 without host", "CONNECT a:443 HTTP/1.0\r\n\r\n", 405},
		// RFC 9112 §3.2's 400 holds for an authority-form target too.
		{"CONNECT origin-form", "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", 405},
		{"CONNECT origin-form with body", "CONNECT /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n", 405},
		{"absolute form, empty host", "GET http://:80/ HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"fragment in target", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"fragment in absolute form", "GET http://a/#b HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"CONNECT without host", "CONNECT a:443 HTTP/1.1\r\n\r\n", 400},
		{"CONNECT two hosts", "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\nHost: a:443\r\n\r\n", 400},
		{"CONNECT bad host", "CONNECT a:443 HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
		{"OPTIONS * without host", "OPTIONS * HTTP/1.1\r\n\r\n", 400},
		{"absolute form without host", "GET http://a/ HTTP/1.1\r\n\r\n", 400},
		{"asterisk not OPTIONS", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nfoo\r\n\r\n", 400},
		{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: x\r\n\r\n", 400},
		{"too many fields", long, 431},
		{"bad connection option", "GET / HTTP/1.1\r\nHost: a\r\nConnection: a b\r\n\r\n", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseReq(t, tt.in)
			e, ok := err.(*Error)
			if !ok {
				t.Fatalf("got %v, want an *Error with status %d", err, tt.status)
			}
			if e.Status != tt.status {
				t.Errorf("status %d (%v), want %d", e.Status, e, tt.status)
			}
		})
	}
}

func TestHeadComplete(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /next"
	want := strings.Index(head, "\r\n\r\n") + 4
	// Feed byte by byte, resuming from len-3 as a server does.
	for i := 1; i <= len(head); i++ {
		n, err := HeadComplete([]byte(head[:i]), i-4)
		if err != nil {
			t.Fatalf("at %d: %v", i, err)
		}
		if i < want && n != 0 {
			t.Fatalf("at %d: complete too early (%d)", i, n)
		}
		if i >= want {
			if n != want {
				t.Fatalf("at %d: got %d, want %d", i, n, want)
			}
			break
		}
	}
	if _, err := HeadComplete([]byte("GET / HTTP/1.1\nHost"), 0); err != ErrBareLF {
		t.Errorf("bare LF: got %v", err)
	}
}

func TestParseResponse(t *testing.T) {
	tests := []struct {
		name, in  string
		status    int
		kind      int
		head      bool
		keepAlive bool
		err       bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", 200, BodyLength, false, true, false},
		{"zero length", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 200, BodyNone, false, true, false},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 200, BodyChunked, false, true, false},
		{"gzip only: until close", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 200, BodyUntilClose, false, true, false},
		{"no framing", "HTTP/1.1 200 OK\r\n\r\n", 200, BodyUntilClose, false, true, false},
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n", 200, BodyNone, true, true, false},
		{"204", "HTTP/1.1 204 No Content\r\n\r\n", 204, BodyNone, false, true, false},
		{"304", "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n", 304, BodyNone, false, true, false},
		{"100", "HTTP/1.1 100 Continue\r\n\r\n", 100, BodyNone, false, true, false},
		{"no reason", "HTTP/1.1 200\r\nContent-Length: 1\r\n\r\n", 200, BodyLength, false, true, false},
		{"1.0 close", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", 200, BodyLength, false, false, false},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n", 200, BodyLength, false, false, false},
		{"TE and CL", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 0, false, false, true},
		{"1.0 with TE", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n", 0, 0, false, false, true},
		{"bad status", "HTTP/1.1 20 OK\r\n\r\n", 0, 0, false, false, true},
		{"status 600", "HTTP/1.1 600 OK\r\n\r\n", 0, 0, false, false, true},
		{"garbage", "hello\r\n\r\n", 0, 0, false, false, true},
		{"bad field", "HTTP/1.1 200 OK\r\nX : 1\r\n\r\n", 0, 0, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Response
			err := ParseResponse([]byte(tt.in), &r)
			if tt.err {
				e, ok := err.(*Error)
				if !ok || e.Status != 502 {
					t.Fatalf("got %v, want a 502 error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != tt.status || r.BodyKind(tt.head) != tt.kind || r.KeepAlive() != tt.keepAlive || r.HeadLen != len(tt.in) {
				t.Errorf("status %d kind %d keepAlive %v headLen %d", r.Status, r.BodyKind(tt.head), r.KeepAlive(), r.HeadLen)
			}
		})
	}
}

func TestAppendRequest(t *testing.T) {
	tests := []struct {
		name, in string
		rw       Rewrite
		rewrite  bool
		want     string
	}{
		{"as is", "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", Rewrite{}, false, ""},
		{"close dropped", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAccept: */*\r\n\r\n", Rewrite{}, true,
			"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"},
		{"hop-by-hop dropped", "GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nProxy-Connection: k\r\nX-Keep: 2\r\n\r\n", Rewrite{}, true,
			"GET / HTTP/1.1\r\nHost: a\r\nX-Keep: 2\r\n\r\n"},
		{"1.0 asks keep-alive", "GET / HTTP/1.0\r\n\r\n", Rewrite{}, true,
			"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
		{"forwarded", "GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-Proto: https\r\n\r\n",
			Rewrite{ForwardedFor: netip.MustParseAddr("2001:db8::9"), Proto: "http"}, true,
			"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 198.51.100.7\r\nX-Forwarded-For: 2001:db8::9\r\nX-Forwarded-Proto: http\r\n\r\n"},
		{"upgrade kept", "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, close\r\nUpgrade: websocket\r\n\r\n", Rewrite{}, true,
			"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"},
		{"stray upgrade dropped", "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nUpgrade: h2c\r\n\r\n", Rewrite{}, true,
			"GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"1.0 keep-alive upgrade ignored", "GET / HTTP/1.0\r\nConnection: keep-alive, upgrade\r\nUpgrade: websocket\r\n\r\n", Rewrite{}, true,
			"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
		{"upgrade with a body not passed on", "POST /ws HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: websocket\r\nContent-Length: 2\r\n\r\n", Rewrite{}, true,
			"POST /ws HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\n"},
		{"1.0 upgrade ignored", "GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", Rewrite{}, true,
			"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"},
		// A Connection option naming a framing field or Host must not
		// remove it: the body would reach the server as a new request.
		{"Connection names Content-Length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 29\r\nConnection: content-length\r\n\r\n", Rewrite{}, true,
			"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 29\r\n\r\n"},
		{"Connection names Transfer-Encoding", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding, x\r\nX: 1\r\n\r\n", Rewrite{}, true,
			"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"},
		{"Connection names Host", "GET / HTTP/1.1\r\nHost: a\r\nConnection: HOST\r\n\r\n", Rewrite{}, true,
			"GET / HTTP/1.1\r\nHost: a\r\n\r\n"},
		{"repeated Content-Length sent as one", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\nHost: a\r\nContent-Length: 005\r\n\r\n", Rewrite{}, true,
			"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n"},
		// RFC 9112 §3.2.2: the server routed to by an absolute-form
		// target's authority gets that authority as Host, not the
		// client's (cache or reset-link poisoning); the target stays.
		{"absolute-form same Host", "GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n", Rewrite{}, false, ""},
		{"absolute-form Host differing in case", "GET http://A.Test/x HTTP/1.1\r\nhost: a.TEST\r\n\r\n", Rewrite{}, false, ""},
		{"absolute-form other Host", "GET http://a.test/x HTTP/1.1\r\nHost: other.test\r\n\r\n", Rewrite{}, true,
			"GET http://a.test/x HTTP/1.1\r\nHost: a.test\r\n\r\n"},
		{"absolute-form other Host among fields", "GET https://a.test:8443?q HTTP/1.1\r\nAccept: */*\r\nhOST:  other.test \r\nX: 1\r\n\r\n", Rewrite{}, true,
			"GET https://a.test:8443?q HTTP/1.1\r\nHost: a.test:8443\r\nAccept: */*\r\nX: 1\r\n\r\n"},
		{"absolute-form Host without port", "GET http://a.test:8080/ HTTP/1.1\r\nHost: a.test\r\n\r\n", Rewrite{}, true,
			"GET http://a.test:8080/ HTTP/1.1\r\nHost: a.test:8080\r\n\r\n"},
		{"absolute-form empty Host", "GET http://a.test/ HTTP/1.1\r\nHost:\r\n\r\n", Rewrite{}, true,
			"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"},
		{"absolute-form 1.0 without Host", "GET http://a.test/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", Rewrite{}, true,
			"GET http://a.test/ HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n"},
		{"absolute-form other Host, forwarded, closing", "GET http://a.test/ HTTP/1.1\r\nConnection: close\r\nHost: b.test\r\n\r\n",
			Rewrite{ForwardedFor: netip.MustParseAddr("192.0.2.1"), Proto: "https"}, true,
			"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: https\r\n\r\n"},
		{"absolute-form same Host, forwarded", "GET http://a.test/ HTTP/1.1\r\nX: 1\r\nHost: a.test\r\n\r\n",
			Rewrite{ForwardedFor: netip.MustParseAddr("192.0.2.1"), Proto: "http"}, true,
			"GET http://a.test/ HTTP/1.1\r\nX: 1\r\nHost: a.test\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\n\r\n"},
		// RFC 9110 §6.2: a proxy sends its own version, HTTP/1.1 for
		// HTTP/1.2+; HTTP/1.0 and 1.1 keep theirs.
		{"1.7 sent as 1.1", "POST /x?y HTTP/1.7\r\nHost: a\r\nContent-Length: 2\r\nAccept: */*\r\n\r\n", Rewrite{}, true,
			"POST /x?y HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nAccept: */*\r\n\r\n"},
		{"1.9 absolute-form closing sent as 1.1", "GET http://a.test/ HTTP/1.9\r\nHost: b\r\nConnection: close\r\n\r\n", Rewrite{}, true,
			"GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n"},
		{"plain 1.1 as is", "GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n", Rewrite{}, false, ""},
		{"1.0 keep-alive as is", "GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", Rewrite{}, false, ""},
		{"1.0 forwarded keeps 1.0", "GET / HTTP/1.0\r\nHost: a\r\n\r\n", Rewrite{ForwardedFor: netip.MustParseAddr("192.0.2.1"), Proto: "http"}, true,
			"GET / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nX-Forwarded-For: 192.0.2.1\r\nX-Forwarded-Proto: http\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseReq(t, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.NeedsRewrite(&tt.rw); got != tt.rewrite {
				t.Fatalf("NeedsRewrite %v, want %v", got, tt.rewrite)
			}
			if !tt.rewrite {
				return
			}
			got := string(AppendRequest(nil, []byte(tt.in), r, &tt.rw))
			if got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestAppendResponse(t *testing.T) {
	tests := []struct {
		name, in    string
		keepAlive   bool
		clientMinor uint8
		asIs        bool
		want        string
	}{
		{"nginx keep-alive", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", true, 1, true, ""},
		{"client closes", "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\n", false, 1, false,
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"},
		{"server closes, client stays", "HTTP/1.1 200 OK\r\nConnection: close\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\n", true, 1, false,
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"},
		{"1.0 client kept alive", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", true, 0, false,
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"},
		{"switching", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", false, 1, true, ""},
		{"Connection names Content-Length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: content-length\r\n\r\n", true, 1, false,
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"},
		{"repeated Content-Length sent as one", "HTTP/1.1 200 OK\r\nContent-Length: 2,2\r\nContent-Length: 2\r\nX: y\r\n\r\n", true, 1, false,
			"HTTP/1.1 200 OK\r\nX: y\r\nContent-Length: 2\r\n\r\n"},
		// RFC 9110 §7.6.1: an Upgrade named by Connection goes with it
		// unless the response switches (Apache mod_http2 offers h2c).
		{"upgrade offered", "HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n", true, 1, false,
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n"},
		{"upgrade offered, closing", "HTTP/1.1 200 OK\r\nupgrade: h2,h2c\r\nConnection: Upgrade, close\r\nContent-Length: 2\r\n\r\n", false, 1, false,
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n"},
		{"upgrade offered to a 1.0 client", "HTTP/1.1 200 OK\r\nConnection: upgrade, keep-alive\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n", true, 0, false,
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"},
		{"426 names Upgrade", "HTTP/1.1 426 Upgrade Required\r\nUpgrade: HTTP/3.0\r\nConnection: Upgrade\r\nContent-Length: 0\r\n\r\n", true, 1, false,
			"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n"},
		{"Connection: upgrade without Upgrade", "HTTP/1.1 200 OK\r\nConnection: upgrade\r\nContent-Length: 2\r\n\r\n", true, 1, true, ""},
		{"switching, rewritten", "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade, x\r\nX: 1\r\nUpgrade: websocket\r\n\r\n", false, 1, false,
			"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"},
		// RFC 9110 §6.2: the client gets the proxy's version, HTTP/1.1 for
		// HTTP/1.2+; an HTTP/1.0 status line keeps its version.
		{"1.5 sent as 1.1", "HTTP/1.5 200 OK\r\nContent-Length: 2\r\nX: y\r\n\r\n", true, 1, false,
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX: y\r\n\r\n"},
		{"1.9 without reason, closing", "HTTP/1.9 404\r\nContent-Length: 0\r\n\r\n", false, 1, false,
			"HTTP/1.1 404\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"},
		{"1.0 keeps 1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", true, 1, false,
			"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Response
			if err := ParseResponse([]byte(tt.in), &r); err != nil {
				t.Fatal(err)
			}
			if got := r.ForwardAsIs(tt.keepAlive, tt.clientMinor); got != tt.asIs {
				t.Fatalf("ForwardAsIs %v, want %v", got, tt.asIs)
			}
			if tt.asIs {
				return
			}
			got := string(AppendResponse(nil, []byte(tt.in), &r, tt.keepAlive, tt.clientMinor))
			if got != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestParseAllocs(t *testing.T) {
	b := []byte("GET /index.html HTTP/1.1\r\nHost: www.b.test\r\nUser-Agent: x\r\nAccept: */*\r\nConnection: close\r\n\r\n")
	resp := []byte("HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\n")
	// The Host and Upgrade rewrites.
	abs := []byte("GET http://www.b.test/ HTTP/1.1\r\nHost: other.test\r\nAccept: */*\r\n\r\n")
	offer := []byte("HTTP/1.1 200 OK\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 2\r\n\r\n")
	// The version rewrites.
	v17 := []byte("GET / HTTP/1.7\r\nHost: a\r\n\r\n")
	v15 := []byte("HTTP/1.5 200 OK\r\nContent-Length: 2\r\n\r\n")
	dst := make([]byte, 0, 512)
	var r Request
	var rs Response
	rw := Rewrite{ForwardedFor: netip.MustParseAddr("192.0.2.1"), Proto: "http"}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := HeadComplete(b, 0); err != nil {
			t.Fatal(err)
		}
		if err := ParseRequest(b, &r); err != nil {
			t.Fatal(err)
		}
		dst = AppendRequest(dst[:0], b, &r, &rw)
		if err := ParseResponse(resp, &rs); err != nil {
			t.Fatal(err)
		}
		dst = AppendResponse(dst[:0], resp, &rs, false, 1)
		if err := ParseRequest(abs, &r); err != nil {
			t.Fatal(err)
		}
		dst = AppendRequest(dst[:0], abs, &r, &rw)
		if err := ParseResponse(offer, &rs); err != nil {
			t.Fatal(err)
		}
		dst = AppendResponse(dst[:0], offer, &rs, true, 1)
		if err := ParseRequest(v17, &r); err != nil {
			t.Fatal(err)
		}
		dst = AppendRequest(dst[:0], v17, &r, &rw)
		if err := ParseResponse(v15, &rs); err != nil {
			t.Fatal(err)
		}
		dst = AppendResponse(dst[:0], v15, &rs, true, 1)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per parse, want 0", allocs)
	}
}

// TestHostRule is RFC 9112 §3.2: an HTTP/1.1 request without exactly one
// valid Host field is a 400, whatever the form of its request-target; an
// absolute-form target routes by its own authority even when Host differs.
func TestHostRule(t *testing.T) {
	tests := []struct {
		name string
		in   string
		host string // routing host when accepted
		err  *Error // nil: accepted
	}{
		{"origin-form with Host", "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test", nil},
		{"origin-form without Host", "GET / HTTP/1.1\r\nX: 1\r\n\r\n", "", ErrNoHost},
		{"origin-form two Hosts", "GET / HTTP/1.1\r\nHost: a.test\r\nHost: a.test\r\n\r\n", "", ErrHost},
		{"origin-form invalid Host", "GET / HTTP/1.1\r\nHost: a test\r\n\r\n", "", ErrHost},
		{"absolute-form without Host", "GET http://a.test/ HTTP/1.1\r\n\r\n", "", ErrNoHost},
		{"absolute-form https without Host", "GET https://a.test:8443/x HTTP/1.1\r\nX: 1\r\n\r\n", "", ErrNoHost},
		{"absolute-form two Hosts", "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n", "", ErrHost},
		{"absolute-form invalid Host", "GET http://a.test/ HTTP/1.1\r\nHost: a/b\r\n\r\n", "", ErrHost},
		{"absolute-form Host bad port", "GET http://a.test/ HTTP/1.1\r\nHost: a.test:x\r\n\r\n", "", ErrHost},
		{"absolute-form same Host", "GET http://a.test/ HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test", nil},
		{"absolute-form disagreeing Host", "GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n", "a.test", nil},
		{"absolute-form empty Host", "GET http://a.test/ HTTP/1.1\r\nHost:\r\n\r\n", "a.test", nil},
		{"absolute-form bad authority", "GET http://a\"b/ HTTP/1.1\r\nHost: a\r\n\r\n", "", ErrTarget},
		{"absolute-form bad authority port", "GET http://a.test:8x/ HTTP/1.1\r\nHost: a.test\r\n\r\n", "", ErrTarget},
		{"asterisk-form without Host", "OPTIONS * HTTP/1.1\r\n\r\n", "", ErrNoHost},
		{"asterisk-form with Host", "OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n", "a.test", nil},
		{"Host case-insensitive name", "GET / HTTP/1.1\r\nhOsT: a.test\r\n\r\n", "a.test", nil},
		{"two Hosts differing in case", "GET / HTTP/1.1\r\nhost: a\r\nHOST: a\r\n\r\n", "", ErrHost},
		{"1.0 without Host", "GET / HTTP/1.0\r\n\r\n", "", nil},
		{"1.0 absolute-form without Host", "GET http://a.test/ HTTP/1.0\r\n\r\n", "a.test", nil},
		{"1.0 two Hosts", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", "", ErrHost},
		{"1.0 invalid Host", "GET / HTTP/1.0\r\nHost: a b\r\n\r\n", "", ErrHost},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseReq(t, tt.in)
			if tt.err == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if string(r.Host) != tt.host {
					t.Errorf("routing host %q, want %q", r.Host, tt.host)
				}
				return
			}
			if err != tt.err {
				t.Fatalf("got %v, want %v", err, tt.err)
			}
			if tt.err.Status != 400 {
				t.Fatalf("status %d, want 400", tt.err.Status)
			}
		})
	}
}

func TestHopMark(t *testing.T) {
	tests := []struct {
		name string
		in   string
		id   string
		want bool
	}{
		{"none", "GET / HTTP/1.1\r\nHost: a\r\n\r\n", "abc", false},
		{"ours", "GET / HTTP/1.1\r\nHost: a\r\nGitedge-Hop: abc\r\n\r\n", "abc", true},
		{"ours in a list", "GET / HTTP/1.1\r\nHost: a\r\ngitedge-hop: x1, abc ,y\r\n\r\n", "abc", true},
		{"ours on a second line", "GET / HTTP/1.1\r\nGitedge-Hop: x1\r\nHost: a\r\nGITEDGE-HOP: abc\r\n\r\n", "abc", true},
		{"another proxy's", "GET / HTTP/1.1\r\nHost: a\r\nGitedge-Hop: abcd\r\n\r\n", "abc", false},
		{"prefix only", "GET / HTTP/1.1\r\nHost: a\r\nGitedge-Hop: ab\r\n\r\n", "abc", false},
		{"other field with the id", "GET / HTTP/1.1\r\nHost: a\r\nGitedge-Hoq: abc\r\n\r\n", "abc", false},
		{"empty id never matches", "GET / HTTP/1.1\r\nHost: a\r\nGitedge-Hop:\r\n\r\n", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := parseReq(t, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.CarriesHopMark([]byte(tt.in), tt.id); got != tt.want {
				t.Errorf("CarriesHopMark = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestResponseHopMarkStripped: a server that echoes the mark back in a
// response head never shows it to the client.
func TestResponseHopMarkStripped(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nGitedge-Hop: abc\r\nContent-Length: 0\r\n\r\n"
	var r Response
	if err := ParseResponse([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.ForwardAsIs(true, 1) {
		t.Fatal("a response carrying the hop mark would be forwarded as is")
	}
	out := string(AppendResponse(nil, []byte(in), &r, true, 1))
	if strings.Contains(strings.ToLower(out), "gitedge-hop") {
		t.Fatalf("hop mark kept: %q", out)
	}
	if out != "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n" {
		t.Fatalf("got %q", out)
	}
}
