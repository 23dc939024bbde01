package dataplane

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gitedge/gitedge/dataplane/httphead"
)

// canRetry: a connection from the pool may have been closed by the server
// while idle; the request is sent again on a new connection if nothing of
// the response came, the whole request is still in the buffer, and sending
// it twice does no harm: an idempotent method (RFC 9112 §9.3.1; nginx's
// default too), or any request the server's host never took a byte of
// (upConn.unseen: it had closed the connection, and reset the bytes). A
// server that took the request and closed without answering may have
// acted on a POST all the same: that one is not sent again.
func (h *httpConn) canRetry(retried bool, bodyInBuf int) bool {
	if retried || h.up == nil || h.up.uses == 0 || h.upLen > 0 || h.bodySent {
		return false
	}
	req := &h.req
	whole := !req.HasBody() || (req.Chunked && h.reqChunk.Done()) || (!req.Chunked && int64(bodyInBuf) == req.ContentLength)
	return whole && (idempotent(req.Method) || h.up.unseen(h.inBytes))
}

// idempotent reports whether a request method may be sent twice to the
// same effect (RFC 9110 §9.2.2).
func idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// redial replaces a stale pooled connection with a new one to the same
// server, or, when that server refuses it, to another (HAProxy's
// redispatch), as a connect that failed at first would.
func (h *httpConn) redial(b *backend) bool {
	b.st.m.resend.Inc()
	h.closeUp()
	h.upLen = 0
	c, _, err := b.dial(h.used, nil)
	if err != nil {
		err = unwrapOp(err)
		h.used.st.connectFailed(h.sock.p, err, false)
		h.releaseSlot()
		s, u, cerr := h.sock.p.connectServer(b, h.clientConn, h.peer, h.local, true, nil, h.used.st)
		if cerr != nil {
			h.why = fmt.Errorf("the pooled server connection was closed, connecting to it again failed (%v), and so did the retries: %w", err, cerr)
			return false
		}
		if !h.holdUp(u) {
			u.c.Close() // a drain cut the connection
			s.release()
			h.why = errDrainCut
			return false
		}
		h.srv, h.used, h.up = s, s, u
		return true
	}
	h.used.st.connectOK(h.sock.p)
	u, err := newUpConn(c, b, h.used, h.peer, h.local, true)
	if err == nil && !h.holdUp(u) {
		u.c.Close() // a drain cut the connection
		h.why = errDrainCut
		return false
	}
	h.up = u
	return err == nil
}

// connect takes a server slot and a connection to it: the client's
// private PROXY-protocol connection when it fits, else a pooled or new one.
func (h *httpConn) connect(b *backend) bool {
	if pc := h.priv; pc != nil {
		h.priv = nil
		if pc.srv.b == b.st && !pc.srv.removed.Load() && pc.clean(time.Now().UnixNano(), h.sock.p.quietFresh()) {
			for _, s := range b.servers {
				if s.st == pc.srv && b.acquireServer(s) {
					if !h.holdUp(pc) {
						s.release()
						break
					}
					h.srv, h.used, h.up = s, s, pc
					return true
				}
			}
		}
		pc.c.Close()
	}
	s, u, err := h.sock.p.connectServer(b, h.clientConn, h.peer, h.local, true, nil, nil)
	if err == errLoop {
		h.sock.p.loopDetected(loopSelfAddr, h.lg.cfg.Name, h.peer, b.cfg.Name, "every server is this proxy's own listener")
		h.status, h.why = 508, err
		return false
	}
	if err != nil {
		h.status, h.why = 503, err
		return false
	}
	if !h.holdUp(u) {
		// A drain cut the connection while it waited for a server.
		u.c.Close()
		s.release()
		h.status, h.why = 503, errDrainCut
		return false
	}
	h.srv, h.used, h.up = s, s, u
	return true
}

