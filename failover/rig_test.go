package failover

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/failover/vrrp"
)

// lan is an in-memory Ethernet segment: every frame sent to a multicast
// group reaches every other port, a unicast one only its owner. cut
// isolates ports from each other (a split brain).
type lan struct {
	mu    sync.Mutex
	ports []*memTransport
	cut   bool

	fxMu sync.Mutex
	fxs  []*memEffects
	dual int // times a router added a VIP another one on the lan held
}

// effects makes a memEffects that reports to the lan when it adds a VIP
// another router on the same lan still holds.
func (l *lan) effects() *memEffects {
	e := newEffects()
	e.lan = l
	l.fxMu.Lock()
	l.fxs = append(l.fxs, e)
	l.fxMu.Unlock()
	return e
}

func (l *lan) dualHolds() int {
	l.fxMu.Lock()
	defer l.fxMu.Unlock()
	return l.dual
}

type memTransport struct {
	lan  *lan
	addr netip.Addr
	rx   chan Datagram
	done chan struct{}
	once sync.Once

	mu   sync.Mutex
	sent []sentPacket
}

type sentPacket struct {
	at  time.Time
	dst netip.Addr
	p   *vrrp.Packet
}

func (l *lan) port(addr string) *memTransport {
	t := &memTransport{lan: l, addr: netip.MustParseAddr(addr), rx: make(chan Datagram, 1024), done: make(chan struct{})}
	l.mu.Lock()
	l.ports = append(l.ports, t)
	l.mu.Unlock()
	return t
}

func (l *lan) setCut(c bool) {
	l.mu.Lock()
	l.cut = c
	l.mu.Unlock()
}

func (t *memTransport) Source() netip.Addr { return t.addr }

func (t *memTransport) Send(msg []byte, dst netip.Addr) error {
	select {
	case <-t.done:
		return net.ErrClosed
	default:
	}
	p, err := vrrp.Decode(msg, t.addr, dst)
	if err != nil {
		return fmt.Errorf("router sent an invalid packet: %w", err)
	}
	t.mu.Lock()
	t.sent = append(t.sent, sentPacket{time.Now(), dst, p})
	t.mu.Unlock()
	t.lan.mu.Lock()
	defer t.lan.mu.Unlock()
	if t.lan.cut {
		return nil
	}
	for _, o := range t.lan.ports {
		if o == t || (!dst.IsMulticast() && o.addr != dst) {
			continue
		}
		o.deliver(Datagram{Payload: msg, Src: t.addr, Dst: dst, TTL: 255})
	}
	return nil
}

func (t *memTransport) deliver(d Datagram) {
	select {
	case <-t.done:
	case t.rx <- d:
	}
}

func (t *memTransport) Receive() (Datagram, error) {
	select {
	case d := <-t.rx:
		return d, nil
	case <-t.done:
		return Datagram{}, net.ErrClosed
	}
}

func (t *memTransport) Close() error {
	t.once.Do(func() { close(t.done) })
	return nil
}

// sentPackets returns what the router sent so far.
func (t *memTransport) sentPackets() []sentPacket {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.sent)
}

// memEffects records the host state a Router sets.
type memEffects struct {
	lan       *lan
	mu        sync.Mutex
	vips      map[netip.Prefix]bool
	bursts    []int // announce counts, in order
	announce  []time.Time
	announced [][]netip.Prefix // the VIPs of each burst
	addErr    error            // returned by AddVIPs (which still adds) when set
	removes   []string         // every RemoveVIPs call as "[vips]@time"
}

func newEffects() *memEffects { return &memEffects{vips: map[netip.Prefix]bool{}} }

func (e *memEffects) AddVIPs(v []netip.Prefix) error {
	if l := e.lan; l != nil && !e.holds() {
		l.fxMu.Lock()
		for _, o := range l.fxs {
			if o != e && o.holds() {
				l.dual++
			}
		}
		l.fxMu.Unlock()
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, p := range v {
		e.vips[p] = true
	}
	return e.addErr
}

func (e *memEffects) RemoveVIPs(v []netip.Prefix) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.removes = append(e.removes, fmt.Sprintf("%v@%v", v, time.Now().UTC().Format(time.TimeOnly+".000")))
	for _, p := range v {
		delete(e.vips, p)
	}
	return nil
}

func (e *memEffects) Announce(v []netip.Prefix, count int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.bursts = append(e.bursts, count)
	e.announce = append(e.announce, time.Now())
	e.announced = append(e.announced, slices.Clone(v))
	return nil
}

func (e *memEffects) holds() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.vips) > 0
}

