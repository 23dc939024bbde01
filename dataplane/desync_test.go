package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
)

// Each test here is a server or client that breaks a rule of RFC 9112 and
// what the proxy must do so that no other request, or client, pays for it.

// scriptedReq is a request as a scripted server saw it.
type scriptedReq struct {
	onConn int // its index on its server connection
	req    *http.Request
	body   []byte
}

// scriptedServer answers each request with answer, which writes raw bytes
// on c and returns false to close the connection. It counts connections.
func scriptedServer(t *testing.T, answer func(r scriptedReq, c net.Conn) bool) (Server, *atomic.Int64) {
	var conns atomic.Int64
	a := rawServer(t, func(c net.Conn) {
		defer c.Close()
		conns.Add(1)
		br := bufio.NewReader(c)
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			var body []byte
			if !strings.EqualFold(req.Header.Get("Expect"), "100-continue") {
				body, _ = io.ReadAll(req.Body)
			}
			if !answer(scriptedReq{onConn: i, req: req, body: body}, c) {
				return
			}
		}
	})
	return srv("s", a), &conns
}

// echoPath answers with the request's path as its body.
func echoPath(r scriptedReq, c net.Conn) bool {
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(r.req.URL.Path), r.req.URL.Path)
	return true
}

func scriptedProxy(t *testing.T, s Server) string {
	p := startProxy(t, Config{
		Listeners: []Listener{httpListener("http", "a")},
		Backends:  []Backend{backendOf("a", s)},
	})
	return p.addr(t, "http")
}

// readFor returns what arrives on c within d.
func readFor(c net.Conn, d time.Duration) string {
	c.SetReadDeadline(time.Now().Add(d))
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := c.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String()
		}
	}
}

// TestPoolNeverServesStaleBytes: bytes a server sends after an answer
// (a second answer, a body after a HEAD's, a 204's or a 304's head, or
// past a long body) are an answer to no request. A pooled connection
// holding them must not carry the next request, which would get them as
// its answer: another client's.
func TestPoolNeverServesStaleBytes(t *testing.T) {
	evil := "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nEVIL"
	long := strings.Repeat("x", 40000)
	tests := []struct {
		name, method string
		first, late  string // the answer to /a; late comes 30 ms after it
	}{
		{"a second answer after one", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", evil},
		{"a body after a HEAD's head", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 37\r\n\r\n", evil},
		{"a body after a 204", "GET", "HTTP/1.1 204 No Content\r\n\r\n", evil},
		{"a body after a 304", "GET", "HTTP/1.1 304 Not Modified\r\nContent-Length: 37\r\n\r\n", evil},
		{"bytes past a long body, in the same write", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 40000\r\n\r\n" + long + evil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := scriptedServer(t, func(r scriptedReq, c net.Conn) bool {
				if r.req.URL.Path != "/a" {
					return echoPath(r, c)
				}
				io.WriteString(c, tt.first)
				if tt.late != "" {
					time.Sleep(30 * time.Millisecond)
					io.WriteString(c, tt.late)
				}
				return true
			})
			addr := scriptedProxy(t, s)
			a := dialClient(t, addr)
			for _, path := range []string{"/b", "/c", "/d"} {
				io.WriteString(a.c, tt.method+" /a HTTP/1.1\r\nHost: a.test\r\n\r\n")
				a.read(tt.method)
				time.Sleep(100 * time.Millisecond) // the late bytes are in
				b := dialClient(t, addr)
				if r := b.do("GET", "a.test", path, ""); bodyOf(r) != path {
					t.Fatalf("another client asked %s and got %d %q", path, r.StatusCode, bodyOf(r))
				}
			}
		})
	}
}