// sendHead writes the request head (rewritten when needed) with this
// proxy's hop mark, and the body bytes already buffered.
//
// With later set, a request that goes out in one write is not written
// here but kept in h.upSend, and readRespHead writes it under the wait
// for the answer (side.writeRead).
func (h *httpConn) sendHead(bodyInBuf int, later bool) error {
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
		if later {
			h.upSend = h.in.b[:h.headLen+bodyInBuf]
			return nil
		}
		n, err := up.write(h.in.b[:h.headLen+bodyInBuf])
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
	if later && len(body) == 0 {
		h.upSend = o
		return nil
	}
	n, err := up.write(o)
	h.inBytes = int64(n)
	if err == nil && len(body) > 0 {
		n, err = up.write(body)
		h.inBytes += int64(n)
	}
	h.dropOut()
	return err
}

// dropOut gives back the buffer of a rewritten head once it is written.
// A request's goes back before the server answers, so the requests in
// flight hold two buffers each (their head and the answer's), not three.
func (h *httpConn) dropOut() {
	putBuf(h.out)
	h.out = nil
}

// forwardBody sends the rest of the request body to up.
func (h *httpConn) forwardBody(up *upConn, bodyInBuf int) error {
	h.bodySent = true
	if !h.req.Chunked {
		h.reqBody.src, h.reqBody.dst = &h.cl, &up.side
		n, err := h.reqBody.move(h.req.ContentLength - int64(bodyInBuf))
		h.inBytes += n
		h.bodyOut = err != nil && h.reqBody.errOut
		return err
	}
	// The chunked bytes in the buffer are sent; the rest is read fresh.
	h.consumeIn(h.headLen + bodyInBuf)
	h.consumed = 0
	if h.in == nil {
		h.in = getBuf()
	}
	var out bool
	left, n, err := h.pumpChunked(&h.reqChunk, &h.cl, &up.side, h.in, h.inLen, &h.reqBody, false, &out)
	h.inLen = left
	h.inBytes += n
	h.bodyOut = err != nil && out
	return err
}

// forwardBodyAsync is forwardBody on its own goroutine, alongside the
// response's read; named for stack dumps. When the client failed the
// body (a timeout, a short or malformed body), the server waits for the
// rest in vain: a past deadline ends the response's wait now, which then
// finds the error here. When the server failed it, its answer may still
// come: the read goes on.
func (h *httpConn) forwardBodyAsync(up *upConn, bodyInBuf int, done chan<- error) {
	err := h.forwardBody(up, bodyInBuf)
	out := h.bodyOut
	done <- err
	if err != nil && !out {
		_ = up.c.SetReadDeadline(time.Unix(1, 0))
	}
}

// bodyGrace is how long an answer that came before its request body's
// copy ended waits for that copy before the exchange gives up on
// keeping its connections.
const bodyGrace = 20 * time.Millisecond

// spliceMin is the size from which chunk data is spliced rather than
// copied through the buffer.
const spliceMin = 64 << 10

