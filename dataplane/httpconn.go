package dataplane

import (
	"errors"
	"fmt"
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
	cw      sideWriter // writes to the client
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
	// upSend is the request, when it is to go out with the first read of
	// the answer (sendHead).
	upSend []byte
	// clSend is a whole response, when it is to go out with the first
	// read of the client's next request (readHead); clBuf holds it.
	clSend []byte
	clBuf  *buffer
	// inOrder: the client waits for each answer before it sends its next
	// request (seen on this connection: a read after an answer found
	// nothing), so an answer may go out under the wait for the next.
	inOrder bool
	tries   int // onReadable calls in the current read

	reqBody, respBody   mover
	reqChunk, respChunk httphead.Chunked

	resumed bool   // bytes are waiting: read them before any idle check
	marked  bool   // the hop mark is in the client buffer's head
	parkAt  int64  // the read deadline a parking connection had
	pre     []byte // bytes read past a PROXY header, served first

	// per request
	start  time.Time
	status int
	// why is what went wrong when the proxy answered or cut the request
	// itself: the access log's error (HAProxy's termination state, said).
	why               error
	inBytes, outBytes int64
	bodySent          bool // request body bytes went out beyond the first write
	consumed          int  // bytes of in that belong to this request
	// bodyOut: the request body's copy failed writing to the server (it
	// closed, reset, or stopped reading), not reading the client.
	bodyOut bool
}

// writeReadFresh: a pooled server connection idle for less long gets its
// request written under the wait for the answer (sendHead). A server that
// closed one meanwhile answers the request with a reset, which ends the
// wait as well; but a connection idle for longer is read at once after
// the write, as a check that it is still open.
const writeReadFresh = 250 * time.Millisecond

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
	h.cw.cb = h.cw.onWritable
	h.reqBody.bind()
	h.respBody.bind()
	return h
}

// putHTTPConn returns h to the pool once its goroutine is done with it.
func (p *Proxy) putHTTPConn(h *httpConn) {
	readFn, cwcb := h.readFn, h.cw.cb
	rb, sb := h.reqBody, h.respBody
	*h = httpConn{}
	h.readFn, h.cw.cb = readFn, cwcb
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
	h.tries++
	if h.clSend != nil {
		return h.sendAnswer()
	}
	if h.in == nil {
		h.in = getBuf()
	}
	for {
		n, err := rawRead(int(fd), h.in.b[h.inLen:])
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
		if first {
			h.headSeen.Store(true)
		}
		first = false
		if !h.exchange() {
			return
		}
		h.dropOut() // a failed exchange may leave it
		// Drop the request from the client buffer, keeping pipelined bytes.
		if h.inLen > h.consumed {
			h.inOrder = false
		}
		h.consumeIn(h.consumed)
	}
}

