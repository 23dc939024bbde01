package dataplane

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/gitedge/gitedge/dataplane/httphead"
)

const slogDebug = slog.LevelDebug

// httpConn serves one client connection of an http listener: a loop of
// requests, each routed by its own Host with the listener config current
// when it starts. It is pooled: its buffers come and go per request, and
// its callbacks are bound once, so a kept-alive request costs no
// allocation.
type httpConn struct {
	*clientConn // attached while a goroutine serves the connection
	lg          *listenerGen

	in      *buffer // client bytes: head, body start, pipelined requests; nil while idle
	inLen   int
	rerr    error
	readFn  func(uintptr) bool
	headLen int
	req     httphead.Request
	resp    httphead.Response
	rw      httphead.Rewrite
	out     *buffer // a rewritten head

	srv   *server // the slot this request holds; nil once released
	used  *server // the server this request went to
	up    *upConn
	priv  *upConn // a PROXY-protocol server connection tied to this client
	upIn  *buffer // server bytes of the current response
	upLen int

	reqBody, respBody   mover
	reqChunk, respChunk httphead.Chunked

	resumed bool   // bytes are waiting: read them before any idle check
	marked  bool   // the hop mark is in the client buffer's head
	parkAt  int64  // the read deadline a parking connection had
	pre     []byte // bytes read past a PROXY header, served first

	// per request
	start             time.Time
	status            int
	inBytes, outBytes int64
	bodySent          bool // request body bytes went out beyond the first write
	consumed          int  // bytes of in that belong to this request
}

// maxIdleHTTPConns bounds the httpConns kept for reuse (about 1 KB each):
// enough for the connections busy at once, never one per idle connection.
const maxIdleHTTPConns = 256

// getHTTPConn takes the serving state for a busy connection from a plain
// free list rather than a sync.Pool: a parked connection takes one each
// time it wakes, and neither a garbage collection nor the race detector
// (which makes sync.Pool drop items) may turn that into an allocation.
func (p *Proxy) getHTTPConn() *httpConn {
	p.httpFree.Lock()
	if n := len(p.httpFree.list); n > 0 {
		h := p.httpFree.list[n-1]
		p.httpFree.list[n-1] = nil
		p.httpFree.list = p.httpFree.list[:n-1]
		p.httpFree.Unlock()
		return h
	}
	p.httpFree.Unlock()
	h := &httpConn{}
	h.readFn = h.onReadable
	h.reqBody.bind()
	h.respBody.bind()
	return h
}

// putHTTPConn returns h to the pool once its goroutine is done with it.
func (p *Proxy) putHTTPConn(h *httpConn) {
	readFn := h.readFn
	rb, sb := h.reqBody, h.respBody
	*h = httpConn{}
	h.readFn = readFn
	h.reqBody.readFn, h.reqBody.outFn = rb.readFn, rb.outFn
	h.respBody.readFn, h.respBody.outFn = sb.readFn, sb.outFn
	p.httpFree.Lock()
	if len(p.httpFree.list) < maxIdleHTTPConns {
		p.httpFree.list = append(p.httpFree.list, h)
	}
	p.httpFree.Unlock()
}

// onReadable reads client bytes when the socket is readable, taking a
// buffer only when there are bytes, and giving it back before the
// goroutine parks (RawConn.Read calls it again when readable).
func (h *httpConn) onReadable(fd uintptr) bool {
	h.parkFD = int32(fd)
	if h.in == nil {
		h.in = getBuf()
	}
	for {
		n, err := syscall.Read(int(fd), h.in.b[h.inLen:])
		switch {
		case err == nil && n > 0:
			h.inLen += n
			h.rerr = nil
			return true
		case err == nil:
			h.rerr = io.EOF
			return true
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			if h.inLen == 0 {
				putBuf(h.in)
				h.in = nil
			}
			return false
		default:
			h.rerr = os.NewSyscallError("read", err)
			return true
		}
	}
}

