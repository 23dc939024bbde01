package dataplane

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// listenSock is one listening socket, kept across config generations as
// long as some generation has a listener on its bind (caddy's usage pool:
// a reload never closes a socket that stays, so it never refuses a
// connection). cur is the listener config new connections and new
// requests read; nil once the socket is removed and draining.
type listenSock struct {
	p    *Proxy
	bind Bind
	ln   *net.TCPListener
	acc  acceptor // the accept loop's; opened by start
	cur  atomic.Pointer[listenerGen]

	mu       sync.Mutex
	conns    map[*clientConn]struct{}
	draining bool
	started  bool
	empty    chan struct{}  // made when draining starts, closed when conns is empty
	accepted sync.WaitGroup // the accept loop
	healthy  atomic.Bool    // the accept loop runs and its last accept did not fail
	// last is cur when the socket stopped accepting: a connection the
	// accept loop took meanwhile is served with it (draining), not closed
	// unanswered.
	last atomic.Pointer[listenerGen]

	// full: the accept loop waits on room for a connection to end (the
	// listener's MaxConn); under mu. room is also kicked by a new config
	// and by stopAccepting. fullLog is when that was last logged.
	full    bool
	room    chan struct{}
	fullLog time.Time
}

// listenTCP opens a listening socket with IP_FREEBIND (IPV6_FREEBIND), so a
// VIP this node does not hold yet can be bound before VRRP moves it here,
// and with TCP keep-alive probes set on the socket (accepted sockets
// inherit them: no per-connection setsockopt).
func listenTCP(b Bind) (*net.TCPListener, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: listenControl(b)}
	ln, err := lc.Listen(context.Background(), bindNetwork(b), b.String())
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// bindNetwork is the network a bind listens on: tcp4 or tcp6 for an
// address, tcp (both) for a wildcard.
func bindNetwork(b Bind) string {
	switch {
	case b.Addr.Is4():
		return "tcp4"
	case b.Addr.Is6():
		return "tcp6"
	}
	return "tcp"
}

// listen opens the socket of key, or takes the one Options.Inherit has.
func (p *Proxy) listen(key sockKey) (*net.TCPListener, error) {
	if p.inherit != nil {
		if ln := p.inherit(key.String()); ln != nil {
			return ln, nil
		}
	}
	return listenTCP(key.bind)
}

// ListenSocket is one listening socket of the running config.
type ListenSocket struct {
	// Key names it in Options.Inherit.
	Key      string
	Listener *net.TCPListener
}

// Sockets returns the listening sockets of the running config, for a
// process that hands them to its successor (an upgrade in place). They
// stay the proxy's: the caller duplicates them (File) and closes nothing.
func (p *Proxy) Sockets() []ListenSocket {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]ListenSocket, 0, len(p.socks))
	for k, s := range p.socks {
		out = append(out, ListenSocket{Key: k.String(), Listener: s.ln})
	}
	return out
}

// Addr returns the bound address (the real port when the bind asked for 0).
func (s *listenSock) Addr() netip.AddrPort {
	return s.ln.Addr().(*net.TCPAddr).AddrPort()
}

// setDefer gives the socket the listener's DeferAccept, at each commit
// (one call a listener a reload; an inherited socket gets it too). On
// failure the socket keeps its setting and serves all the same.
func (s *listenSock) setDefer(on bool) {
	if err := setDeferAccept(s.ln, on); err != nil {
		s.p.log.Warn("could not change the listener's deferAccept: it keeps its setting", "bind", s.bind.String(), "deferAccept", on, "error", err)
	}
}

// current is the socket's listener as the running table has it, when it
// still routes by mode; nil once the socket is removed or its listener
// changed mode.
func (s *listenSock) current(mode Mode) *listenerGen {
	if cur := s.cur.Load(); cur != nil && cur.cfg.Mode == mode {
		return cur
	}
	return nil
}

// start runs the accept loop; idempotent.
func (s *listenSock) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started || s.draining {
		return
	}
	s.started = true
	if err := s.acc.open(s.ln, s.bind); err != nil {
		s.p.log.Warn("the listener accepts through the net package (more CPU per connection)", "bind", s.bind.String(), "error", err)
	}
	s.healthy.Store(true)
	s.accepted.Add(1)
	go s.acceptLoop()
}

// acceptNet accepts through the net package: off Linux, or where the
// raw acceptor could not be opened.
func acceptNet(ln *net.TCPListener) (sockConn, netip.AddrPort, netip.AddrPort, error) {
	c, err := ln.AcceptTCP()
	if err != nil {
		return nil, netip.AddrPort{}, netip.AddrPort{}, err
	}
	peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	return c, netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port()), netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), nil
}

