package dataplane

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// Connection states for draining: a drain may interrupt a connection only
// while it waits for a request with nothing buffered.
const (
	stBusy int32 = iota
	stIdle
	stPoking // a drain or the idle sweeper is interrupting the idle wait
	stPoked
	stParked // idle in the parker: no goroutine (park.go)
)

// clientConn is what every accepted connection has, whatever its mode.
type clientConn struct {
	sock *listenSock // and through it the Proxy
	cl   side
	// peer is the client: the TCP peer, or the source a trusted PROXY
	// header names; local is the address the client connected to.
	peer, local netip.AddrPort
	lm          *listenerMetrics
	draining    atomic.Bool
	accepted    int64 // unix ns

	http     *httpConn    // the serving state while a goroutine serves an http connection
	priv     *upConn      // a parked http connection's private PROXY-protocol server connection
	gen      *listenerGen // a new connection's config, until a worker starts serving it
	httpMode bool         // accepted on an http listener; set once
	// headSeen is set once the first request head (http) or the
	// ClientHello (tls) arrived. Until then, for freshGrace after the
	// accept, a drain lets the connection wait for it: its client connected
	// to send one, perhaps just before the listener stopped accepting (a
	// reload, an upgrade in place).
	headSeen atomic.Bool

	parkFields // the connection's state, and idle parking (park.go)
	// tun is the tunnel of a tls connection once it is routed; the
	// sweeper parks its idle directions.
	tun atomic.Pointer[tunnel]

	// upMu guards upNow, the server connection an http exchange holds,
	// and cut: a drain's forceClose shuts upNow down so that a request
	// waiting on a slow server ends within the drain's bound, and never
	// touches a connection that went back to the pool.
	upMu  sync.Mutex
	upNow *upConn
	cut   bool
	// queued is the wake-up of a request waiting in a backend's queue
	// (under upMu): forceClose wakes it, and the request leaves.
	queued chan struct{}
}

// newClientConn wraps an accepted connection; nil if it was refused.
func (p *Proxy) newClientConn(s *listenSock, c sockConn, peer, local netip.AddrPort, lg *listenerGen) *clientConn {
	cc := &clientConn{httpMode: lg.cfg.Mode == ModeHTTP}
	cc.parkIdx = -1
	cc.parkFD = -1 // until a read sees the socket: the parker refuses it
	cc.sock, cc.lm, cc.accepted = s, lg.m, time.Now().UnixNano()
	if err := cc.cl.init(c, lg.cfg.ClientTimeout); err != nil {
		c.Close()
		return nil
	}
	cc.peer, cc.local = peer, local
	p.conns.Add(1)
	if cc.httpMode && p.sweepQuiet.Load() && p.sweepQuiet.CompareAndSwap(true, false) {
		// It may wait idle soon: the sweeper goes back to its pace.
		select {
		case p.lingering.kick <- struct{}{}:
		default:
		}
	}
	if s.track(cc) {
		cc.draining.Store(true)
	}
	lg.m.conns.Inc()
	lg.m.active.Inc()
	return cc
}

// serve runs the connection to its end.
func (c *clientConn) serve(lg *listenerGen) {
	if c.run(lg) {
		return // a tunnel's goroutines, or the parker, own the connection now
	}
	c.done()
}

// done is the end of a connection's life.
func (c *clientConn) done() {
	p := c.sock.p
	c.lm.active.Dec()
	c.sock.untrack(c)
	if c.priv != nil {
		c.priv.c.Close()
		c.priv = nil
	}
	// Only now may the pooled state be handed to another connection
	// (which resets c).
	if c.http != nil {
		p.putHTTPConn(c.http)
	}
	p.conns.Done()
}

// run serves the connection; true when it was handed to a tunnel or the
// parker, which call done themselves.
func (c *clientConn) run(lg *listenerGen) bool {
	var pre []byte // bytes read past a PROXY header
	if len(lg.cfg.AcceptProxy) > 0 {
		var err error
		if pre, err = c.acceptProxyHeader(lg); err != nil {
			c.lm.errs[errKindProxyRefused].Inc()
			if c.sock.p.log.Enabled(c.sock.p.bg, slogDebug) {
				c.sock.p.log.Debug("PROXY header refused", "listener", lg.cfg.Name, "peer", c.peer.String(), "error", err)
			}
			c.cl.c.Close()
			return false
		}
	}
	if c.httpMode {
		return c.serveHTTP(lg, true, false, pre)
	}
	return c.serveTLS(lg, pre)
}