// serve runs requests until the connection ends (false) or waits idle
// long enough to be parked (true: the connection stays open, holding no
// goroutine and no buffer; park.go). first: the connection's first
// request, whose head has requestTimeout from the accept.
func (h *httpConn) serve(lg *listenerGen, first bool) (parked bool) {
	defer func() {
		if !parked {
			h.finish()
		}
	}()
	if len(h.pre) > 0 {
		h.in = getBuf()
		h.inLen = copy(h.in.b, h.pre)
		h.pre = nil
	}
	for {
		if !first {
			lg = h.sock.cur.Load()
			if lg == nil || lg.cfg.Mode != ModeHTTP || h.draining.Load() && h.inLen == 0 && !h.resumed {
				return false
			}
		}
		h.lg = lg
		h.cl.timeout = lg.cfg.ClientTimeout
		switch h.readHead(first) {
		case headPark:
			return true
		case headEnd:
			return false
		}
		first = false
		if !h.exchange() {
			return
		}
		if h.out != nil { // a failed exchange may leave it
			putBuf(h.out)
			h.out = nil
		}
		// Drop the request from the client buffer, keeping pipelined bytes.
		h.consumeIn(h.consumed)
	}
}

// finish closes the connection and gives its buffers back.
func (h *httpConn) finish() {
	h.cl.c.Close()
	if h.priv != nil {
		h.priv.c.Close()
		h.priv = nil
	}
	putBuf(h.in)
	putBuf(h.out)
	putBuf(h.upIn)
	h.in, h.out, h.upIn = nil, nil, nil
}

// What readHead found.
const (
	headOK   = iota // a complete, valid head is buffered
	headEnd         // the connection ends (answered if need be)
	headPark        // idle past idleLinger with nothing buffered: park it
)

// readHead reads until a complete, valid request head is buffered.
func (h *httpConn) readHead(first bool) int {
	lg := h.lg
	now := time.Now()
	if first {
		h.cl.dl.readAt(h.cl.c, h.accepted+int64(lg.cfg.RequestTimeout))
	} else {
		h.cl.dl.read(h.cl.c, now.UnixNano(), lg.cfg.ClientTimeout)
	}
	from := 0
	timed := first // the head's own deadline is set
	for {
		if h.inLen > 0 {
			// RFC 9112 §2.2: ignore empty lines before a request line.
			skip := 0
			for skip+1 < h.inLen && h.in.b[skip] == '\r' && h.in.b[skip+1] == '\n' {
				skip += 2
			}
			if skip > 0 {
				h.inLen = copy(h.in.b, h.in.b[skip:h.inLen])
				from = 0
				continue
			}
			n, err := httphead.HeadComplete(h.in.b[:h.inLen], from)
			if err == nil && n > lg.cfg.MaxHeaderBytes {
				h.reject(httphead.ErrTooLarge)
				return headEnd
			}
			if err == nil && n > 0 {
				if err := httphead.ParseRequest(h.in.b[:n], &h.req); err != nil {
					h.reject(err)
					return headEnd
				}
				h.headLen = n
				return headOK
			}
			if err != nil {
				h.reject(err)
				return headEnd
			}
			if h.inLen >= lg.cfg.MaxHeaderBytes {
				h.reject(httphead.ErrTooLarge)
				return headEnd
			}
			from = max(0, h.inLen-3)
			if !timed {
				// The head started: it has requestTimeout from its first byte.
				h.cl.dl.readAt(h.cl.c, now.Add(lg.cfg.RequestTimeout).UnixNano())
				timed = true
			}
			if h.inLen == len(h.in.b) {
				h.growIn(lg.cfg.MaxHeaderBytes)
			}
		}
		idle := h.inLen == 0 && !h.resumed
		h.resumed = false
		if idle && !h.enterIdle(now.UnixNano()) {
			return headEnd
		}
		err := h.cl.rc.Read(h.readFn)
		if idle {
			rd := h.cl.dl.rd
			if h.leaveIdle() && h.inLen == 0 && isTimeout(unwrapOp(err)) && !h.draining.Load() {
				// The sweeper asked this idle connection to park: it waits
				// in the parker until readable or until its deadline.
				h.parkAt = rd
				return headPark
			}
			now = time.Now()
			// The table may have been swapped while the connection sat
			// idle: the request now arriving is routed by the table current
			// when it arrives, not the one of the previous request.
			if cur := h.sock.cur.Load(); cur != nil && cur != lg && cur.cfg.Mode == ModeHTTP {
				lg, h.lg = cur, cur
				h.cl.timeout = cur.cfg.ClientTimeout
			}
		}
		if err != nil {
			if isTimeout(unwrapOp(err)) && h.inLen > 0 && !h.draining.Load() {
				h.lm.errs[errKindHeadTimeout].Inc()
				h.status = 408
				h.writeClient(errorResponse(408, false))
				h.logRequest(nil, nil)
			}
			return headEnd
		}
		if h.rerr != nil {
			if h.inLen > 0 {
				h.lm.errs[errKindClient].Inc()
			}
			return headEnd
		}
	}
}

