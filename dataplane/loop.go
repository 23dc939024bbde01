package dataplane

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitedge/gitedge/dataplane/httphead"
)

// A backend whose server is this proxy's own listener would send each
// request back to the proxy, which sends it on again, until descriptors
// run out. Three checks keep such a loop to one hop:
//
//   - at Apply, a server whose address is one of the live listeners'
//     bound addresses (a wildcard bind matches this host's addresses on
//     its port) is marked self: it is never dialled, and a backend whose
//     servers are all self answers 508 (http) or closes (tls);
//   - in http mode every forwarded request carries this proxy's random id
//     in a Gitedge-Hop field, and a request that arrives carrying it is
//     answered 508 (a loop through another host, NAT or a second node);
//   - in tls mode, a connection whose peer is the local address of a
//     server connection this proxy dialled is its own (a self address the
//     Apply check could not see, such as a VIP that arrived later) and is
//     closed.
//
// Each detection counts in MetricLoops and logs a warning at most once per
// second per kind.

// errLoop is a backend that leads back to this proxy.
var errLoop = errors.New("the backend leads back to this proxy (request loop)")

// Loop kinds, the "kind" label of MetricLoops.
const (
	loopHopMark  = "hop_mark"        // http: a request carrying our own mark
	loopSelfAddr = "self_server"     // a server address is our own listener
	loopSelfConn = "self_connection" // tls: a connection from our own dial
)

// newHopID returns this proxy's random id for the hop mark.
func newHopID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}

// hopLine is the mark's field line followed by the end of the head.
func hopLine(id string) []byte {
	return []byte(httphead.HopMarkField + ": " + id + "\r\n\r\n")
}

// markSelf flags the servers of gen whose address reaches one of the
// listening addresses. Called by commit under Proxy.mu.
func (p *Proxy) markSelf(gen *generation, listening []netip.AddrPort) {
	// A server on the port of a wildcard listener may become this host
	// later (a VIP that moves here): its tunnels' dials are registered so
	// that the accepting side can tell (ownDials). Others cannot loop back
	// without the Apply-time check seeing it, and cost nothing.
	for _, b := range gen.backends {
		for _, s := range b.servers {
			s.mayLoop = false
			for _, l := range listening {
				if l.Port() == s.cfg.Address.Port() && l.Addr().IsUnspecified() {
					s.mayLoop = true
				}
			}
		}
	}
	if p.noSelfCheck {
		listening = nil
	}
	var local map[netip.Addr]bool // this host's addresses, read once if a wildcard needs them
	isLocal := func(a netip.Addr) bool {
		if a.IsLoopback() || a.IsUnspecified() {
			return true
		}
		if local == nil {
			local = localAddrs()
		}
		return local[a]
	}
	for _, b := range gen.backends {
		self := 0
		for _, s := range b.servers {
			s.self = false
			a := s.cfg.Address.Addr().Unmap()
			for _, l := range listening {
				if l.Port() != s.cfg.Address.Port() {
					continue
				}
				la := l.Addr().Unmap()
				switch {
				case la == a:
					s.self = true
				case la.IsUnspecified():
					// 0.0.0.0:P takes IPv4 only; [::]:P both families.
					s.self = (a.Is4() || !la.Is4()) && isLocal(a)
				case a.IsUnspecified():
					// Connecting to 0.0.0.0 or [::] reaches this host.
					s.self = la.IsLoopback() || isLocal(la)
				}
				if s.self {
					break
				}
			}
			if s.self {
				self++
				p.log.Warn("server points at this proxy's own listener: it is never used (a request there would loop)",
					"backend", b.cfg.Name, "server", s.cfg.Name, "address", s.cfg.Address.String())
			}
		}
		b.loops = self > 0 && self == len(b.servers)
	}
}

// localAddrs returns the addresses of this host's interfaces.
func localAddrs() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				m[ip.Unmap()] = true
			}
		}
	}
	return m
}

// ownDials holds the two ends of the server connections this proxy
// dialled for tunnels, so that an accepted connection can tell it is one:
// its peer is our dial's local end and its local end our dial's remote
// one. Both ends, since one local port serves many connections to
// different servers.
type ownDials struct {
	n  atomic.Int64 // entries: the lookup is skipped while there are none
	mu sync.Mutex
	m  map[dialEnds]struct{}
}

type dialEnds struct{ local, remote netip.AddrPort }

func unmapped(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

func (d *ownDials) add(c sockConn, remote netip.AddrPort) (dialEnds, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return dialEnds{}, err
	}
	local, err := localAddr(rc)
	if err != nil {
		return dialEnds{}, err
	}
	e := dialEnds{unmapped(local), unmapped(remote)}
	d.mu.Lock()
	if d.m == nil {
		d.m = map[dialEnds]struct{}{}
	}
	d.m[e] = struct{}{}
	d.n.Store(int64(len(d.m)))
	d.mu.Unlock()
	return e, nil
}

func (d *ownDials) remove(e dialEnds) {
	d.mu.Lock()
	delete(d.m, e)
	d.n.Store(int64(len(d.m)))
	d.mu.Unlock()
}

// has reports whether a connection accepted from peer on local is one
// this proxy dialled.
func (d *ownDials) has(peer, local netip.AddrPort) bool {
	if d.n.Load() == 0 {
		return false
	}
	d.mu.Lock()
	_, ok := d.m[dialEnds{peer, local}]
	d.mu.Unlock()
	return ok
}

// rateLog lets one log line through per interval and counts the rest.
type rateLog struct {
	last       atomic.Int64
	suppressed atomic.Int64
}

const loopLogEvery = time.Second

// allow reports whether to log now, and how many lines were held back
// since the last one.
func (r *rateLog) allow() (bool, int64) {
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(loopLogEvery) || !r.last.CompareAndSwap(last, now) {
		r.suppressed.Add(1)
		return false, 0
	}
	return true, r.suppressed.Swap(0)
}

// loopDetected counts a loop and logs it at a bounded rate.
func (p *Proxy) loopDetected(kind, listener string, peer netip.AddrPort, backend, detail string) {
	p.m.loops.WithLabelValues(kind).Inc()
	rl := p.loopLogs[kind]
	if rl == nil {
		return
	}
	if ok, held := rl.allow(); ok {
		p.log.Warn("request loop detected: a backend leads back to this proxy; fix the server address",
			"kind", kind, "listener", listener, "client", peer.String(), "backend", backend, "detail", detail,
			"suppressed_since_last", held)
	}
}
