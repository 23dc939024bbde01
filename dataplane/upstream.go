package dataplane

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"syscall"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

// errConnectFailed is every connect attempt (retries included) failing.
var errConnectFailed = errors.New("could not connect to any server")

// connectServer takes a server slot and a connection to that server: a
// pooled keep-alive one when pooled is set and the backend sends no PROXY
// header, else a new one. A failed connect marks the server (passive
// health) and is retried on another server, Retries times (HAProxy's
// retries with redispatch). A new connection for a tunnel (pooled unset)
// is registered in p.dials until upConn.closeTunnel. errLoop: every
// server is this proxy's own listener.
//
// first is what the caller sends first on a new connection (a tunnel's
// ClientHello): the dial sends it as soon as the connection is made
// (dialTCP), unless a PROXY header must go before it or the accepting
// side of a loop must see the dial registered first. upConn.sent tells
// how much of it went out. q is the client connection, which a drain may
// call away while it waits in the backend's queue. failed, when not nil,
// is a server this request already failed to reach (httpConn.redial);
// the connection is then a new one.
func (p *Proxy) connectServer(b *backend, q queuer, peer, local netip.AddrPort, pooled bool, first []byte, failed *serverState) (*server, *upConn, error) {
	var hash uint32
	if b.cfg.Balance == BalanceSource {
		hash = sourceHash(peer.Addr())
	}
	if b.loops {
		return nil, nil, errLoop
	}
	// The servers whose connect failed in this request: a retry goes to
	// another while one is up (HAProxy's redispatch), and each counts one
	// failure toward passive health, however often it is retried.
	var triedArr [4]*serverState
	tried := triedArr[:0]
	if failed != nil {
		tried = append(tried, failed)
	}
	for attempt := 0; attempt <= b.cfg.Retries; attempt++ {
		s, err := b.acquire(hash, tried, q)
		if err == errLeftQueue || err == errBackendGone {
			return nil, nil, err // no fault of the backend's
		}
		if err != nil {
			kind := errKindNoServer
			switch err {
			case errQueueTimeout:
				kind = errKindQueue
			case errQueueFull:
				kind = errKindQueueFull
			}
			b.st.m.errs[kind].Inc()
			return nil, nil, err
		}
		// The server's own generation of the backend decides from here
		// (PROXY header, timeouts, retries): a reload since the route
		// gives acquire its servers (backend.acquire).
		b = s.b
		again := slices.Contains(tried, s.st)
		if attempt > 0 || failed != nil {
			if again {
				b.st.m.retry.Inc()
			} else {
				b.st.m.redispatch.Inc()
			}
		}
		// A request that found its pooled connection closed goes on a
		// new one (failed set): another pooled one may be as stale, and
		// a request is sent again once only.
		if pooled && b.pp == 0 && failed == nil {
			if c := s.st.pool.get(time.Now().UnixNano(), min(poolIdleMax, b.cfg.IdleTimeout), p.quietFresh()); c != nil {
				return s, c, nil
			}
		}
		if again {
			// The same server once more (no other is up): a server
			// restarting gets a moment first, as HAProxy's turn-around.
			time.Sleep(min(b.cfg.ConnectTimeout, time.Second))
		}
		pre := first
		if b.pp != 0 || s.mayLoop {
			pre = nil
		}
		c, sent, err := b.dial(s, pre)
		if err == nil {
			s.st.connectOK(p)
			var own dialEnds
			if !pooled && s.mayLoop {
				// Before the first byte goes out: the accepting side
				// checks once it has read bytes (loop.go).
				if own, err = p.dials.add(c, s.cfg.Address); err != nil {
					c.Close()
				}
			}
			var u *upConn
			if err == nil {
				u, err = newUpConn(c, b, s, peer, local, pooled)
			}
			if err == nil {
				u.own, u.sent = own, sent
				return s, u, nil
			}
			if own.local.IsValid() {
				p.dials.remove(own)
			}
		}
		err = unwrapOp(err)
		s.st.connectFailed(p, err, again)
		if p.log.Enabled(p.bg, slogDebug) {
			p.log.Debug("connect failed", "backend", b.cfg.Name, "server", s.cfg.Name, "address", s.cfg.Address.String(), "error", err)
		}
		s.release()
		if !again {
			tried = append(tried, s.st)
		}
	}
	b.st.m.errs[errKindConnectFail].Inc()
	return nil, nil, errConnectFailed
}

// unseen reports that the server's host acknowledged none of the last n
// bytes written on u (TCP_INFO), as when the server had closed the
// connection and its host reset them: no server read them. Everything
// written before them was acknowledged once the previous answer came
// (the answer's segments acknowledge the request they answer).
func (u *upConn) unseen(n int64) bool {
	unacked := int64(-1)
	_ = u.rc.Control(func(fd uintptr) { unacked = rawUnacked(int(fd)) })
	return unacked >= 0 && unacked >= n
}

// localDialErr reports a connect that failed on this host's side (no
// descriptor, no memory, no local port left): not the server's fault, so
// not held against its health.
func localDialErr(err error) bool {
	var se *os.SyscallError
	if errors.As(err, &se) && se.Syscall == "socket" {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.EADDRNOTAVAIL} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// newUpConn wraps a new server connection, asks one for the pool for
// TCP_INQ, and sends the PROXY header the backend asks for (the
// connection then belongs to this client only).
func newUpConn(c sockConn, b *backend, s *server, peer, local netip.AddrPort, pooled bool) (*upConn, error) {
	u := &upConn{srv: s.st}
	if err := u.init(c, b.cfg.IdleTimeout); err != nil {
		c.Close()
		return nil, err
	}
	if pooled {
		// Its reads tell whether bytes followed an answer (upConn.quiet):
		// one setsockopt for the connection's life.
		_ = u.rc.Control(u.setInq)
	}
	if b.pp != 0 {
		if err := sendProxyHeader(&u.side, b.pp, peer, local); err != nil {
			c.Close()
			return nil, err
		}
	}
	return u, nil
}

// closeTunnel closes a tunnel's server connection and forgets its
// local address.
func (u *upConn) closeTunnel(p *Proxy) {
	u.c.Close()
	u.forget(p)
}

// forget forgets the local address of a tunnel's server connection
// (closed by the caller).
func (u *upConn) forget(p *Proxy) {
	if u.own.local.IsValid() {
		p.dials.remove(u.own)
	}
}

// sendProxyHeader writes a PROXY v1/v2 header naming the client and the
// address it connected to.
func sendProxyHeader(s *side, version byte, client, local netip.AddrPort) error {
	hdr := proxyproto.HeaderProxyFromAddrs(version, net.TCPAddrFromAddrPort(client), net.TCPAddrFromAddrPort(local))
	b, err := hdr.Format()
	if err != nil {
		return err
	}
	s.dl.write(s.c, time.Now().UnixNano(), s.timeout)
	_, err = s.write(b)
	return err
}