// growIn moves the client bytes to a buffer big enough for a head of max
// bytes (a rare, allocating path: heads over 16 KB).
func (h *httpConn) growIn(max int) {
	nb := &buffer{b: make([]byte, max+bufSize)}
	copy(nb.b, h.in.b[:h.inLen])
	putBuf(h.in)
	h.in = nb
}

// reject answers a malformed request and closes.
func (h *httpConn) reject(err error) {
	status := 400
	var he *httphead.Error
	if errors.As(err, &he) {
		status = he.Status
	}
	kind := errKindBadRequest
	if status == 431 {
		kind = errKindHeadTooLarge
	}
	h.lm.errs[kind].Inc()
	h.status = status
	h.start = time.Now()
	h.writeClient(errorResponse(status, false))
	if h.sock.p.log.Enabled(h.sock.p.bg, slogDebug) {
		h.sock.p.log.Debug("request rejected", "listener", h.lg.cfg.Name, "client", h.peer.String(), "status", status, "error", err)
	}
	h.logRequest(nil, nil)
}

// writeClient writes to the client within clientTimeout.
func (h *httpConn) writeClient(b []byte) error {
	h.cl.dl.write(h.cl.c, time.Now().UnixNano(), h.cl.timeout)
	n, err := h.cl.c.Write(b)
	h.outBytes += int64(n)
	return err
}

// exchange forwards one request and its response. It reports whether the
// client connection stays open for another request.
func (h *httpConn) exchange() bool {
	h.start = time.Now()
	h.status, h.inBytes, h.outBytes, h.bodySent, h.marked = 0, 0, 0, false, false
	h.used = nil
	h.consumed = h.headLen
	req := &h.req
	lg := h.lg
	if req.Flags&httphead.HasHopMark != 0 && req.CarriesHopMark(h.in.b[:h.headLen], h.sock.p.hopID) {
		// Our own request came back: answer the hop before us, and close.
		h.sock.p.loopDetected(loopHopMark, lg.cfg.Name, h.peer, "", "a request carrying this proxy's own "+httphead.HopMarkField)
		h.status = 508
		h.writeClient(errorResponse(508, false))
		h.logRequest(nil, nil)
		return false
	}
	b := lg.route(req.Host)
	if b == nil {
		h.lm.errs[errKindNoRoute].Inc()
		return h.fail(nil, 503)
	}
	// The body bytes already read, and the request's part of the buffer.
	bodyInBuf := 0
	switch {
	case req.Chunked:
		h.reqChunk.Reset()
		n, err := h.reqChunk.Scan(h.in.b[h.headLen:h.inLen])
		if err != nil {
			h.reject(err)
			return false
		}
		bodyInBuf = n
	case req.ContentLength > 0:
		bodyInBuf = int(min(req.ContentLength, int64(h.inLen-h.headLen)))
	}
	h.consumed = h.headLen + bodyInBuf
	if lg.cfg.ForwardFor {
		h.rw.ForwardedFor, h.rw.Proto = h.peer.Addr(), "http"
	} else {
		h.rw.ForwardedFor = netip.Addr{}
	}
	if !h.connect(b) {
		return h.fail(b, h.status)
	}
	defer h.releaseSlot()
	retried := false
	for {
		err := h.sendHead(bodyInBuf)
		if err == nil {
			break
		}
		if h.canRetry(retried, bodyInBuf) {
			retried = true
			if h.redial(b) {
				continue
			}
			return h.fail(b, 503)
		}
		h.used.st.m.errs[errKindResponse].Inc()
		h.closeUp()
		return h.fail(b, 502)
	}
	expect := req.Flags&httphead.Expect100 != 0 && req.HasBody()
	var bodyDone chan error
	bodyComplete := !req.HasBody() || (req.Chunked && h.reqChunk.Done()) ||
		(!req.Chunked && int64(bodyInBuf) == req.ContentLength)
	if !bodyComplete {
		if expect {
			// The client may wait for 100 Continue before sending the body:
			// forward it alongside reading the response.
			bodyDone = make(chan error, 1)
			go h.forwardBodyAsync(h.up, bodyInBuf, bodyDone)
		} else if err := h.forwardBody(h.up, bodyInBuf); err != nil {
			return h.bodyFailed(b, err)
		}
	}
	return h.response(b, bodyDone, retried, bodyInBuf)
}