// finish closes the connection and gives its buffers back.
func (h *httpConn) finish() {
	if h.clSend != nil {
		// The connection ends before its next read (a drain, a reload
		// that removed the listener): the answer still goes out.
		h.sendAnswer()
	}
	putBuf(h.clBuf)
	h.clBuf = nil
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
	switch {
	case first:
		h.cl.dl.readAt(h.cl.c, h.accepted+int64(lg.cfg.RequestTimeout))
	case h.resumed && h.parkAt > 0:
		h.cl.dl.readAt(h.cl.c, h.parkAt)
	default:
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
			if !timed && (h.inLen > 1 || h.in.b[0] != '\r') {
				// The head started: it has requestTimeout from its first
				// byte. (A lone CR may be an empty line's, skipped once its
				// LF comes: it starts nothing, or CRs and LFs sent one at a
				// time would restart the clock again and again.)
				h.cl.dl.readAt(h.cl.c, now.Add(lg.cfg.RequestTimeout).UnixNano())
				timed = true
			}
			if h.inLen == len(h.in.b) {
				h.growIn(lg.cfg.MaxHeaderBytes)
			}
		}
		if h.clSend != nil {
			sendTogether() // the answer goes out with the read below
		}
		idle := h.inLen == 0 && !h.resumed
		h.resumed = false
		if idle && !h.enterIdle(now.UnixNano()) {
			return headEnd
		}
		answered := h.clSend != nil
		h.tries = 0
		err := h.cl.rc.Read(h.readFn)
		if h.clSend != nil {
			// The read ended before its callback ran (a deadline already
			// past, set by a drain or the sweeper): the answer goes now.
			h.sendAnswer()
		}
		if idle && !first && !answered && err == nil {
			// Whether this client waits for each answer: the first read
			// after one found nothing (it had to wait), or found bytes
			// (a pipelined request, or a client that quick).
			h.inOrder = h.tries > 1
		}
		if idle {
			rd := h.cl.dl.rd
			if h.leaveIdle() && h.inLen == 0 && isTimeout(unwrapOp(err)) && !h.refuse() && h.rerr == nil {
				if h.sock.p.park.failed.Load() || h.parkFD < 0 {
					// No parker after all, or the sweeper's ask came before
					// the first read saw the descriptor: the wait goes on
					// here, to its deadline.
					continue
				}
				// The sweeper asked this idle connection to park: it waits
				// in the parker until readable or until its deadline.
				h.parkAt = rd
				return headPark
			}
			now = time.Now()
			// The table may have been swapped while the connection sat
			// idle: the request now arriving is routed by the table current
			// when it arrives, not the one of the previous request.
			if cur := h.sock.current(ModeHTTP); cur != nil && cur != lg {
				lg, h.lg = cur, cur
				h.cl.timeout = cur.cfg.ClientTimeout
			}
		}
		if err != nil {
			if isTimeout(unwrapOp(err)) && h.inLen > 0 && !h.draining.Load() {
				h.lm.errs[errKindHeadTimeout].Inc()
				h.status, h.why = 408, errHeadTimeout
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
	// Doubling, not straight to the limit: with maxHeaderBytes at 1 MiB,
	// a head that stops a byte past 16 KiB would hold a whole MiB until
	// its requestTimeout.
	nb := &buffer{b: make([]byte, min(2*len(h.in.b), max+bufSize))}
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
	h.status, h.why = status, err
	h.start = time.Now()
	h.writeClient(errorResponse(status, false))
	if h.sock.p.log.Enabled(h.sock.p.bg, slogDebug) {
		h.sock.p.log.Debug("request rejected", "listener", h.lg.cfg.Name, "client", h.peer.String(), "status", status, "error", err)
	}
	h.logRequest(nil, nil)
}

// sendAnswer writes the answer that readHead's read was to send first
// (response), from the read's callback: the netpoller forgot the socket's
// earlier readiness before it, so the client's next request, which only
// this answer can prompt, wakes the wait without a read tried first (a
// system call that would find nothing). A full socket takes the rest
// through writeClient's wait. The answer is sent: the read waits (false),
// or ends with the write's error (true).
//
// Only a client seen waiting for its answers gets this (inOrder): one
// that pipelines a request while the proxy waits on the server has that
// request's readiness taken by the netpoller before the answer goes out,
// and no wake-up follows. The idle sweeper then parks the connection
// after idleLinger, and the parker, which asks the kernel afresh, serves
// it (TestInOrderClientThenPipelines); the connection is then read first
// again, until it is seen waiting in order.
func (h *httpConn) sendAnswer() bool {
	w := h.clSend
	h.clSend = nil
	h.cl.dl.write(h.cl.c, time.Now().UnixNano(), h.cl.timeout)
	if _, err := h.cw.write(&h.cl, w); err != nil {
		h.lm.errs[errKindClient].Inc()
		h.rerr = err
		return true
	}
	putBuf(h.clBuf)
	h.clBuf = nil
	return false
}

// writeClient writes to the client within clientTimeout.
func (h *httpConn) writeClient(b []byte) error {
	h.cl.dl.write(h.cl.c, time.Now().UnixNano(), h.cl.timeout)
	n, err := h.cw.write(&h.cl, b)
	h.outBytes += int64(n)
	return err
}

// exchange forwards one request and its response. It reports whether the
// client connection stays open for another request.
func (h *httpConn) exchange() bool {
	h.start = time.Now()
	h.status, h.inBytes, h.outBytes, h.bodySent, h.marked, h.upSend, h.why = 0, 0, 0, false, false, nil, nil
	h.bodyOut = false
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
		h.why = errNoRoute
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
	for rerouted := false; !h.connect(b); rerouted = true {
		// A reload removed the backend between the route and the
		// connect: the request goes where the running table sends it.
		if h.why != errBackendGone || rerouted {
			return h.fail(b, h.status)
		}
		cur := h.sock.current(ModeHTTP)
		if cur == nil {
			return h.fail(b, h.status)
		}
		lg, h.lg = cur, cur
		h.status, h.why = 0, nil
		if b = lg.route(req.Host); b == nil {
			h.lm.errs[errKindNoRoute].Inc()
			h.why = errNoRoute
			return h.fail(nil, 503)
		}
	}
	// The server's generation of the backend (a reload may have come
	// since the route): its PROXY header setting decides whether the
	// connection is pooled or the client's alone (finishUp).
	b = h.used.b
	if lg.cfg.ForwardFor {
		h.rw.ForwardedFor, h.rw.Proto = h.peer.Addr(), "http"
	} else {
		h.rw.ForwardedFor = netip.Addr{}
	}
	defer h.releaseSlot()
	bodyComplete := !req.HasBody() || (req.Chunked && h.reqChunk.Done()) ||
		(!req.Chunked && int64(bodyInBuf) == req.ContentLength)
	// A whole request on a connection that was busy a moment ago goes out
	// under the wait for its answer (sendHead, writeRead). One idle for
	// longer is written and read as usual: its first read also tells at
	// once whether the server closed it meanwhile.
	later := bodyComplete && (h.up.uses == 0 || h.start.UnixNano()-h.up.idleAt < int64(writeReadFresh))
	retried := false
	for {
		err := h.sendHead(bodyInBuf, later)
		if err == nil {
			break
		}
		if h.canRetry(retried, bodyInBuf) {
			retried = true
			if h.redial(b) {
				b = h.used.b // another server's, maybe of a newer generation
				continue
			}
			return h.fail(b, 503)
		}
		h.used.st.m.errs[errKindResponse].Inc()
		h.closeUp()
		h.why = fmt.Errorf("sending the request to the server: %w", err)
		return h.fail(b, 502)
	}
	var bodyDone chan error
	if !bodyComplete {
		// The rest of the body goes alongside reading the response: the
		// client may wait for 100 Continue before sending it, and a
		// server may answer before it has read it all (401, 413) and
		// close, or stop reading (RFC 9112 §9.5): that answer reaches the
		// client rather than a 502 or, the upload stuck, a 408.
		bodyDone = make(chan error, 1)
		go h.forwardBodyAsync(h.up, bodyInBuf, bodyDone)
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