// serveHTTP serves the connection's requests on a pooled httpConn. It
// reports true when the connection was parked: it stays open, and the
// parker starts resume when bytes arrive. first: the first request;
// resumed: bytes are waiting (the parker saw the socket readable).
func (c *clientConn) serveHTTP(lg *listenerGen, first, resumed bool, pre []byte) bool {
	h := c.sock.p.getHTTPConn()
	h.clientConn, c.http = c, h
	h.resumed, h.pre = resumed, pre
	if resumed {
		// Back from the parker: the wait goes on to the deadline it had
		// there (readHead), so bytes that are no request (empty lines)
		// cannot keep a connection open past its timeout.
		h.parkAt = c.idleAt.Load()
	}
	h.priv, c.priv = c.priv, nil
	if !h.serve(lg, first) {
		return false // done puts h back
	}
	at := h.parkAt
	// The private server connection waits with the client (the pooled
	// httpConn forgets everything).
	c.priv, h.priv = h.priv, nil
	c.http, h.clientConn = nil, nil
	c.sock.p.putHTTPConn(h)
	if c.sock.p.park.park(c, at) {
		return true
	}
	c.cl.c.Close()
	return false
}

// resume serves a parked connection that became readable: an http
// connection, or a tls one that had sent nothing yet. It runs on a
// goroutine of its own, started by the parker.
func (c *clientConn) resume() {
	lg := c.sock.cur.Load()
	if lg == nil {
		// The socket stopped while the connection was parked in the grace
		// a drain gives a new connection: its first request or ClientHello
		// is served by the last config, as the accept loop does.
		lg = c.sock.last.Load()
	}
	if lg == nil || (lg.cfg.Mode == ModeHTTP) != c.httpMode {
		c.cl.c.Close()
		c.done()
		return
	}
	// A connection parked before its first request is still on that
	// request's requestTimeout from the accept (a tls one on its
	// inspectTimeout).
	var handedOff bool
	if c.httpMode {
		handedOff = c.serveHTTP(lg, !c.headSeen.Load(), true, nil)
	} else {
		handedOff = c.serveTLS(lg, nil)
	}
	if !handedOff {
		c.done()
	}
}

// acceptProxyHeader reads the PROXY v1/v2 header a listener with
// acceptProxy requires, from trusted sources only (HAProxy's
// accept-proxy with a source ACL).
func (c *clientConn) acceptProxyHeader(lg *listenerGen) (rest []byte, err error) {
	trusted := false
	for _, pfx := range lg.cfg.AcceptProxy {
		if pfx.Contains(c.peer.Addr()) {
			trusted = true
			break
		}
	}
	if !trusted {
		return nil, fmt.Errorf("%s is not in acceptProxy", c.peer.Addr())
	}
	timeout := lg.cfg.RequestTimeout
	if lg.cfg.Mode == ModeTLS {
		timeout = lg.cfg.InspectTimeout
	}
	c.cl.dl.readAt(c.cl.c, time.Now().UnixNano()+int64(timeout))
	hdr, rest, err := readProxyHeader(&c.cl)
	if err != nil {
		return nil, err
	}
	if lg.cfg.Mode == ModeTLS && c.sock.p.dials.has(c.peer, c.local) {
		// Our own tunnel's server connection (its PROXY header read).
		c.sock.p.loopDetected(loopSelfConn, lg.cfg.Name, c.peer, "", "a connection from this proxy's own dial")
		return nil, errLoop
	}
	if src, ok := hdr.SourceAddr.(*net.TCPAddr); ok && hdr.Command.IsProxy() {
		ap := src.AddrPort()
		c.peer = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if dst, ok := hdr.DestinationAddr.(*net.TCPAddr); ok {
			ap := dst.AddrPort()
			c.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
	}
	return rest, nil
}

// readProxyHeader reads a PROXY v1 or v2 header from r and returns it with
// the bytes read past it. A stream without a header is an error.
//
// The header may arrive in several segments: the spec recommends being
// tolerant, and go-proxyproto refuses a v1 header it cannot take from one
// read. So the header's bytes are gathered here first (bounded: 107 bytes
// for v1, 16 plus the declared length for v2; the caller's read deadline
// bounds the time), then parsed by go-proxyproto.
func readProxyHeader(r interface{ Read([]byte) (int, error) }) (*proxyproto.Header, []byte, error) {
	buf := make([]byte, 0, 256)
	for {
		total, err := proxyHeaderLen(buf)
		if err != nil {
			return nil, nil, err
		}
		if total > 0 && len(buf) >= total {
			hdr, err := proxyproto.Read(bufio.NewReaderSize(bytes.NewReader(buf[:total]), max(total, 16)))
			if err != nil {
				return nil, nil, fmt.Errorf("bad PROXY header: %w", err)
			}
			var rest []byte
			if len(buf) > total {
				rest = append(rest, buf[total:]...)
			}
			return hdr, rest, nil
		}
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, max(total-len(buf), 256))
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && n == 0 {
			if len(buf) == 0 {
				return nil, nil, errors.New("no PROXY header from a listener that requires one: " + err.Error())
			}
			return nil, nil, fmt.Errorf("incomplete PROXY header (%d bytes): %w", len(buf), err)
		}
	}
}