// consumeIn drops n bytes from the front of the client buffer.
func (h *httpConn) consumeIn(n int) {
	if h.in == nil {
		return
	}
	if n >= h.inLen {
		h.inLen = 0
		putBuf(h.in)
		h.in = nil
		return
	}
	h.inLen = copy(h.in.b, h.in.b[n:h.inLen])
}

// canRetry: a connection from the pool may have been closed by the server
// while idle; the request is sent again on a new connection if nothing of
// the response came and the whole request is still in the buffer.
func (h *httpConn) canRetry(retried bool, bodyInBuf int) bool {
	if retried || h.up == nil || h.up.uses == 0 || h.upLen > 0 || h.bodySent {
		return false
	}
	req := &h.req
	return !req.HasBody() || (req.Chunked && h.reqChunk.Done()) || (!req.Chunked && int64(bodyInBuf) == req.ContentLength)
}

// redial replaces a stale pooled connection with a new one to the same server.
func (h *httpConn) redial(b *backend) bool {
	h.closeUp()
	h.upLen = 0
	c, err := b.dial(h.used)
	if err != nil {
		h.used.st.m.errs[errKindConnect].Inc()
		h.used.st.report(h.sock.p, false, false, unwrapOp(err).Error())
		return false
	}
	h.used.st.m.conns.Inc()
	u, err := newUpConn(c, b, h.used, h.peer, h.local)
	h.up = u
	return err == nil
}

// connect takes a server slot and a connection to it: the client's
// private PROXY-protocol connection when it fits, else a pooled or new one.
func (h *httpConn) connect(b *backend) bool {
	if pc := h.priv; pc != nil {
		h.priv = nil
		if pc.srv.b == b.st && !pc.srv.removed.Load() {
			for _, s := range b.servers {
				if s.st == pc.srv && b.acquireServer(s) {
					h.srv, h.used, h.up = s, s, pc
					return true
				}
			}
		}
		pc.c.Close()
	}
	s, u, err := h.sock.p.connectServer(b, h.peer, h.local, true)
	if err == errLoop {
		h.sock.p.loopDetected(loopSelfAddr, h.lg.cfg.Name, h.peer, b.cfg.Name, "every server is this proxy's own listener")
		h.status = 508
		return false
	}
	if err != nil {
		h.status = 503
		return false
	}
	h.srv, h.used, h.up = s, s, u
	return true
}

// sendHead writes the request head (rewritten when needed) with this
// proxy's hop mark, and the body bytes already buffered.
func (h *httpConn) sendHead(bodyInBuf int) error {
	up := h.up
	up.dl.write(up.c, time.Now().UnixNano(), up.timeout)
	rewrite := h.req.NeedsRewrite(&h.rw)
	if d := len(h.sock.p.hopLine) - 2; !rewrite && !h.marked && h.inLen+d <= len(h.in.b) {
		// The common case: the mark goes into the client buffer before the
		// head's final CRLF, moving only what follows the head (usually
		// nothing), and the head goes out as the bytes that came.
		copy(h.in.b[h.headLen+d:], h.in.b[h.headLen:h.inLen])
		copy(h.in.b[h.headLen-2:], h.sock.p.hopLine)
		h.headLen += d
		h.req.HeadLen += d
		h.inLen += d
		h.consumed += d
		h.marked = true
	}
	if h.marked {
		n, err := up.c.Write(h.in.b[:h.headLen+bodyInBuf])
		h.inBytes = int64(n)
		return err
	}
	if h.out == nil {
		h.out = getBuf()
	}
	var o []byte
	if rewrite {
		o = httphead.AppendRequest(h.out.b[:0], h.in.b[:h.headLen], &h.req, &h.rw)
	} else {
		o = append(h.out.b[:0], h.in.b[:h.headLen]...)
	}
	o = append(o[:len(o)-2], h.sock.p.hopLine...)
	body := h.in.b[h.headLen : h.headLen+bodyInBuf]
	if len(o)+len(body) <= cap(o) {
		o = append(o, body...)
		body = nil
	}
	n, err := up.c.Write(o)
	h.inBytes = int64(n)
	if err == nil && len(body) > 0 {
		n, err = up.c.Write(body)
		h.inBytes += int64(n)
	}
	return err
}