// held returns the VIPs on the interface, sorted.
func (e *memEffects) held() []netip.Prefix {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := slices.Collect(maps.Keys(e.vips))
	slices.SortFunc(out, netip.Prefix.Compare)
	return out
}

// burstLog returns the announce bursts so far as "count×[vips]@since t0".
func (e *memEffects) burstLog(t0 time.Time) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for i, n := range e.bursts {
		if e.announce[i].Before(t0) {
			continue
		}
		out = append(out, fmt.Sprintf("%d×%v@%v", n, e.announced[i], e.announce[i].Sub(t0)))
	}
	return out
}

// removals returns the RemoveVIPs calls so far.
func (e *memEffects) removals() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.removes)
}

func (e *memEffects) announcements() []time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.announce)
}

// node is one Router on the lan with its recorders.
type node struct {
	r      *Router
	tr     *memTransport
	fx     *memEffects
	cancel context.CancelFunc
	done   chan struct{}
	recorder
}

// recorder keeps the transitions a Router or Manager reports through
// OnTransition (its record method).
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) record(e Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

var vip = netip.MustParsePrefix("192.0.2.10/24")

func baseInstance(prio uint8) Instance {
	return Instance{Name: "VI_1", Interface: "eth0", VRID: 33, Version: 3, AdvertInterval: 100 * time.Millisecond,
		Priority: prio, Preempt: true, VIPs: []netip.Prefix{vip},
		GARP: GARP{Repeat: 5, Delay: 5 * time.Second, Refresh: 60 * time.Second}}
}

// start runs a Router for in on the lan at addr. Must be called inside a
// synctest bubble; the router is stopped at the end of the test.
func start(t *testing.T, l *lan, addr string, in Instance) *node {
	t.Helper()
	n := &node{tr: l.port(addr), fx: l.effects(), done: make(chan struct{})}
	r, err := NewRouter(in, RouterOptions{Transport: n.tr, Effects: n.fx, OnTransition: n.record})
	if err != nil {
		t.Fatal(err)
	}
	n.r = r
	ctx, cancel := context.WithCancel(t.Context())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(n.stop)
	return n
}

// stop cancels the router and waits for its clean stop.
func (n *node) stop() {
	n.cancel()
	<-n.done
}

// transitions renders all the transitions as "INIT>BACKUP@0s" lines
// relative to t0.
func (n *recorder) transitions(t0 time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var b strings.Builder
	for _, e := range n.events {
		fmt.Fprintf(&b, "%s>%s@%v ", e.From, e.To, e.At.Sub(t0))
	}
	return strings.TrimSpace(b.String())
}

func (n *recorder) lastEvent() Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.events) == 0 {
		return Event{}
	}
	return n.events[len(n.events)-1]
}

// inject hands the router a packet as if received from src.
func (n *node) inject(t *testing.T, p *vrrp.Packet, src, dst netip.Addr, ttl int) {
	t.Helper()
	b, err := p.Encode(src, dst)
	if err != nil {
		t.Fatal(err)
	}
	n.tr.deliver(Datagram{Payload: b, Src: src, Dst: dst, TTL: ttl})
}

func advert(prio uint8, interval uint16) *vrrp.Packet {
	return &vrrp.Packet{Version: 3, Type: vrrp.TypeAdvertisement, VRID: 33, Priority: prio, Interval: interval,
		Addresses: []netip.Addr{vip.Addr()}}
}

func (s sentPacket) String() string {
	p := s.p
	str := fmt.Sprintf("v%d prio=%d int=%d addrs=%v to=%v", p.Version, p.Priority, p.Interval, p.Addresses, s.dst)
	if p.AuthType != vrrp.AuthNone {
		str += " pass=" + p.Password()
	}
	return str
}

// sentSince returns the packets sent at or after t.
func (t *memTransport) sentSince(at time.Time) []sentPacket {
	var out []sentPacket
	for _, s := range t.sentPackets() {
		if !s.at.Before(at) {
			out = append(out, s)
		}
	}
	return out
}

// eventLog renders the's transitions at or after t0 as
// "FROM>TO@offset (reason)".
func eventLog(events []Event, t0 time.Time) string {
	var b strings.Builder
	for _, e := range events {
		if e.At.Before(t0) {
			continue
		}
		fmt.Fprintf(&b, "%s>%s@%v ", e.From, e.To, e.At.Sub(t0))
	}
	return strings.TrimSpace(b.String())
}

// since renders the transitions at or after t0.
func (n *recorder) since(t0 time.Time) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return eventLog(n.events, t0)
}