const (
	proxyV1Prefix = "PROXY "
	proxyV1Max    = 107 // the longest v1 line, CRLF included
	proxyV2Sig    = "\r\n\r\n\x00\r\nQUIT\n"
	proxyV2Max    = 16 + 4096
)

// proxyHeaderLen says how long the header at the start of buf is: 0 while
// more bytes are needed to know, an error when buf cannot start one.
func proxyHeaderLen(buf []byte) (int, error) {
	if len(buf) == 0 {
		return 0, nil
	}
	switch buf[0] {
	case 'P':
		if n := min(len(buf), len(proxyV1Prefix)); string(buf[:n]) != proxyV1Prefix[:n] {
			return 0, errors.New("no PROXY header from a listener that requires one")
		}
		if i := bytes.Index(buf[:min(len(buf), proxyV1Max)], []byte("\r\n")); i >= 0 {
			return i + 2, nil
		}
		if len(buf) >= proxyV1Max {
			return 0, errors.New("bad PROXY header: v1 line longer than 107 bytes")
		}
		return 0, nil
	case '\r':
		if n := min(len(buf), len(proxyV2Sig)); string(buf[:n]) != proxyV2Sig[:n] {
			return 0, errors.New("no PROXY header from a listener that requires one")
		}
		if len(buf) < 16 {
			return 0, nil
		}
		total := 16 + int(binary.BigEndian.Uint16(buf[14:16]))
		if total > proxyV2Max {
			return 0, fmt.Errorf("bad PROXY header: v2 header of %d bytes", total)
		}
		return total, nil
	}
	return 0, errors.New("no PROXY header from a listener that requires one")
}

// enterIdle marks the connection as waiting, since now (unix ns), for a
// request with nothing buffered; false if it is draining and should close
// instead.
func (c *clientConn) enterIdle(now int64) bool {
	c.parkFields.enterIdle(&c.sock.p.lingering, now)
	if c.draining.Load() && !c.inGrace(time.Now().UnixNano()) {
		c.leaveIdle()
		return false
	}
	return true
}

// leaveIdle marks the connection busy again. The deadline in the past
// that a poke set goes back to the wait's own: the caller may read on
// (bytes came as the poke did, and a request head or ClientHello in two
// reads must not then fail at once) or wait on (a park refused). It
// reports whether the sweeper asked the connection to park.
func (c *clientConn) leaveIdle() (parkAsked bool) {
	poked, asked := c.parkFields.leaveIdle(&c.sock.p.lingering)
	if poked && c.cl.dl.rd != 0 {
		c.cl.dl.readAt(c.cl.c, c.cl.dl.rd)
	}
	return asked
}