// forwardBody sends the rest of the request body to up.
func (h *httpConn) forwardBody(up *upConn, bodyInBuf int) error {
	h.bodySent = true
	if !h.req.Chunked {
		h.reqBody.src, h.reqBody.dst = &h.cl, &up.side
		n, err := h.reqBody.move(h.req.ContentLength - int64(bodyInBuf))
		h.inBytes += n
		return err
	}
	// The chunked bytes in the buffer are sent; the rest is read fresh.
	h.consumeIn(h.headLen + bodyInBuf)
	h.consumed = 0
	if h.in == nil {
		h.in = getBuf()
	}
	left, n, err := h.pumpChunked(&h.reqChunk, &h.cl, &up.side, h.in, h.inLen, &h.reqBody)
	h.inLen = left
	h.inBytes += n
	return err
}

// forwardBodyAsync is forwardBody on its own goroutine (Expect:
// 100-continue), named for stack dumps.
func (h *httpConn) forwardBodyAsync(up *upConn, bodyInBuf int, done chan<- error) {
	done <- h.forwardBody(up, bodyInBuf)
}

// spliceMin is the size from which chunk data is spliced rather than
// copied through the buffer.
const spliceMin = 64 << 10

// pumpChunked forwards a chunked body from src to dst. buf holds n
// unscanned bytes read from src. It returns how many bytes past the body's
// end are left at the front of buf.
func (h *httpConn) pumpChunked(ch *httphead.Chunked, src, dst *side, buf *buffer, n int, mv *mover) (int, int64, error) {
	var moved int64
	for {
		if n > 0 {
			k, err := ch.Scan(buf.b[:n])
			if err != nil {
				return 0, moved, err
			}
			dst.dl.write(dst.c, time.Now().UnixNano(), dst.timeout)
			if _, err := dst.c.Write(buf.b[:k]); err != nil {
				return 0, moved, err
			}
			moved += int64(k)
			n = copy(buf.b, buf.b[k:n])
			if ch.Done() {
				return n, moved, nil
			}
		}
		if left := ch.DataLeft(); left >= spliceMin {
			mv.src, mv.dst = src, dst
			m, err := mv.move(int64(left))
			moved += m
			ch.Skip(uint64(m))
			if err != nil {
				return 0, moved, err
			}
			continue
		}
		src.dl.read(src.c, time.Now().UnixNano(), src.timeout)
		r, err := src.read(buf.b[n:])
		n += r
		if r == 0 && err != nil {
			if err == io.EOF {
				err = errShortBody
			}
			return 0, moved, err
		}
	}
}

// bodyFailed ends an exchange whose request body could not be forwarded.
func (h *httpConn) bodyFailed(b *backend, err error) bool {
	h.closeUp()
	var he *httphead.Error
	switch {
	case errors.As(err, &he):
		h.reject(err)
		return false
	case isTimeout(err) || errors.Is(err, errShortBody):
		h.lm.errs[errKindClient].Inc()
		h.status = 408
		if isTimeout(err) {
			h.writeClient(errorResponse(408, false))
		}
	default:
		h.used.st.m.errs[errKindResponse].Inc()
		h.status = 502
		h.writeClient(errorResponse(502, false))
	}
	h.logRequest(b, h.used)
	return false
}