// TestNoRetryOfNonIdempotent: a server that reads a request on a kept-alive
// connection and closes without answering may have acted on it. A GET is
// sent again on a new connection; a POST is not (RFC 9112 §9.3.1), nor
// anything after a 100 Continue went to the client.
func TestNoRetryOfNonIdempotent(t *testing.T) {
	tests := []struct {
		name, req string
		interim   bool // the server answers 100 Continue before closing
		wantSeen  int64
		want      int
	}{
		{"GET is sent again", "GET /x HTTP/1.1\r\nHost: a.test\r\n\r\n", false, 2, 200},
		{"POST is not", "POST /pay HTTP/1.1\r\nHost: a.test\r\nContent-Length: 3\r\n\r\n100", false, 1, 502},
		{"nor a GET after a 100 Continue", "GET /x HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n\r\n", true, 1, 502},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen atomic.Int64
			s, _ := scriptedServer(t, func(r scriptedReq, c net.Conn) bool {
				if r.req.URL.Path == "/" {
					return echoPath(r, c)
				}
				seen.Add(1)
				if r.onConn > 0 {
					// Read, perhaps acted on, then closed without an answer.
					if tt.interim {
						io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
					}
					return false
				}
				return echoPath(r, c)
			})
			addr := scriptedProxy(t, s)
			c := dialClient(t, addr)
			c.do("GET", "a.test", "/", "") // the server connection is now kept alive
			io.WriteString(c.c, tt.req)
			out := readFor(c.c, 2*time.Second)
			if n := seen.Load(); n != tt.wantSeen || statusOf(strings.TrimPrefix(out, "HTTP/1.1 100 Continue\r\n\r\n")) != tt.want {
				t.Fatalf("the server saw the request %d times (want %d); the client got %q (want %d)", n, tt.wantSeen, out, tt.want)
			}
		})
	}
}

