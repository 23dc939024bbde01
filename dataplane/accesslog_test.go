package dataplane

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) lines() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Split(strings.TrimSpace(l.b.String()), "\n")
}

// TestAccessLog: one JSON event per request with what an operator greps
// for; nothing at all when the handler is above Info.
func TestAccessLog(t *testing.T) {
	be := startHTTPBackend(t, "a1", false)
	var buf lockedBuffer
	p := startProxy(t, Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{backendOf("a", srv("a1", be.addr))}},
		func(o *Options) { o.AccessLog = slog.New(slog.NewJSONHandler(&buf, nil)) })
	c := dialClient(t, p.addr(t, "http"))
	c.do("GET", "a.test", "/client?x=1", "")
	c.do("POST", "b.test", "/echo", "hello")
	// The event is written after the response is sent: wait for it.
	lines := buf.lines()
	for deadline := time.Now().Add(waitFor); len(lines) < 2 && time.Now().Before(deadline); lines = buf.lines() {
		time.Sleep(time.Millisecond)
	}
	if len(lines) != 2 {
		t.Fatalf("%d events: %q", len(lines), lines)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &ev); err != nil {
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

	var quiet lockedBuffer
	p2 := startProxy(t, Config{Listeners: []Listener{httpListener("http", "a")}, Backends: []Backend{backendOf("a", srv("a1", be.addr))}},
		func(o *Options) {
			o.AccessLog = slog.New(slog.NewJSONHandler(&quiet, &slog.HandlerOptions{Level: slog.LevelWarn}))
		})
	get(t, p2.addr(t, "http"), "a.test", "/")
	if got := quiet.lines(); len(got) != 1 || got[0] != "" {
		t.Errorf("access log above Info still logged: %q", got)
	}
}