// response reads the response head(s) and forwards the response.
func (h *httpConn) response(b *backend, bodyDone chan error, retried bool, bodyInBuf int) bool {
	req := &h.req
	for {
		n, err := h.readRespHead()
		if err != nil {
			if h.canRetry(retried, bodyInBuf) && bodyDone == nil && !isTimeout(err) {
				retried = true
				if h.redial(b) {
					if err := h.sendHead(bodyInBuf); err == nil {
						continue
					}
				}
			}
			h.closeUp()
			h.abortBody(bodyDone)
			status := 502
			kind := errKindResponse
			if isTimeout(err) {
				status, kind = 504, errKindTimeout
			}
			h.used.st.m.errs[kind].Inc()
			return h.fail(b, status)
		}
		if h.resp.Status >= 200 || h.resp.Status == 101 {
			h.sock.p.respSeconds(b, h.start)
			break
		}
		// 1xx interim (100 Continue, 103): forward, then read on.
		if err := h.writeClient(h.upIn.b[:n]); err != nil {
			h.closeUp()
			h.abortBody(bodyDone)
			return false
		}
		h.upLen = copy(h.upIn.b, h.upIn.b[n:h.upLen])
	}
	resp := &h.resp
	h.status = resp.Status
	if resp.Status == 101 {
		if !req.Upgrade() || bodyDone != nil {
			h.used.st.m.errs[errKindResponse].Inc()
			h.closeUp()
			return h.fail(b, 502)
		}
		h.upgrade(b)
		return false
	}
	bodyOK := true
	if bodyDone != nil {
		select {
		case err := <-bodyDone:
			bodyDone = nil
			bodyOK = err == nil
		default:
		}
	}
	kind := resp.BodyKind(req.IsHEAD)
	keep := req.KeepAlive() && kind != httphead.BodyUntilClose && bodyDone == nil && bodyOK && !h.draining.Load()
	reuse := resp.KeepAlive() && kind != httphead.BodyUntilClose && bodyDone == nil && bodyOK
	// Head plus the body bytes already read, in one write when possible.
	headLen := resp.HeadLen
	inBuf := h.upLen - headLen
	var bodyPart int
	switch kind {
	case httphead.BodyLength:
		bodyPart = int(min(int64(inBuf), resp.ContentLength))
	case httphead.BodyChunked:
		h.respChunk.Reset()
		k, err := h.respChunk.Scan(h.upIn.b[headLen:h.upLen])
		if err != nil {
			h.closeUp()
			h.abortBody(bodyDone)
			h.used.st.m.errs[errKindResponse].Inc()
			return h.fail(b, 502)
		}
		bodyPart = k
	case httphead.BodyUntilClose:
		bodyPart = inBuf
	}
	if inBuf > bodyPart {
		reuse = false // the server sent more than the response
	}
	// A response already whole in the buffer frees its server connection
	// and slot before the client write: the next request may use them.
	whole := kind == httphead.BodyNone ||
		(kind == httphead.BodyLength && int64(bodyPart) == resp.ContentLength) ||
		(kind == httphead.BodyChunked && h.respChunk.Done())
	if whole && bodyDone == nil {
		h.account(b)
		h.finishUp(b, reuse)
		h.releaseSlot()
	}
	var err error
	if resp.ForwardAsIs(keep, req.Minor) {
		err = h.writeClient(h.upIn.b[:headLen+bodyPart])
	} else {
		if h.out == nil {
			h.out = getBuf()
		}
		o := httphead.AppendResponse(h.out.b[:0], h.upIn.b[:headLen], resp, keep, req.Minor)
		body := h.upIn.b[headLen : headLen+bodyPart]
		if len(o)+len(body) <= cap(o) {
			err = h.writeClient(append(o, body...))
		} else if err = h.writeClient(o); err == nil {
			err = h.writeClient(body)
		}
	}
	if err == nil {
		switch kind {
		case httphead.BodyLength:
			if rem := resp.ContentLength - int64(bodyPart); rem > 0 {
				h.respBody.src, h.respBody.dst = &h.up.side, &h.cl
				var n int64
				n, err = h.respBody.move(rem)
				h.outBytes += n
			}
		case httphead.BodyChunked:
			if !h.respChunk.Done() {
				h.upLen = 0
				var n int64
				var left int
				left, n, err = h.pumpChunked(&h.respChunk, &h.up.side, &h.cl, h.upIn, 0, &h.respBody)
				h.outBytes += n
				if left > 0 {
					reuse = false
				}
			}
		case httphead.BodyUntilClose:
			h.respBody.src, h.respBody.dst = &h.up.side, &h.cl
			var n int64
			n, err = h.respBody.move(-1)
			h.outBytes += n
			reuse = false
		}
	}
	if bodyDone != nil {
		// The response ended before the request body: stop reading it.
		h.closeUp()
		h.abortBody(bodyDone)
		keep, reuse = false, false
	}
	h.upLen = 0
	putBuf(h.upIn)
	h.upIn = nil
	putBuf(h.out)
	h.out = nil
	if err != nil {
		h.closeUp()
		if !errors.Is(err, errShortBody) && !isTimeout(err) {
			h.lm.errs[errKindClient].Inc()
		} else {
			h.used.st.m.errs[errKindResponse].Inc()
		}
		h.logRequest(b, h.used)
		return false
	}
	if !whole || bodyDone != nil {
		h.finishUp(b, reuse)
		h.account(b)
	}
	h.logRequest(b, h.used)
	return keep
}