// TestOwnHTTPVersion: a proxy sends its own HTTP version (RFC 9110 §6.2):
// an HTTP/1.2+ request reaches the server as HTTP/1.1, and a server's
// HTTP/1.2+ status lines, interim ones too, reach the client as HTTP/1.1.
// Both used to go on as they came.
func TestOwnHTTPVersion(t *testing.T) {
	protos := make(chan string, 2)
	s, _ := scriptedServer(t, func(r scriptedReq, c net.Conn) bool {
		protos <- r.req.Proto
		io.WriteString(c, "HTTP/1.5 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.7 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	addr := scriptedProxy(t, s)
	for _, version := range []string{"HTTP/1.7", "HTTP/1.1"} {
		c := dialClient(t, addr)
		io.WriteString(c.c, "GET / "+version+"\r\nHost: a.test\r\n\r\n")
		c.c.SetReadDeadline(time.Now().Add(waitFor))
		var got []string
		for range 2 {
			line, err := c.br.ReadString('\n')
			if err != nil {
				t.Fatalf("%s request: %v after %q", version, err, got)
			}
			got = append(got, strings.TrimSpace(line))
			for line != "\r\n" {
				if line, err = c.br.ReadString('\n'); err != nil {
					t.Fatalf("%s request: %v", version, err)
				}
			}
		}
		if got[0] != "HTTP/1.1 103 Early Hints" || got[1] != "HTTP/1.1 200 OK" {
			t.Errorf("%s request: status lines %q, want HTTP/1.1's", version, got)
		}
		if p := <-protos; p != "HTTP/1.1" {
			t.Errorf("%s request reached the server as %s, want HTTP/1.1", version, p)
		}
	}
}

// TestHTTP10Client: an HTTP/1.0 client gets no 1xx (RFC 9110 §15.2: it
// would take the first for the answer), and no chunked coding, which it
// does not know (RFC 9112 §6.1). A server that chunks its answer to the
// HTTP/1.0 request it got anyway has the body decoded for the client:
// the data without the framing, extensions or trailer, and the close as
// its end (as nginx does; HAProxy passes the coding on). A coding
// besides chunked cannot be taken off the body: 502.
func TestHTTP10Client(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 10000) // 160000 bytes: past spliceMin, moved without Decode
	s, _ := scriptedServer(t, func(r scriptedReq, c net.Conn) bool {
		chunked := "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		switch r.req.URL.Path {
		case "/chunked":
			io.WriteString(c, chunked+"2\r\nok\r\n0\r\n\r\n")
			return true
		case "/chunked-pieces":
			// Chunks split across writes, an extension, a large chunk and
			// a trailer: the proxy reads them in several goes.
			for _, p := range []string{
				chunked + "5;a=b\r\nhel", "lo\r\n", "1", "\r\n \r\n",
				fmt.Sprintf("%x\r\n", len(big)), big[:1000], big[1000:] + "\r\n",
				"6\r\nworld!\r\n0\r\nX-Sum: 1\r\n\r\n",
			} {
				io.WriteString(c, p)
				time.Sleep(5 * time.Millisecond)
			}
			return true
		case "/gzip":
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
			return true
		}
		io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\nConnection: x-hop\r\nX-Hop: server's\r\n\r\n")
		time.Sleep(20 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		return true
	})
	addr := scriptedProxy(t, s)
	c := dialClient(t, addr)
	io.WriteString(c.c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n")
	for _, want := range []int{100, 103, 200} {
		r := c.read("GET")
		if r.StatusCode != want {
			t.Fatalf("HTTP/1.1 client: %d, want %d", r.StatusCode, want)
		}
		// An interim answer's hop-by-hop fields stay behind too.
		if want == 103 && (r.Header.Get("X-Hop") != "" || r.Header.Get("Connection") != "" || r.Header.Get("Link") != "</x>") {
			t.Fatalf("HTTP/1.1 client, 103: fields %v", r.Header)
		}
	}
	for _, tc := range []struct {
		path   string
		status int
		body   string // "" when not checked
		closed bool   // the proxy closes the connection after the answer
	}{
		{"/", 200, "ok", false},
		{"/chunked", 200, "ok", true},
		{"/chunked-pieces", 200, "hello " + big + "world!", true},
		{"/gzip", 502, "", true},
	} {
		c := dialClient(t, addr)
		io.WriteString(c.c, "GET "+tc.path+" HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n")
		wait := 300 * time.Millisecond // for a close that should not come
		if tc.closed {
			wait = 5 * time.Second
		}
		c.c.SetReadDeadline(time.Now().Add(wait))
		out, err := io.ReadAll(io.LimitReader(c.c, int64(len(big))+4096))
		closed := err == nil // ReadAll stops without an error at the EOF
		head, body, _ := strings.Cut(string(out), "\r\n\r\n")
		switch {
		case statusOf(string(out)) != tc.status:
			t.Errorf("HTTP/1.0 client, %s: status %d, want %d (%.200q)", tc.path, statusOf(string(out)), tc.status, out)
		case strings.Contains(strings.ToLower(head), "transfer-encoding"):
			t.Errorf("HTTP/1.0 client, %s: got a Transfer-Encoding: %q", tc.path, head)
		case tc.body != "" && body != tc.body:
			t.Errorf("HTTP/1.0 client, %s: body of %d bytes %.80q, want %d bytes %.80q", tc.path, len(body), body, len(tc.body), tc.body)
		case tc.closed && !strings.Contains(head, "\r\nConnection: close"):
			t.Errorf("HTTP/1.0 client, %s: no Connection: close in %q", tc.path, head)
		case closed != tc.closed:
			t.Errorf("HTTP/1.0 client, %s: connection closed %v, want %v (%v)", tc.path, closed, tc.closed, err)
		}
	}
}

// TestChunkExtensionsInAnswers: a server's chunked answer is held to the
// same chunk grammar as a request (RFC 9112 §7.1.1). One whose chunk line
// leaves a quoted string open is a 502: the bytes after it, which a
// server reading quotes past the line's end would count as chunk data,
// never reach the client as an answer of their own.
func TestChunkExtensionsInAnswers(t *testing.T) {
	s, _ := scriptedServer(t, func(r scriptedReq, c net.Conn) bool {
		ext := ` ;a=b; c = "d;\"e"`
		if r.req.URL.Path == "/open-quote" {
			ext = `;a="b`
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2"+ext+"\r\nok\r\n0\r\n\r\n"+
			"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled")
		return false
	})
	addr := scriptedProxy(t, s)
	for _, tc := range []struct{ path, want string }{
		{"/extensions", "HTTP/1.1 200 OK\r\n"},
		{"/open-quote", "HTTP/1.1 502 "},
	} {
		c := dialClient(t, addr)
		io.WriteString(c.c, "GET "+tc.path+" HTTP/1.1\r\nHost: a.test\r\n\r\n")
		out := readFor(c.c, 500*time.Millisecond)
		if !strings.HasPrefix(out, tc.want) || strings.Contains(out, "smuggled") {
			t.Errorf("%s: got %q, want %q first and no second answer", tc.path, out, tc.want)
		}
	}
}

// TestUpgradeWithBody: a request with a body is not an upgrade (the new
// protocol would start after bytes the proxy is still moving): its
// Upgrade goes no further, and a 101 to it is the server's error.
func TestUpgradeWithBody(t *testing.T) {
	got := make(chan string, 1)
	s, _ := scriptedServer(t, func(r scriptedReq, c net.Conn) bool {
		got <- fmt.Sprintf("upgrade=%q body=%q", r.req.Header.Get("Upgrade"), r.body)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		return false
	})
	addr := scriptedProxy(t, s)
	code, resp := rawRequest(t, addr, "POST /ws HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello")
	if g := <-got; g != `upgrade="" body="hello"` {
		t.Errorf("the server saw %s", g)
	}
	if code != 502 {
		t.Errorf("101 to a request with a body: %d %q, want 502", code, resp)
	}
}

// TestPrivateConnParked: a client of a backend that takes PROXY headers
// has a server connection of its own; when the client parks between
// requests, that connection waits with it, and is used again.
func TestPrivateConnParked(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var open, total atomic.Int64
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.RemoteAddr) }),
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				open.Add(1)
				total.Add(1)
			case http.StateClosed, http.StateHijacked:
				open.Add(-1)
			}
		},
	}
	go hs.Serve(&proxyproto.Listener{Listener: ln})
	t.Cleanup(func() { hs.Close() })
	be := backendOf("pp", srv("s1", ln.Addr().(*net.TCPAddr).AddrPort()))
	be.ProxyProtocol = ProxyV1
	p := startProxy(t, Config{Listeners: []Listener{httpListener("http", "pp")}, Backends: []Backend{be}})
	c := dialClient(t, p.addr(t, "http"))
	for i := range 4 {
		if r := c.do("GET", "a.test", "/", ""); r.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, r.StatusCode)
		}
		waitParked(t, p.Proxy, 1)
	}
	if n, o := total.Load(), open.Load(); n != 1 || o != 1 {
		t.Fatalf("one client parked 4 times: the server saw %d connections, %d open; want 1 and 1", n, o)
	}
	c.c.Close()
	deadline := time.Now().Add(waitFor)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if o := open.Load(); o != 0 {
		t.Fatalf("the client closed, its server connection is still open (%d)", o)
	}
}

