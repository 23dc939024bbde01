package dataplane

import (
	"log/slog"
	"time"
)

// account adds one served request to the counters.
func (h *httpConn) account(b *backend) {
	if s := h.used; s != nil {
		s.st.m.requests.Inc()
		s.st.m.bytesOut.Add(float64(h.inBytes))
		s.st.m.bytesIn.Add(float64(h.outBytes))
	}
}

// logRequest counts the request by status class and emits its access-log
// event when an access log is enabled.
func (h *httpConn) logRequest(b *backend, s *server) {
	if c := h.status / 100; c >= 1 && c <= 5 {
		h.lm.class[c].Inc()
	}
	h.lm.bytesIn.Add(float64(h.inBytes))
	h.lm.bytesOut.Add(float64(h.outBytes))
	if al := h.sock.p.access; al != nil && al.Enabled(h.sock.p.bg, slog.LevelInfo) {
		h.accessLog(al, b, s)
	}
}

// accessLog emits the event. Apart from logRequest so that the attributes'
// stack frame (1 KB) is only taken when logging: a kept-alive connection's
// goroutine stack stays small.
//
//go:noinline
func (h *httpConn) accessLog(al *slog.Logger, b *backend, s *server) {
	backendName, serverName := "", ""
	if b != nil {
		backendName = b.cfg.Name
	}
	if s != nil {
		serverName = s.cfg.Name
	}
	attrs := [...]slog.Attr{
		slog.String("listener", h.lg.cfg.Name),
		slog.String("client", h.peer.String()),
		slog.String("method", string(h.req.Method)),
		slog.String("host", string(h.req.Host)),
		slog.String("target", string(h.req.Target)),
		slog.Int("status", h.status),
		slog.String("backend", backendName),
		slog.String("server", serverName),
		slog.Int64("bytes_in", h.inBytes),
		slog.Int64("bytes_out", h.outBytes),
		slog.Duration("duration", time.Since(h.start)),
		{}, // error
	}
	n := len(attrs) - 1
	if h.why != nil {
		attrs[n] = slog.String("error", h.why.Error())
		n++
	}
	al.LogAttrs(h.sock.p.bg, slog.LevelInfo, "http", attrs[:n]...)
}

// respSeconds records the time to a response head.
func (p *Proxy) respSeconds(b *backend, start time.Time) {
	b.st.m.resp.Observe(time.Since(start).Seconds())
}