// drain asks the connection to close once its current exchange ends,
// interrupting it now if it is idle, and closing it if it is parked.
func (c *clientConn) drain() {
	c.draining.Store(true)
	if now := time.Now().UnixNano(); c.inGrace(now) {
		// Interrupted once the grace is over, if still waiting.
		time.AfterFunc(time.Duration(c.accepted+int64(freshGrace)-now), c.interrupt)
		return
	}
	c.interrupt()
}

// freshGrace is how long a drain lets a new connection wait for its first
// request or ClientHello: a client sends it within a round trip of
// connecting.
const freshGrace = time.Second

// inGrace says whether a drain lets the connection wait for its first
// request still.
func (c *clientConn) inGrace(now int64) bool {
	return !c.headSeen.Load() && now < c.accepted+int64(freshGrace)
}

// interrupt ends the idle wait of a draining connection, or releases it
// from the parker to close.
func (c *clientConn) interrupt() {
	if c.state.CompareAndSwap(stParked, stBusy) {
		go c.sock.p.park.release(c) // the caller holds the socket's lock, which done takes
		return
	}
	if c.state.CompareAndSwap(stIdle, stPoking) {
		_ = c.cl.c.SetReadDeadline(time.Unix(1, 0))
		c.state.Store(stPoked)
	}
}

// forceClose cuts the connection (drain deadline passed).
func (c *clientConn) forceClose() {
	if c.state.CompareAndSwap(stParked, stBusy) {
		go c.sock.p.park.release(c) // the caller holds the socket's lock, which done takes
		return
	}
	if t := c.tun.Load(); t != nil {
		// Shut down, not closed: the tunnel's directions, and the parker,
		// still name the descriptor, which a close would free for reuse;
		// the tunnel closes it when both directions have ended.
		go t.cut(nil) // its parked directions end too; the caller holds the socket's lock
	} else {
		c.cl.c.Close()
	}
	c.upMu.Lock()
	c.cut = true
	if u := c.upNow; u != nil {
		u.shutdown() // the exchange's wait on the server ends; its owner closes it
	}
	if c.queued != nil {
		select {
		case c.queued <- struct{}{}:
		default: // already woken: it sees the cut when it runs
		}
	}
	c.upMu.Unlock()
}

// waitOn records the wake-up of the connection's request while it waits
// in a backend's queue (queuer); false once a drain cut the connection.
func (c *clientConn) waitOn(ch chan struct{}) bool {
	c.upMu.Lock()
	ok := !c.cut
	c.queued = ch
	c.upMu.Unlock()
	return ok
}

// holdUp records u as the server connection of the exchange in progress,
// or refuses it (false) once a drain cut the connection.
func (c *clientConn) holdUp(u *upConn) bool {
	c.upMu.Lock()
	ok := !c.cut
	if ok {
		c.upNow = u
	}
	c.upMu.Unlock()
	return ok
}

// dropUp forgets the exchange's server connection before it is pooled or
// closed.
func (c *clientConn) dropUp() {
	c.upMu.Lock()
	c.upNow = nil
	c.upMu.Unlock()
}

// The parker's view of a waiting connection (park.go): an idle http
// one, or a tls one before its ClientHello.

func (c *clientConn) fields() *parkFields { return &c.parkFields }
func (c *clientConn) due() int64          { return c.idleAt.Load() }
func (c *clientConn) refuse() bool {
	// A drain closes an idle connection, but lets one waiting for its
	// first request or ClientHello wait out its grace (parked, interrupt
	// then releases it).
	return c.draining.Load() && !c.inGrace(time.Now().UnixNano())
}

// work serves a new connection, or a parked one again: bytes arrived.
func (c *clientConn) work() {
	if lg := c.gen; lg != nil {
		c.gen = nil
		c.serve(lg)
		return
	}
	c.resume()
}

// expire closes the connection: it stayed idle until its deadline. A tls
// connection parked before its ClientHello counts and logs it as the wait
// in serveTLS does (not one a drain took).
func (c *clientConn) expire() {
	if !c.httpMode && !c.draining.Load() {
		if lg := c.sock.cur.Load(); lg != nil {
			c.lm.errs[errKindInspect].Inc()
			c.logTLS(lg, time.Unix(0, c.accepted), nil, nil, nil, 0, 0, "no complete ClientHello within inspectTimeout")
		}
	}
	c.cl.c.Close()
	c.done()
}