// TestEarlyAnswerToUpload: a server may answer an upload before reading
// all of it (RFC 9112 §9.5) and close, or stop reading; the client gets
// that answer, not a 502, and not a 408 once the stuck upload times out.
// A client that stalls its body gets its 408 after its own timeout, not
// the server's. An answer that follows the whole body keeps both
// connections alive.
func TestEarlyAnswerToUpload(t *testing.T) {
	const big = 16 << 20 // past every socket buffer on the way
	answer := "HTTP/1.1 413 Too Big\r\nContent-Length: 3\r\nConnection: close\r\n\r\nbig"
	quit := make(chan struct{}) // ends a server's wait once the test is done
	servers := map[string]func(c net.Conn){
		"answers and closes": func(c net.Conn) {
			defer c.Close()
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				io.WriteString(c, answer)
			}
		},
		"answers and stops reading": func(c net.Conn) {
			defer c.Close()
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				io.WriteString(c, answer)
				<-quit // open, unread, past the test's bound
			}
		},
		"answers chunked, unread": func(c net.Conn) {
			// An answer in pieces while the upload goes on: the request
			// body's and the answer's chunked pumps run at once.
			defer c.Close()
			if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
				for range 5 {
					io.WriteString(c, "5\r\nearly\r\n")
					time.Sleep(10 * time.Millisecond)
				}
				io.WriteString(c, "0\r\n\r\n")
				<-quit
			}
		},
		"reads it all": func(c net.Conn) {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				r, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				n, _ := io.Copy(io.Discard, r.Body)
				fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%d", len(fmt.Sprint(n)), n)
			}
		},
	}
	for _, tc := range []struct {
		server string
		body   int // bytes the client sends of its Content-Length: big; < 0 chunked
		rounds int // requests on one connection
		want   string
		within time.Duration
	}{
		{"answers and closes", big, 1, "HTTP/1.1 413 ", 5 * time.Second},
		{"answers and stops reading", big, 1, "HTTP/1.1 413 ", 5 * time.Second},
		{"answers chunked, unread", -big, 1, "HTTP/1.1 200 ", 5 * time.Second}, // a chunked upload
		{"reads it all", big, 1, "HTTP/1.1 200 ", 10 * time.Second},
		{"reads it all", 64 << 10, 40, "HTTP/1.1 200 ", 10 * time.Second},
		{"reads it all", 1 << 20, 0, "HTTP/1.1 408 ", 5 * time.Second}, // the client stalls after 1 MiB
	} {
		t.Run(fmt.Sprintf("%s, %d bytes, %d rounds", tc.server, tc.body, tc.rounds), func(t *testing.T) {
			s := srv("s1", rawServer(t, servers[tc.server]))
			t.Cleanup(func() {
				select {
				case <-quit:
				default:
					close(quit) // before rawServer's cleanup waits for its handlers
				}
			})
			be := backendOf("a", s)
			be.IdleTimeout = 20 * time.Second // the server's silence, far past the bound
			l := httpListener("http", "a")
			l.ClientTimeout = time.Second
			p := startProxy(t, Config{Listeners: []Listener{l}, Backends: []Backend{be}})
			c, err := net.Dial("tcp", p.addr(t, "http"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			start := time.Now()
			chunk := make([]byte, 64<<10)
			for round := 0; round < max(tc.rounds, 1); round++ {
				length := big
				if tc.rounds > 0 {
					length = tc.body
				}
				if tc.body < 0 {
					io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
					go func() {
						for sent := 0; sent < -tc.body; sent += len(chunk) {
							if _, err := fmt.Fprintf(c, "%x\r\n%s\r\n", len(chunk), chunk); err != nil {
								return
							}
						}
					}()
				} else {
					fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n", length)
					go func() { // the server may stop reading: write on the side
						for sent := 0; sent < tc.body; sent += len(chunk) {
							if _, err := c.Write(chunk[:min(len(chunk), tc.body-sent)]); err != nil {
								return
							}
						}
					}()
				}
				c.SetReadDeadline(time.Now().Add(tc.within))
				line, err := br.ReadString('\n')
				if !strings.HasPrefix(line, tc.want) {
					t.Fatalf("round %d: got %q (%v) after %v, want %q", round, line, err, time.Since(start), tc.want)
				}
				if tc.rounds == 0 || round == tc.rounds-1 {
					break
				}
				r, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(line), br)), nil)
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, r.Body)
				if r.Close {
					t.Fatalf("round %d: the proxy closes the connection after an answer that followed the whole body", round)
				}
			}
			if el := time.Since(start); el > tc.within {
				t.Errorf("took %v", el)
			}
		})
	}
}
