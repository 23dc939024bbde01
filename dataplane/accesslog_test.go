package dataplane

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestAccessLog: one JSON event per request with what an operator greps
// for; nothing at all when the handler is above Info.
func TestAccessLog(t *testing.T) {
	be := startHTTPBackend(t, "a1", false)
	var buf testkit.SyncBuffer
	p := startProxy(t, Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{backendOf("a", srv("a1", be.addr))}},
		func(o *Options) { o.AccessLog = slog.New(slog.NewJSONHandler(&buf, nil)) })
	c := dialClient(t, p.addr(t, "http"))
	c.do("GET", "a.test", "/client?x=1", "")
	c.do("POST", "b.test", "/echo", "hello")
	// The event is written after the response is sent: wait for it.
	lines := func() []string { return strings.Split(strings.TrimSpace(buf.String()), "\n") }
	testkit.WaitFor(t, "two access events", func() bool { return len(lines()) >= 2 })
	if got := lines(); len(got) != 2 {
		t.Fatalf("%d events: %q", len(got), got)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines()[1]), &ev); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"msg": "http", "listener": "http", "method": "POST", "host": "b.test", "target": "/echo",
		"status": 200.0, "backend": "a", "server": "a1", "bytes_out": float64(len("HTTP/1.1 200 OK\r\n"))}
	for k, v := range want {
		if k == "bytes_out" {
			if ev[k].(float64) < v.(float64) {
				t.Errorf("%s = %v, want at least %v", k, ev[k], v)
			}
			continue
		}
		if ev[k] != v {
			t.Errorf("%s = %v, want %v", k, ev[k], v)
		}
	}
	if !strings.HasPrefix(ev["client"].(string), "127.0.0.1:") {
		t.Errorf("client %v", ev["client"])
	}

	// Above Info: the proxy asks the handler's level and writes nothing.
	// The probe says when it asked, so the check does not race the
	// response; a proxy that wrote without asking would fail either way.
	var quiet testkit.SyncBuffer
	probe := &levelProbe{Handler: slog.NewJSONHandler(&quiet, &slog.HandlerOptions{Level: slog.LevelWarn}), asked: make(chan slog.Level, 16)}
	p2 := startProxy(t, Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{backendOf("a", srv("a1", be.addr))}},
		func(o *Options) { o.AccessLog = slog.New(probe) })
	get(t, p2.addr(t, "http"), "a.test", "/")
	select {
	case lv := <-probe.asked:
		if lv != slog.LevelInfo {
			t.Errorf("asked level %s, want INFO", lv)
		}
	case <-time.After(testkit.Deadline):
		t.Fatal("the proxy never asked the access log's level")
	}
	if got := quiet.String(); got != "" {
		t.Errorf("access log above Info still logged: %q", got)
	}
}

// levelProbe reports every level its handler is asked about.
type levelProbe struct {
	slog.Handler
	asked chan slog.Level
}

func (p *levelProbe) Enabled(ctx context.Context, l slog.Level) bool {
	select {
	case p.asked <- l:
	default:
	}
	return p.Handler.Enabled(ctx, l)
}

// TestAccessLogError: an answer the proxy made itself, or a request it
// cut, says why in its access event (error), as HAProxy's termination
// state does; a request served as asked has none. The 503 of a backend
// whose server is down and that of a missing route used to log alike.
func TestAccessLogError(t *testing.T) {
	good := startHTTPBackend(t, "a1", false)
	garbage := rawServer(t, func(c net.Conn) {
		defer c.Close()
		c.Read(make([]byte, 4096))
		io.WriteString(c, "HELLO\r\n\r\n")
	})
	dead := backendOf("dead", srv("d1", deadAddr(t)))
	dead.Retries = 0
	l := httpListener("http", "")
	cfg := Config{
		Listeners: []Listener{l},
		Backends:  []Backend{backendOf("good", srv("a1", good.addr)), dead, backendOf("garbage", srv("g1", garbage))},
		Routes: []Route{routeHTTP("good", "good", "good.test"), routeHTTP("dead", "dead", "dead.test"),
			routeHTTP("garbage", "garbage", "garbage.test")},
	}
	var buf testkit.SyncBuffer
	p := startProxy(t, cfg, func(o *Options) { o.AccessLog = slog.New(slog.NewJSONHandler(&buf, nil)) })
	addr := p.addr(t, "http")
	for i, tc := range []struct {
		host   string
		status int
		error  string // a part of it; "" none
	}{
		{"good.test", 200, ""},
		{"nowhere.test", 503, "no route and no default backend"},
		{"dead.test", 503, "could not connect to any server"},
		{"garbage.test", 502, "reading the response head"},
	} {
		if code, _ := get(t, addr, tc.host, "/"); code != tc.status {
			t.Fatalf("%s: %d, want %d", tc.host, code, tc.status)
		}
		var ev map[string]any
		testkit.WaitFor(t, "the access event", func() bool {
			lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
			return len(lines) > i && json.Unmarshal([]byte(lines[i]), &ev) == nil
		})
		if ev["host"] != tc.host || ev["status"] != float64(tc.status) {
			t.Fatalf("event %v, want %s's", ev, tc.host)
		}
		got, has := ev["error"].(string)
		switch {
		case tc.error == "" && has:
			t.Errorf("%s: error %q in a request served as asked", tc.host, got)
		case tc.error != "" && !strings.Contains(got, tc.error):
			t.Errorf("%s: error %q, want it to say %q", tc.host, got, tc.error)
		}
	}
}