// abortBody stops an asynchronous request-body copy and waits for it.
func (h *httpConn) abortBody(done chan error) {
	if done == nil {
		return
	}
	_ = h.cl.c.SetReadDeadline(time.Unix(1, 0))
	<-done
	h.cl.dl.rd = 0
	h.consumeIn(h.inLen)
}

// readRespHead reads until a complete response head is buffered and
// returns its length. Errors are os.ErrDeadlineExceeded (504), or a
// read or parse error (502).
func (h *httpConn) readRespHead() (int, error) {
	up := h.up
	if h.upIn == nil {
		h.upIn = getBuf()
	}
	from := 0
	for {
		if h.upLen > 0 {
			n, err := httphead.HeadComplete(h.upIn.b[:h.upLen], from)
			if err != nil {
				return 0, err
			}
			if n > 0 {
				if err := httphead.ParseResponse(h.upIn.b[:n], &h.resp); err != nil {
					return 0, err
				}
				return n, nil
			}
			if h.upLen == len(h.upIn.b) {
				return 0, errors.New("response head larger than 16 KiB")
			}
			from = max(0, h.upLen-3)
		}
		up.dl.read(up.c, time.Now().UnixNano(), up.timeout)
		r, err := up.read(h.upIn.b[h.upLen:])
		h.upLen += r
		if r == 0 && err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
	}
}

// upgrade relays both ways after a 101 Switching Protocols (WebSocket).
func (h *httpConn) upgrade(b *backend) {
	// The 101 head and anything after it, then anything the client sent
	// after its request head.
	err := h.writeClient(h.upIn.b[:h.upLen])
	if err == nil && h.inLen > h.headLen {
		h.up.dl.write(h.up.c, time.Now().UnixNano(), h.up.timeout)
		_, err = h.up.c.Write(h.in.b[h.headLen:h.inLen])
	}
	h.consumeIn(h.inLen)
	putBuf(h.upIn)
	h.upIn, h.upLen = nil, 0
	if err == nil {
		t := newTunnel(h.sock.p, &h.cl, &h.up.side, b.cfg.IdleTimeout, false)
		in, out := t.run()
		h.inBytes += in
		h.outBytes += out
	}
	h.closeUp()
	h.account(b)
	h.logRequest(b, h.used)
}

// finishUp pools or keeps the server connection, or closes it.
func (h *httpConn) finishUp(b *backend, reuse bool) {
	up := h.up
	h.up = nil
	if up == nil {
		return
	}
	if reuse && !up.srv.removed.Load() && up.srv.up.Load() {
		up.uses++
		if b.pp != 0 {
			h.priv = up
			return
		}
		if up.srv.pool.put(up, time.Now().UnixNano()) {
			return
		}
	}
	up.c.Close()
}

func (h *httpConn) closeUp() {
	if h.up != nil {
		h.up.c.Close()
		h.up = nil
	}
}

func (h *httpConn) releaseSlot() {
	if h.srv != nil {
		h.srv.release()
		h.srv = nil
	}
}

// fail answers with the proxy's own error; the connection stays open for
// 5xx answers when the request had no body left unread.
func (h *httpConn) fail(b *backend, status int) bool {
	h.status = status
	keep := h.req.KeepAlive() && !h.req.HasBody() && status >= 500 && status != 508 && !h.draining.Load() && h.req.Minor == 1
	if err := h.writeClient(errorResponse(status, keep)); err != nil {
		keep = false
	}
	h.logRequest(b, h.used)
	return keep
}

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
	al.LogAttrs(h.sock.p.bg, slog.LevelInfo, "http",
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
	)
}

// respSeconds records the time to a response head.
func (p *Proxy) respSeconds(b *backend, start time.Time) {
	b.st.m.resp.Observe(time.Since(start).Seconds())
}