// acceptLoop accepts until the socket is closed. Errors back off instead
// of spinning, as net/http does. Running out of descriptors or memory is
// the process's state, and the listener stays healthy; any other error
// is the listener's, which reports unhealthy (failover's proxy track
// then moves the VIP) until an accept succeeds again: an error that
// passes, such as a security policy refusing for a while, costs no
// restart.
func (s *listenSock) acceptLoop() {
	defer s.accepted.Done()
	var delay time.Duration
	failing := false
	for {
		s.waitRoom()
		c, peer, local, err := s.acc.accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) || errors.Is(err, syscall.ECONNABORTED) {
				s.p.logAcceptError(s, err, delay)
			} else if !failing {
				failing = true
				s.healthy.Store(false)
				s.p.logAcceptError(s, err, 0)
			}
			time.Sleep(delay)
			continue
		}
		delay = 0
		if failing {
			failing = false
			s.mu.Lock()
			if !s.draining {
				s.healthy.Store(true)
			}
			s.mu.Unlock()
			s.p.log.Info("accepting again", "listener", s.name(), "bind", s.bind.String())
		}
		lg := s.cur.Load()
		if lg == nil {
			// Accepted as the socket stopped (an upgrade in place shares
			// it with the new process, which would have served this
			// client): tracked as draining, it gets its first request
			// answered, as one accepted a moment earlier.
			lg = s.last.Load()
		}
		if lg == nil {
			c.Close()
			continue
		}
		cc := s.p.newClientConn(s, c, peer, local, lg)
		if cc == nil {
			continue
		}
		cc.gen = lg
		s.p.workers.run(cc)
	}
}

// waitRoom holds the accept loop while the listener has MaxConn
// connections open: new ones wait in the kernel's accept queue, as behind
// HAProxy's maxconn, rather than being taken in and refused. A config
// with another cap, a connection's end and stopAccepting wake it.
func (s *listenSock) waitRoom() {
	for waited := false; ; waited = true {
		lg := s.cur.Load()
		if lg == nil || lg.cfg.MaxConn <= 0 {
			return
		}
		s.mu.Lock()
		n := len(s.conns)
		s.full = n >= lg.cfg.MaxConn && !s.draining
		if !s.full {
			s.mu.Unlock()
			return
		}
		logIt := time.Since(s.fullLog) >= fullLogEvery
		if logIt {
			s.fullLog = time.Now()
		}
		s.mu.Unlock()
		if !waited {
			lg.m.full.Inc()
		}
		if logIt {
			s.p.log.Warn("listener at maxConn: new connections wait in the kernel's accept queue until one ends",
				"listener", lg.cfg.Name, "bind", s.bind.String(), "maxConn", lg.cfg.MaxConn, "open", n)
		}
		<-s.room
	}
}

// fullLogEvery spaces the log lines of a listener at its maxConn.
const fullLogEvery = 10 * time.Second

// kick wakes an accept loop waiting for room (a new config may have
// raised the cap).
func (s *listenSock) kick() {
	s.mu.Lock()
	s.kickLocked()
	s.mu.Unlock()
}

func (s *listenSock) kickLocked() {
	select {
	case s.room <- struct{}{}:
	default:
	}
}

// track registers a connection so a drain can reach it. It reports
// whether the socket is draining, in which case the connection serves what
// it has and closes.
func (s *listenSock) track(c *clientConn) (draining bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	return s.draining
}

func (s *listenSock) untrack(c *clientConn) {
	s.mu.Lock()
	delete(s.conns, c)
	if s.full {
		s.full = false
		s.kickLocked()
	}
	if s.empty != nil && len(s.conns) == 0 {
		select {
		case <-s.empty:
		default:
			close(s.empty)
		}
	}
	s.mu.Unlock()
}

// stopAccepting closes the socket; connections already accepted go on,
// marked draining first, so that once the socket is closed every answer
// tells its client the connection closes.
func (s *listenSock) stopAccepting() {
	s.mu.Lock()
	s.draining = true
	for c := range s.conns {
		c.draining.Store(true)
	}
	s.acc.close()  // the accept loop's duplicate: the socket closes with ln
	s.kickLocked() // an accept loop waiting for room finds the socket closed
	s.mu.Unlock()
	// last before cur is nil: the accept loop finds one of them. A second
	// call (a removed listener's drain) keeps it.
	if lg := s.cur.Load(); lg != nil {
		s.last.Store(lg)
	}
	s.cur.Store(nil)
	s.healthy.Store(false)
	_ = s.ln.Close()
}

// drain asks every connection to finish: idle ones close now, busy ones
// after their current request (HTTP) or when their tunnel ends. After
// timeout whatever is left is closed. It returns when all are gone.
func (s *listenSock) drain(timeout time.Duration) {
	s.stopAccepting()
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if started {
		s.accepted.Wait() // no connection can be tracked after this
	}
	s.mu.Lock()
	s.empty = make(chan struct{})
	if len(s.conns) == 0 {
		close(s.empty)
	}
	for c := range s.conns {
		c.drain()
	}
	empty := s.empty
	s.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-empty:
		return
	case <-t.C:
	}
	s.mu.Lock()
	for c := range s.conns {
		c.forceClose()
	}
	s.mu.Unlock()
	<-empty
}