// pumpChunked forwards a chunked body from src to dst, or with decode
// only its data (Chunked.Decode). buf holds n unscanned bytes read from
// src. It returns how many bytes past the body's end are left at the
// front of buf; on an error, *dstFailed says whether writing to dst
// failed (a request body's and a response's may be pumped at once: the
// flag is the caller's, not the connection's).
func (h *httpConn) pumpChunked(ch *httphead.Chunked, src, dst *side, buf *buffer, n int, mv *mover, decode bool, dstFailed *bool) (int, int64, error) {
	var moved int64
	for {
		if n > 0 {
			var k, out int
			var err error
			if decode {
				k, out, err = ch.Decode(buf.b[:n])
			} else {
				k, err = ch.Scan(buf.b[:n])
				out = k
			}
			if err != nil {
				return 0, moved, err
			}
			if out > 0 {
				dst.dl.write(dst.c, time.Now().UnixNano(), dst.timeout)
				var err error
				if dst == &h.cl {
					// Through the connection's own writer: the side's is
					// looked at by a read of a request body going on at
					// the same time (onReadable).
					_, err = h.cw.write(dst, buf.b[:out])
				} else {
					_, err = dst.write(buf.b[:out])
				}
				if err != nil {
					*dstFailed = true
					return 0, moved, err
				}
			}
			moved += int64(out)
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
				*dstFailed = mv.errOut
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

// bodyFailed ends an exchange whose request body could not be forwarded
// and whose server did not answer.
func (h *httpConn) bodyFailed(b *backend, err error) bool {
	h.closeUp()
	h.why = fmt.Errorf("forwarding the request body: %w", err)
	var he *httphead.Error
	switch {
	case h.bodyOut:
		// The server closed, reset or stopped reading without an answer.
		status, kind := 502, errKindResponse
		if isTimeout(err) {
			status, kind = 504, errKindTimeout
		}
		h.used.st.m.errs[kind].Inc()
		h.status = status
		h.writeClient(errorResponse(status, false))
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
			if isTimeout(err) && bodyDone != nil {
				// The server's silence counts from the end of the request:
				// while the body is still on its way (after a 100
				// Continue, alongside this read), read on. The body's own
				// timeouts (clientTimeout, idleTimeout) bound it.
				select {
				case berr := <-bodyDone:
					bodyDone = nil
					if berr != nil {
						return h.bodyFailed(b, berr)
					}
				default:
				}
				continue
			}
			if h.canRetry(retried, bodyInBuf) && bodyDone == nil && !isTimeout(err) {
				retried = true
				if h.redial(b) {
					if err := h.sendHead(bodyInBuf, false); err == nil {
						continue
					}
				}
			}
			h.closeUp()
			h.abortBody(bodyDone)
			status := 502
			kind := errKindResponse
			h.why = fmt.Errorf("reading the response head: %w", err)
			if isTimeout(err) {
				status, kind = 504, errKindTimeout
				h.why = errRespTimeout
			}
			h.used.st.m.errs[kind].Inc()
			return h.fail(b, status)
		}
		if h.resp.Status >= 200 || h.resp.Status == 101 {
			h.sock.p.respSeconds(b, h.start)
			break
		}
		// 1xx interim (100 Continue, 103): forward, then read on. An
		// HTTP/1.0 client gets none (RFC 9110 §15.2): it would take it
		// for the answer. Once one came, the request is not sent again:
		// the server has it.
		retried = true
		if req.Minor > 0 {
			interim := h.upIn.b[:n]
			if h.resp.Flags&(httphead.HopByHop|httphead.HasHopMark|httphead.VersionOther) != 0 {
				// Its hop-by-hop fields, and those Connection names,
				// are the server's connection's (RFC 9110 §7.6.1); an
				// HTTP/1.2+ status line goes as HTTP/1.1 (§6.2).
				if h.out == nil {
					h.out = getBuf()
				}
				interim = httphead.AppendResponse(h.out.b[:0], interim, &h.resp, true, req.Minor)
			}
			if err := h.writeClient(interim); err != nil {
				h.closeUp()
				h.abortBody(bodyDone)
				return false
			}
		}
		h.upLen = copy(h.upIn.b, h.upIn.b[n:h.upLen])
	}
	resp := &h.resp
	h.status = resp.Status
	if resp.Status == 101 {
		if !req.Upgrade() || bodyDone != nil {
			h.used.st.m.errs[errKindResponse].Inc()
			h.closeUp()
			h.why = errUnaskedSwitch
			return h.fail(b, 502)
		}
		h.upgrade(b)
		return false
	}
	bodyOK := true
	if bodyDone != nil {
		// An answer after the whole body usually finds its copy done, but
		// the copy may not have said so yet (it runs on another P): a
		// moment's wait keeps the connections alive rather than closing
		// them for that race. An early answer waits as long.
		t := time.NewTimer(bodyGrace)
		select {
		case err := <-bodyDone:
			bodyDone = nil
			bodyOK = err == nil
		case <-t.C:
		}
		t.Stop()
	}
	kind := resp.BodyKind(req.IsHEAD)
	// An HTTP/1.0 client knows no transfer coding (RFC 9112 §6.1), though
	// the request went on as HTTP/1.0 and the server should not have used
	// one: the proxy decodes a chunked body for it, as nginx does, and the
	// close ends it. A coding besides chunked (gzip) could only go on
	// encoded, which the client would take for the content: 502.
	decode := kind == httphead.BodyChunked && req.Minor == 0
	if decode && resp.Flags&httphead.TECoded != 0 {
		h.used.st.m.errs[errKindResponse].Inc()
		h.closeUp()
		h.abortBody(bodyDone)
		h.why = errCodedFor10
		return h.fail(b, 502)
	}
	keep := req.KeepAlive() && kind != httphead.BodyUntilClose && !decode && bodyDone == nil && bodyOK && !h.draining.Load()
	reuse := resp.KeepAlive() && kind != httphead.BodyUntilClose && bodyDone == nil && bodyOK
	// Head plus the body bytes already read, in one write when possible.
	headLen := resp.HeadLen
	inBuf := h.upLen - headLen
	var bodyPart int
	bodyOut := -1 // the body bytes to send when not bodyPart (a decoded body)
	switch kind {
	case httphead.BodyLength:
		bodyPart = int(min(int64(inBuf), resp.ContentLength))
	case httphead.BodyChunked:
		h.respChunk.Reset()
		var k int
		var err error
		if decode {
			k, bodyOut, err = h.respChunk.Decode(h.upIn.b[headLen:h.upLen])
		} else {
			k, err = h.respChunk.Scan(h.upIn.b[headLen:h.upLen])
		}
		if err != nil {
			h.closeUp()
			h.abortBody(bodyDone)
			h.used.st.m.errs[errKindResponse].Inc()
			h.why = fmt.Errorf("the response's chunked body: %w", err)
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
		// Its last read ended the answer: did it leave anything behind?
		h.up.quiet = h.up.inq && !h.up.more
		h.finishUp(b, reuse)
		h.releaseSlot()
	}
	var err error
	if resp.ForwardAsIs(keep, req.Minor) {
		if keep && whole && bodyDone == nil && h.inOrder && h.inLen <= h.consumed {
			// The next read sends it (sendAnswer): the buffer goes with it.
			h.clSend, h.clBuf = h.upIn.b[:headLen+bodyPart], h.upIn
			h.upIn = nil
			h.outBytes += int64(len(h.clSend))
		} else {
			err = h.writeClient(h.upIn.b[:headLen+bodyPart])
		}
	} else {
		if h.out == nil {
			h.out = getBuf()
		}
		o := httphead.AppendResponse(h.out.b[:0], h.upIn.b[:headLen], resp, keep, req.Minor)
		body := h.upIn.b[headLen : headLen+bodyPart]
		if bodyOut >= 0 {
			body = body[:bodyOut]
		}
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
				var out bool
				left, n, err = h.pumpChunked(&h.respChunk, &h.up.side, &h.cl, h.upIn, 0, &h.respBody, decode, &out)
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
	h.dropOut()
	if err != nil {
		h.closeUp()
		// The answer started: its status stands, the error says how it
		// was cut.
		h.why = fmt.Errorf("the response was cut after %d bytes: %w", h.outBytes, err)
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
		var r int
		var err error
		if w := h.upSend; w != nil {
			h.upSend = nil
			sendTogether()
			var wn int
			wn, r, err = up.writeRead(w, h.upIn.b[h.upLen:])
			h.inBytes = int64(wn)
			h.dropOut()
		} else {
			r, err = up.read(h.upIn.b[h.upLen:])
		}
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
		_, err = h.up.write(h.in.b[h.headLen:h.inLen])
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
	h.dropUp()
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
		h.dropUp()
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
