package dataplane

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/gitedge/gitedge/dataplane/clienthello"
)

// serveTLS routes a TLS connection by the SNI of its ClientHello without
// terminating TLS, then relays both ways with splice. It reports whether
// the connection went to a tunnel (which then ends it) or to the parker:
// a client silent past the linger parks, as an idle http connection
// does, holding neither goroutine nor buffer until its first bytes come
// or inspectTimeout from the accept ends it (resume serves it again).
func (c *clientConn) serveTLS(lg *listenerGen, pre []byte) (handedOff bool) {
	defer func() {
		if !handedOff {
			c.cl.c.Close()
		}
	}()
	start := time.Now()
	inspectBy := c.accepted + int64(lg.cfg.InspectTimeout)
	// Both buffers are taken once bytes came: a silent connection holds none.
	var buf, scratch *buffer
	release := func() {
		putBuf(buf) // putBuf takes nil
		putBuf(scratch)
		buf, scratch = nil, nil
	}
	defer func() { release() }()
	n := 0
	if len(pre) > 0 {
		buf = getBuf()
		n = copy(buf.b, pre)
	}
	c.cl.dl.readAt(c.cl.c, inspectBy)
	var sni []byte
	for {
		if n > 0 {
			if scratch == nil {
				scratch = getBuf()
			}
			name, err := clienthello.ServerName(buf.b[:n], scratch.b)
			if err == nil {
				sni = name
				break
			}
			if err != clienthello.ErrIncomplete {
				kind := errKindBadHello
				if err == clienthello.ErrNotTLS {
					kind = errKindNotTLS
				}
				c.lm.errs[kind].Inc()
				c.logTLS(lg, start, nil, nil, nil, 0, 0, err.Error())
				return false
			}
			if n == len(buf.b) {
				c.lm.errs[errKindBadHello].Inc()
				c.logTLS(lg, start, nil, nil, nil, 0, 0, "ClientHello too large")
				return false
			}
		}
		idle := n == 0
		var r int
		var err error
		if idle {
			if !c.enterIdle(start.UnixNano()) {
				return false
			}
			buf, r, err = c.cl.readFirst()
		} else {
			r, err = c.cl.read(buf.b[n:])
		}
		if idle && c.leaveIdle() && r == 0 && isTimeout(err) {
			// Silent past the linger, and the sweeper asked it to park.
			_ = c.cl.rc.Control(func(fd uintptr) { c.parkFD = int32(fd) })
			if c.sock.p.park.park(c, inspectBy) {
				return true
			}
			// Refused (a drain past this connection's grace, or no
			// parker): the wait goes on here, or ends with the drain.
			if c.refuse() {
				return false
			}
			continue
		}
		n += r
		if r == 0 && err != nil {
			if isTimeout(err) && !c.draining.Load() {
				c.lm.errs[errKindInspect].Inc()
				c.logTLS(lg, start, nil, nil, nil, 0, 0, "no complete ClientHello within inspectTimeout")
			} else if !errors.Is(err, io.EOF) && n > 0 {
				c.lm.errs[errKindClient].Inc()
			}
			return false
		}
	}
	c.headSeen.Store(true)
	if len(lg.cfg.AcceptProxy) == 0 && c.sock.p.dials.has(c.peer, c.local) {
		// Our own tunnel's server connection, its ClientHello read: a loop.
		c.sock.p.loopDetected(loopSelfConn, lg.cfg.Name, c.peer, "", "a connection from this proxy's own dial")
		c.logTLS(lg, start, sni, nil, nil, 0, 0, errLoop.Error())
		return false
	}
	b := lg.route(sni)
	if b == nil {
		c.lm.errs[errKindNoRoute].Inc()
		c.logTLS(lg, start, sni, nil, nil, 0, 0, "no route and no default backend")
		return false
	}
	s, up, err := c.sock.p.connectServer(b, c, c.peer, c.local, false, buf.b[:n], nil)
	if err == errBackendGone {
		// A reload removed the backend between the route and the
		// connect: the connection goes where the running table sends it
		// (none when the listener went too: closed below).
		if now := c.sock.current(ModeTLS); now != nil {
			lg = now
			if b = lg.route(sni); b == nil {
				c.lm.errs[errKindNoRoute].Inc()
				c.logTLS(lg, start, sni, nil, nil, 0, 0, "no route and no default backend")
				return false
			}
			s, up, err = c.sock.p.connectServer(b, c, c.peer, c.local, false, buf.b[:n], nil)
		}
	}
	if err == errLoop {
		c.sock.p.loopDetected(loopSelfAddr, lg.cfg.Name, c.peer, b.cfg.Name, "every server is this proxy's own listener")
	}
	if err != nil {
		c.logTLS(lg, start, sni, b, nil, 0, 0, err.Error())
		return false
	}
	b = s.b // the server's generation of it, should a reload have come since the route
	c.sock.p.respSeconds(b, start)
	c.lm.class[0].Inc()
	s.st.m.requests.Inc()
	// The ClientHello bytes read so far go first: what the dial did not
	// send with the connect.
	if up.sent < n {
		up.dl.write(up.c, time.Now().UnixNano(), b.cfg.IdleTimeout)
		if _, err := up.write(buf.b[up.sent:n]); err != nil {
			s.st.m.errs[errKindResponse].Inc()
			c.logTLS(lg, start, sni, b, s, 0, 0, err.Error())
			up.closeTunnel(c.sock.p)
			s.release()
			return false
		}
	}
	in := int64(n)
	// Keep the SNI for the log only when logging; buf goes back now.
	var name string
	if c.sock.p.access != nil {
		name = string(sni)
	}
	release()
	c.cl.dl = deadlines{}
	t := newTunnel(c.sock.p, &c.cl, &up.side, b.cfg.IdleTimeout, true)
	c.tun.Store(t)
	t.start(func(toServer, toClient int64) {
		// Both peers have had their FIN (an EOF passed on each way, or
		// the tunnel's cut): the descriptors go with the next batch.
		c.sock.p.closer.close(up.c, c.cl.c)
		up.forget(c.sock.p)
		s.release()
		in += toServer
		c.lm.bytesIn.Add(float64(in))
		c.lm.bytesOut.Add(float64(toClient))
		s.st.m.bytesOut.Add(float64(in))
		s.st.m.bytesIn.Add(float64(toClient))
		c.logTLS(lg, start, []byte(name), b, s, in, toClient, "")
		c.done()
	})
	return true
}

// logTLS emits the access-log event of a TLS connection.
func (c *clientConn) logTLS(lg *listenerGen, start time.Time, sni []byte, b *backend, s *server, in, out int64, errText string) {
	al := c.sock.p.access
	if al == nil || !al.Enabled(c.sock.p.bg, slog.LevelInfo) {
		return
	}
	backendName, serverName := "", ""
	if b != nil {
		backendName = b.cfg.Name
	}
	if s != nil {
		serverName = s.cfg.Name
	}
	attrs := []slog.Attr{
		slog.String("listener", lg.cfg.Name),
		slog.String("client", c.peer.String()),
		slog.String("sni", string(sni)),
		slog.String("backend", backendName),
		slog.String("server", serverName),
		slog.Int64("bytes_in", in),
		slog.Int64("bytes_out", out),
		slog.Duration("duration", time.Since(start)),
	}
	if errText != "" {
		attrs = append(attrs, slog.String("error", errText))
	}
	al.LogAttrs(c.sock.p.bg, slog.LevelInfo, "tls", attrs...)
}
