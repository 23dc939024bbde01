package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	proxyproto "github.com/pires/go-proxyproto"
)

const (
	// passiveFall is how many consecutive connect failures mark a server
	// down when its backend has no active check.
	passiveFall = 3
)

// passiveRetry is how long a server marked down by connect failures alone
// stays down before it is tried again. A var: tests shorten it.
var passiveRetry = 5 * time.Second

// checker runs a server's active health checks.
type checker struct {
	p      *Proxy
	s      *serverState
	hc     HealthCheck
	pp     byte
	ctx    context.Context // ends at halt, or when the proxy stops
	cancel context.CancelFunc
	done   chan struct{}
}

// startChecker starts active checks for s with hc, replacing a running
// checker whose settings differ. Called under Proxy.mu.
func (p *Proxy) startChecker(s *serverState, hc HealthCheck, pp byte) {
	if c := s.checker; c != nil {
		if c.hc == hc && c.pp == pp {
			return
		}
		c.halt()
		s.checker = nil
	}
	if hc.Type == CheckNone {
		return
	}
	c := &checker{p: p, s: s, hc: hc, pp: pp, done: make(chan struct{})}
	c.ctx, c.cancel = context.WithCancel(p.bg)
	s.checker = c
	go c.run()
}

// halt ends the checks without waiting for the one in flight, which ends
// at once and reports nothing. Its caller holds Proxy.mu, which the
// report's path may need (a state change calls OnServerHealth, whose
// owner may ask for Status): waiting here deadlocked a reload that
// removed a server whose check was about to change its state.
func (c *checker) halt() { c.cancel() }

// run checks at once, then every Interval.
func (c *checker) run() {
	defer close(c.done)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		err := c.once()
		if c.ctx.Err() != nil {
			return // halted during the check: its result is moot
		}
		reason := "check passed"
		if err != nil {
			reason = err.Error()
		}
		c.s.report(c.p, err == nil, true, reason)
		t.Reset(c.hc.Interval)
	}
}

// once runs one check: a TCP connect, or an HTTP GET answered 2xx or 3xx.
func (c *checker) once() error {
	ctx, cancel := context.WithTimeout(c.ctx, c.hc.Timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialTCP(ctx, "tcp", netip.AddrPort{}, c.s.addr)
	if err != nil {
		err = unwrapOp(err)
		if se, ok := err.(*os.SyscallError); ok && se.Syscall == "connect" {
			return err // already "connect: connection refused"
		}
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	// A halt ends the exchange too, not only the connect.
	defer context.AfterFunc(c.ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })()
	if c.hc.Type == CheckTCP {
		return nil
	}
	_ = conn.SetDeadline(time.Now().Add(c.hc.Timeout))
	var req []byte
	if c.pp != 0 {
		// A server behind PROXY protocol wants a header first: LOCAL says
		// "a health check, no client".
		h := &proxyproto.Header{Version: c.pp, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
		if req, err = h.Format(); err != nil {
			return err
		}
	}
	host := c.hc.Host
	if host == "" {
		host = c.s.addr.String()
	}
	req = fmt.Appendf(req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: gitedge-health-check\r\nConnection: close\r\n\r\n", c.hc.Path, host)
	if _, err := conn.Write(req); err != nil {
		return fmt.Errorf("send check: %w", unwrapOp(err))
	}
	line, err := bufio.NewReaderSize(conn, 512).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read check response: %w", unwrapOp(err))
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") || len(f[1]) != 3 {
		return fmt.Errorf("check response is not HTTP: %q", strings.TrimSpace(line))
	}
	if f[1][0] != '2' && f[1][0] != '3' {
		return fmt.Errorf("check answered %s", f[1])
	}
	return nil
}

// report feeds one check result (active) or one failed connect (passive)
// into the server's rise/fall counters and changes its state when they
// say so. A successful connect is connectOK's. Failed connects count
// toward an actively checked server's fall too (HAProxy's observe
// layer4), but only its checks raise it again.
func (s *serverState) report(p *Proxy, ok, active bool, reason string) {
	s.hmu.Lock()
	if s.removed.Load() {
		s.hmu.Unlock()
		return // a result that came in as the server was removed
	}
	hc := s.hc
	rise, fall := hc.Rise, hc.Fall
	if hc.Type == CheckNone {
		rise, fall = 1, passiveFall
	}
	var change, up bool
	announce := true
	if ok {
		s.failRun = 0
		s.okRun++
		if !s.up.Load() && active && s.okRun >= rise {
			change, up = true, true
		}
	} else {
		s.okRun = 0
		s.failRun++
		if s.up.Load() && s.failRun >= fall {
			change, up = true, false
			// A server on trial was never announced up again: its
			// failure is not news.
			announce = !s.trial
			s.trial = false
			if hc.Type == CheckNone {
				// Nothing would bring it back: try it again after a while.
				if s.retry != nil {
					s.retry.Stop()
				}
				s.retry = time.AfterFunc(passiveRetry, func() { s.retryPassive(p) })
			}
		}
	}
	if change {
		s.up.Store(up)
	}
	s.hmu.Unlock()
	if change && announce {
		p.serverChanged(s, up, reason)
	}
}

// retryPassive puts a passively downed server back in rotation on trial:
// it takes requests again, but is announced up (log, gauge, the owner's
// callback) only once a connect to it succeeds (connectOK); one more
// failure takes it out again, silently. Announcing it at once made a dead
// server flap down and up every passiveRetry, and an alert on its gauge
// staying 0 never fired.
func (s *serverState) retryPassive(p *Proxy) {
	s.hmu.Lock()
	if s.up.Load() || s.removed.Load() || s.hc.Type != CheckNone {
		s.hmu.Unlock()
		return
	}
	s.failRun = passiveFall - 1
	s.trial = true
	s.up.Store(true)
	s.hmu.Unlock()
	if p.log.Enabled(p.bg, slogDebug) {
		p.log.Debug("server on trial after connect failures", "backend", s.b.name, "server", s.name, "address", s.addr.String())
	}
	s.b.wakeAll() // queued requests may try it
}

// connectOK is a successful connect: it is counted, clears a server's
// passive failures, and announces a server on trial up. An actively
// checked server's state is its checks' (a connect succeeding says
// nothing of a health endpoint answering 503 to drain it).
func (s *serverState) connectOK(p *Proxy) {
	s.m.conns.Inc()
	s.hmu.Lock()
	if s.hc.Type != CheckNone {
		s.hmu.Unlock()
		return
	}
	s.failRun = 0
	trial := s.trial
	s.trial = false
	s.hmu.Unlock()
	if trial {
		p.serverChanged(s, true, "a connect succeeded after connect failures")
	}
}

// connectFailed is a failed connect (err unwrapped): it is counted, and
// held against the server's health unless this request has already
// counted one against it (again) or the failure is this host's
// (localDialErr).
func (s *serverState) connectFailed(p *Proxy, err error, again bool) {
	s.m.errs[errKindConnect].Inc()
	if !again && !localDialErr(err) {
		s.report(p, false, false, err.Error())
	}
}
