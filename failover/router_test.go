package failover

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gitedge/gitedge/failover/vrrp"
)

// Timer values for the default instance (v3, 100 ms): RFC 5798 §6.1.
const (
	skew100 = 156 * 100 * time.Millisecond / 256 // 60.9375ms
	skew101 = 155 * 100 * time.Millisecond / 256
	down100 = 300*time.Millisecond + skew100 // 360.9375ms
	down101 = 300*time.Millisecond + skew101
)

var (
	addr1 = netip.MustParseAddr("192.0.2.11")
	addr2 = netip.MustParseAddr("192.0.2.12")
	peer  = netip.MustParseAddr("192.0.2.13")
)

func wantState(t *testing.T, n *node, s State) {
	t.Helper()
	if got := n.r.State(); got != s {
		t.Fatalf("%s at %v: state %v, want %v (transitions: %s)", n.tr.addr, time.Now(), got, s, n.transitions(time.Time{}))
	}
	if n.fx.holds() != (s == StateMaster) {
		t.Fatalf("%s: in %v but holds VIPs = %v", n.tr.addr, s, n.fx.holds())
	}
}

// Initialize → Backup at start-up, Backup → Master when the
// Master_Down_Timer expires (RFC 5798 §6.4.1, §6.4.2).
func TestStartupAndMasterDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		n := start(t, &lan{}, "192.0.2.11", baseInstance(100))
		time.Sleep(time.Second)
		synctest.Wait()
		if got, want := n.transitions(t0), "INIT>BACKUP@0s BACKUP>MASTER@360.9375ms"; got != want {
			t.Fatalf("transitions %q, want %q", got, want)
		}
		wantState(t, n, StateMaster)
		// An advertisement every interval after becoming master.
		sent := n.tr.sentPackets()
		if len(sent) != 7 { // at 360.9375ms, then every 100ms up to 1s
			t.Fatalf("sent %d adverts, want 7", len(sent))
		}
		for i, s := range sent {
			if s.dst != vrrp.GroupIPv4 || s.p.Priority != 100 || s.p.Interval != 10 {
				t.Fatalf("advert %d: %+v to %v", i, s.p, s.dst)
			}
			if i > 0 && s.at.Sub(sent[i-1].at) != 100*time.Millisecond {
				t.Fatalf("advert %d %v after the previous", i, s.at.Sub(sent[i-1].at))
			}
		}
		// First GARP burst on becoming master, with the configured repeat.
		if b := n.fx.bursts; len(b) != 1 || b[0] != 5 {
			t.Fatalf("announce bursts %v, want [5]", b)
		}
	})
}

// Two routers: the higher priority wins, the other stays backup, only the
// master holds the VIP.
func TestElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{}
		t0 := time.Now()
		n1 := start(t, l, "192.0.2.11", baseInstance(100))
		n2 := start(t, l, "192.0.2.12", baseInstance(101))
		time.Sleep(3 * time.Second)
		synctest.Wait()
		wantState(t, n1, StateBackup)
		wantState(t, n2, StateMaster)
		if got, want := n2.transitions(t0), "INIT>BACKUP@0s BACKUP>MASTER@360.546875ms"; got != want {
			t.Fatalf("n2 transitions %q, want %q", got, want)
		}
		if got := n1.transitions(t0); got != "INIT>BACKUP@0s" {
			t.Fatalf("n1 transitions %q", got)
		}
		if n1.r.Master() != addr2 || n2.r.Master() != addr2 {
			t.Fatalf("masters as seen: n1 %v, n2 %v", n1.r.Master(), n2.r.Master())
		}
		if c := n1.r.Counters(); c.AdvertsReceived < 20 || len(c.Drops) != 0 {
			t.Fatalf("n1 counters %+v", c)
		}
	})
}

// Equal priorities: the higher primary address wins (RFC 5798 §6.4.3).
func TestEqualPriorityHigherAddressWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{}
		n1 := start(t, l, "192.0.2.11", baseInstance(100))
		n2 := start(t, l, "192.0.2.12", baseInstance(100))
		time.Sleep(2 * time.Second)
		synctest.Wait()
		wantState(t, n1, StateBackup)
		wantState(t, n2, StateMaster)
	})
}

// elected starts n1 (priority 100) and n2 (101, the master to be) on a
// lan and lets a second pass.
func elected(t *testing.T) (l *lan, n1, n2 *node) {
	t.Helper()
	l = &lan{}
	n1 = start(t, l, "192.0.2.11", baseInstance(100))
	n2 = start(t, l, "192.0.2.12", baseInstance(101))
	time.Sleep(time.Second)
	return l, n1, n2
}

// A clean stop sends priority 0 and the backup takes over after Skew_Time
// (RFC 5798 §6.4.3 Shutdown, §6.4.2 priority 0).
func TestCleanStopHandsOverAfterSkew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, n1, n2 := elected(t)
		t1 := time.Now()
		n2.stop()
		sent := n2.tr.sentPackets()
		if last := sent[len(sent)-1]; last.p.Priority != 0 || !last.at.Equal(t1) {
			t.Fatalf("last advert %+v at %v, want priority 0 at stop", last.p, last.at.Sub(t1))
		}
		if n2.fx.holds() || n2.r.State() != StateInitialize {
			t.Fatalf("stopped master: state %v, holds VIPs %v", n2.r.State(), n2.fx.holds())
		}
		time.Sleep(time.Second)
		synctest.Wait()
		wantState(t, n1, StateMaster)
		if e := n1.lastEvent(); e.To != StateMaster || e.At.Sub(t1) != skew100 {
			t.Fatalf("n1 became master %v after the stop (event %+v), want skew time %v", e.At.Sub(t1), e, skew100)
		}
	})
}

// A master that falls silent (SIGKILL, link down) is replaced after
// Master_Down_Interval, computed from the interval the master advertises
// (RFC 5798 §6.4.2: v3 backups learn Master_Adver_Interval).
func TestMasterSilentAndIntervalLearning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := baseInstance(100)
		in.AdvertInterval = time.Second // we'd use 1s; the master says 100ms
		n := start(t, &lan{}, "192.0.2.11", in)
		var last time.Time
		for range 20 {
			n.inject(t, advert(200, 10), peer, vrrp.GroupIPv4, 255)
			last = time.Now()
			time.Sleep(100 * time.Millisecond)
		}
		synctest.Wait()
		wantState(t, n, StateBackup)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		wantState(t, n, StateMaster)
		// Learned: 3 * 100ms + (156 * 100ms / 256), not 3s + 609ms.
		if e := n.lastEvent(); e.At.Sub(last) != down100 {
			t.Fatalf("took over %v after the last advert, want %v", e.At.Sub(last), down100)
		}
	})
}

// preempt: a higher-priority router that starts later takes over after its
// Master_Down_Interval, and the old master steps down on its first advert.
// preempt false: it stays backup. preemptDelay: it waits that much longer.
func TestPreempt(t *testing.T) {
	tests := []struct {
		name      string
		preempt   bool
		delay     time.Duration
		wantAfter time.Duration // n2 master this long after it started; 0 = never
	}{
		{"preempt", true, 0, down101},
		{"no preempt", false, 0, 0},
		{"preempt delay", true, time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := &lan{}
				n1 := start(t, l, "192.0.2.11", baseInstance(100))
				time.Sleep(time.Second)
				synctest.Wait()
				wantState(t, n1, StateMaster)
				in := baseInstance(101)
				in.Preempt, in.PreemptDelay = tt.preempt, tt.delay
				t1 := time.Now()
				n2 := start(t, l, "192.0.2.12", in)
				time.Sleep(4 * time.Second)
				synctest.Wait()
				if !tt.preempt {
					wantState(t, n2, StateBackup)
					wantState(t, n1, StateMaster)
					return
				}
				wantState(t, n2, StateMaster)
				wantState(t, n1, StateBackup)
				var became time.Duration
				for _, e := range n2.events {
					if e.To == StateMaster {
						became = e.At.Sub(t1)
					}
				}
				if tt.wantAfter != 0 && became != tt.wantAfter {
					t.Fatalf("n2 master %v after start, want %v", became, tt.wantAfter)
				}
				if tt.delay > 0 && (became < tt.delay || became > tt.delay+down101+100*time.Millisecond) {
					t.Fatalf("with preemptDelay %v, n2 master %v after start", tt.delay, became)
				}
				// The old master stepped down on the new one's first advert,
				// and the new one added the VIP only once it was released.
				if e := n1.lastEvent(); e.To != StateBackup || e.At.Sub(t1) != became {
					t.Fatalf("n1 stepped down at %v, n2 became master at %v", e.At.Sub(t1), became)
				}
				l.wantNoDualHolds(t)
			})
		})
	}
}

// The address owner (priority 255) is master at once and discards
// advertisements (RFC 5798 §6.4.1, §7.1).
func TestOwner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		n := start(t, &lan{}, "192.0.2.11", baseInstance(255))
		synctest.Wait()
		if got := n.transitions(t0); got != "INIT>MASTER@0s" {
			t.Fatalf("transitions %q", got)
		}
		n.inject(t, advert(254, 10), peer, vrrp.GroupIPv4, 255)
		time.Sleep(time.Second)
		synctest.Wait()
		wantState(t, n, StateMaster)
		if d := n.r.Counters().Drops[DropOwner]; d != 1 {
			t.Fatalf("owner drops %d", d)
		}
	})
}

// A master that hears priority 0 answers with an advertisement at once
// (RFC 5798 §6.4.3).
func TestMasterAnswersPriorityZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := start(t, &lan{}, "192.0.2.11", baseInstance(100))
		time.Sleep(time.Second + 50*time.Millisecond)
		before := len(n.tr.sentPackets())
		n.inject(t, advert(0, 10), peer, vrrp.GroupIPv4, 255)
		synctest.Wait()
		sent := n.tr.sentPackets()
		if len(sent) != before+1 || !sent[len(sent)-1].at.Equal(time.Now()) {
			t.Fatalf("no immediate advert after priority 0: %d → %d", before, len(sent))
		}
		wantState(t, n, StateMaster)
	})
}

// Split brain: cut the link, both become master; heal it, and the winner
// re-asserts (advert + GARP) on the first advert it hears from the loser,
// which steps down: within one advertisement interval of the heal.
func TestSplitBrainHeal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l, n1, n2 := elected(t)
		l.setCut(true)
		time.Sleep(time.Second)
		synctest.Wait()
		wantState(t, n1, StateMaster)
		wantState(t, n2, StateMaster)
		garps := len(n2.fx.announcements())
		healed := time.Now()
		l.setCut(false)
		time.Sleep(time.Second)
		synctest.Wait()
		wantState(t, n1, StateBackup)
		wantState(t, n2, StateMaster)
		a := n2.fx.announcements()
		if len(a) != garps+1 || a[len(a)-1].Sub(healed) > 100*time.Millisecond {
			t.Fatalf("winner announced %d times after heal (last %v after it), want once within an interval", len(a)-garps, a[len(a)-1].Sub(healed))
		}
		if e := n1.lastEvent(); e.At.Sub(healed) > 100*time.Millisecond {
			t.Fatalf("loser stepped down %v after heal", e.At.Sub(healed))
		}
	})
}

// A master that yields to a higher priority sends one last advert with its
// own priority, so the winner learns that clients may still point at the
// loser even when the winner's advert crossed the partition first; the
// winner re-announces at once.
func TestSteppingDownTellsTheWinner(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := start(t, &lan{}, "192.0.2.11", baseInstance(100))
		time.Sleep(time.Second)
		before := len(n.tr.sentPackets())
		n.inject(t, advert(200, 10), peer, vrrp.GroupIPv4, 255)
		synctest.Wait()
		wantState(t, n, StateBackup)
		sent := n.tr.sentPackets()
		if len(sent) != before+1 || sent[len(sent)-1].p.Priority != 100 || !sent[len(sent)-1].at.Equal(time.Now()) {
			t.Fatalf("sent %d packets on stepping down (last %+v), want one advert with priority 100", len(sent)-before, sent[len(sent)-1].p)
		}
		// The winner's side: a master hearing a lower-priority master
		// re-asserts with an advert and a GARP burst, at most once per interval.
		w := start(t, &lan{}, "192.0.2.12", baseInstance(200))
		time.Sleep(time.Second)
		a0, s0 := len(w.fx.announcements()), len(w.tr.sentPackets())
		w.inject(t, advert(100, 10), addr1, vrrp.GroupIPv4, 255)
		w.inject(t, advert(100, 10), addr1, vrrp.GroupIPv4, 255)
		synctest.Wait()
		if a, s := len(w.fx.announcements())-a0, len(w.tr.sentPackets())-s0; a != 1 || s != 1 {
			t.Fatalf("winner re-asserted with %d bursts and %d adverts, want 1 and 1", a, s)
		}
	})
}

// Tracking: a failing condition puts the master in Fault (priority 0 sent,
// VIPs released), the backup takes over after skew time; healing returns
// through Initialize to Backup, then preemption.
func TestTrackingFaultAndRecovery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, n1, n2 := elected(t)
		t1 := time.Now()
		n2.r.Track("interface eth1", false)
		synctest.Wait()
		wantState(t, n2, StateFault)
		if s := n2.tr.sentPackets(); s[len(s)-1].p.Priority != 0 {
			t.Fatalf("no priority 0 on fault")
		}
		time.Sleep(time.Second)
		synctest.Wait()
		wantState(t, n1, StateMaster)
		if e := n1.lastEvent(); e.At.Sub(t1) != skew100 {
			t.Fatalf("backup took over %v after the fault, want %v", e.At.Sub(t1), skew100)
		}
		if n2.r.Counters().Drops[DropFault] == 0 {
			t.Fatalf("adverts in fault not counted")
		}
		t2 := time.Now()
		n2.r.Track("interface eth1", true)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		wantState(t, n2, StateMaster)
		wantState(t, n1, StateBackup)
		if got := n2.transitions(t2); got[len(got)-len("INIT>BACKUP@0s BACKUP>MASTER@360.546875ms"):] != "INIT>BACKUP@0s BACKUP>MASTER@360.546875ms" {
			t.Fatalf("recovery transitions %q", got)
		}
	})
}

func TestFaultAtStartup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &node{tr: (&lan{}).port("192.0.2.11"), fx: newEffects(), done: make(chan struct{})}
		r, err := NewRouter(baseInstance(100), RouterOptions{Transport: n.tr, Effects: n.fx})
		if err != nil {
			t.Fatal(err)
		}
		r.Track("interface eth0", false)
		ctx, cancel := context.WithCancel(t.Context())
		go func() { r.Run(ctx); close(n.done) }()
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if r.State() != StateFault || n.fx.holds() || len(n.tr.sentPackets()) != 0 {
			t.Fatalf("state %v, holds %v, sent %d", r.State(), n.fx.holds(), len(n.tr.sentPackets()))
		}
		cancel()
		<-n.done
		if err := r.Run(t.Context()); err == nil {
			t.Fatal("second Run accepted")
		}
	})
}

// A VIP removed by hand while master is put back and re-announced; the
// second GARP burst and the periodic refresh happen on time.
func TestVIPRestoreAndAnnouncements(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := start(t, &lan{}, "192.0.2.11", baseInstance(100))
		time.Sleep(time.Second)
		n.fx.RemoveVIPs([]netip.Prefix{vip})
		n.r.VIPRemoved()
		synctest.Wait()
		if !n.fx.holds() {
			t.Fatal("VIP not restored")
		}
		time.Sleep(61 * time.Second)
		synctest.Wait()
		got := n.fx.bursts
		// became master (5), restored (5), second burst at +5s (5), refresh at +60s (1).
		if want := []int{5, 5, 5, 1}; len(got) != len(want) || got[0] != 5 || got[1] != 5 || got[2] != 5 || got[3] != 1 {
			t.Fatalf("bursts %v, want %v", got, want)
		}
		a := n.fx.announcements()
		if a[2].Sub(a[0]) != 5*time.Second || a[3].Sub(a[0]) != 60*time.Second {
			t.Fatalf("second burst %v, refresh %v after becoming master", a[2].Sub(a[0]), a[3].Sub(a[0]))
		}
	})
}

// Every kind of bad packet is dropped, counted under its reason, and
// changes nothing.
func TestDrops(t *testing.T) {
	v2 := baseInstance(100)
	v2.Version, v2.AdvertInterval, v2.AuthPass = 2, time.Second, "9999"
	v2pkt := func(mod func(*vrrp.Packet)) *vrrp.Packet {
		p := &vrrp.Packet{Version: 2, Type: 1, VRID: 33, Priority: 200, AuthType: vrrp.AuthSimple, Interval: 1,
			Addresses: []netip.Addr{vip.Addr()}}
		p.SetPassword("9999")
		if mod != nil {
			mod(p)
		}
		return p
	}
	uni := baseInstance(100)
	uni.UnicastPeers, uni.UnicastSource = []netip.Addr{addr2}, addr1
	good3, _ := advert(200, 10).Encode(peer, vrrp.GroupIPv4)
	bad := func(b []byte, f func([]byte) []byte) []byte { c := append([]byte(nil), b...); return f(c) }
	tests := []struct {
		name   string
		in     Instance
		d      Datagram
		p      *vrrp.Packet // encoded from src peer when set
		ttl    int
		reason string
	}{
		{"ttl", baseInstance(100), Datagram{}, advert(200, 10), 64, DropTTL},
		{"checksum", baseInstance(100), Datagram{Payload: bad(good3, func(b []byte) []byte { b[7]++; return b })}, nil, 255, DropChecksum},
		{"truncated", baseInstance(100), Datagram{Payload: good3[:9]}, nil, 255, DropTooShort},
		{"oversized", baseInstance(100), Datagram{Payload: append(append([]byte(nil), good3...), make([]byte, 40)...)}, nil, 255, DropTooLong},
		{"version byte", baseInstance(100), Datagram{Payload: bad(good3, func(b []byte) []byte { b[0] = 0x41; return b })}, nil, 255, DropVersion},
		{"type", baseInstance(100), Datagram{Payload: bad(good3, func(b []byte) []byte { b[0] = 0x32; return b })}, nil, 255, DropType},
		{"v2 to a v3 instance", baseInstance(100), Datagram{}, v2pkt(nil), 255, DropVersion},
		{"vrid", baseInstance(100), Datagram{}, func() *vrrp.Packet { p := advert(200, 10); p.VRID = 34; return p }(), 255, DropVRID},
		{"password", v2, Datagram{}, v2pkt(func(p *vrrp.Packet) { p.SetPassword("1234") }), 255, DropAuth},
		{"no auth", v2, Datagram{}, v2pkt(func(p *vrrp.Packet) { p.AuthType, p.AuthData = vrrp.AuthNone, [8]byte{} }), 255, DropAuth},
		{"v2 interval", v2, Datagram{}, v2pkt(func(p *vrrp.Packet) { p.Interval = 2 }), 255, DropInterval},
		{"unknown unicast peer", uni, Datagram{}, advert(200, 10), 255, DropUnknownPeer},
		{"no address (RFC 5798 §5.2.5)", baseInstance(100), Datagram{}, func() *vrrp.Packet { p := advert(200, 10); p.Addresses = nil; return p }(), 255, DropAddresses},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := start(t, &lan{}, "192.0.2.11", tt.in)
				d := tt.d
				d.Src, d.Dst, d.TTL = peer, vrrp.GroupIPv4, tt.ttl
				if tt.p != nil {
					b, err := tt.p.Encode(peer, vrrp.GroupIPv4)
					if err != nil {
						t.Fatal(err)
					}
					d.Payload = b
				}
				// Keep feeding it faster than the master down interval: a
				// dropped packet must not hold the router in Backup.
				for range 10 {
					n.tr.deliver(d)
					time.Sleep(tt.in.AdvertInterval)
				}
				synctest.Wait()
				c := n.r.Counters()
				if c.Drops[tt.reason] != 10 || len(c.Drops) != 1 || c.AdvertsReceived != 0 {
					t.Fatalf("counters %+v, want 10 drops for %q", c, tt.reason)
				}
				wantState(t, n, StateMaster)
			})
		})
	}
}

// TestV2AuthNoneIgnoresData: without authentication, version 2's
// Authentication Data is ignored (RFC 3768 §5.3.6.1), as keepalived
// ignores it: a better master sending bytes there is obeyed.
func TestV2AuthNoneIgnoresData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := baseInstance(100)
		in.Version, in.AdvertInterval = 2, time.Second
		n := start(t, &lan{}, "192.0.2.11", in)
		p := &vrrp.Packet{Version: 2, Type: 1, VRID: 33, Priority: 200, AuthType: vrrp.AuthNone, Interval: 1,
			Addresses: []netip.Addr{vip.Addr()}}
		copy(p.AuthData[:], "junk")
		b, err := p.Encode(peer, vrrp.GroupIPv4)
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			n.tr.deliver(Datagram{Src: peer, Dst: vrrp.GroupIPv4, TTL: 255, Payload: b})
			time.Sleep(time.Second)
		}
		synctest.Wait()
		if c := n.r.Counters(); len(c.Drops) != 0 {
			t.Fatalf("drops %v", c.Drops)
		}
		wantState(t, n, StateBackup)
	})
}

// VRRPv2 with PASS: seconds-based skew (RFC 3768 §6.1), adverts carry the
// password and whole seconds.
func TestVersion2Timers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := baseInstance(100)
		in.Version, in.AdvertInterval, in.AuthPass = 2, time.Second, "9999"
		t0 := time.Now()
		n := start(t, &lan{}, "192.0.2.11", in)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got, want := n.transitions(t0), "INIT>BACKUP@0s BACKUP>MASTER@3.609375s"; got != want {
			t.Fatalf("transitions %q, want %q", got, want)
		}
		p := n.tr.sentPackets()[0].p
		if p.Version != 2 || p.Interval != 1 || p.Password() != "9999" || p.AuthType != vrrp.AuthSimple {
			t.Fatalf("v2 advert %+v", p)
		}
	})
}

// Unicast: one advert per peer, to the peer, from the unicast source.
func TestUnicast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		in := baseInstance(100)
		in.UnicastPeers, in.UnicastSource = []netip.Addr{addr2, peer}, addr1
		n := start(t, &lan{}, "192.0.2.11", in)
		time.Sleep(400 * time.Millisecond)
		synctest.Wait()
		sent := n.tr.sentPackets()
		if len(sent) != 2 || sent[0].dst != addr2 || sent[1].dst != peer {
			t.Fatalf("unicast adverts %+v", sent)
		}
	})
}

func TestNewRouterRejects(t *testing.T) {
	l := &lan{}
	ok := RouterOptions{Transport: l.port("192.0.2.11"), Effects: newEffects()}
	if _, err := NewRouter(baseInstance(0), ok); err == nil {
		t.Error("priority 0 accepted")
	}
	bad := baseInstance(100)
	bad.AdvertInterval = 5 * time.Millisecond
	if _, err := NewRouter(bad, ok); err == nil {
		t.Error("5ms interval accepted")
	}
	if _, err := NewRouter(baseInstance(100), RouterOptions{}); err == nil {
		t.Error("missing transport accepted")
	}
}

// VIPs left on the interface by a previous run (SIGKILL) are removed
// before the first election.
func TestStaleVIPsRemovedAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &node{tr: (&lan{}).port("192.0.2.11"), fx: newEffects(), done: make(chan struct{})}
		n.fx.AddVIPs([]netip.Prefix{vip})
		r, err := NewRouter(baseInstance(100), RouterOptions{Transport: n.tr, Effects: n.fx})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		go func() { r.Run(ctx); close(n.done) }()
		synctest.Wait()
		if r.State() != StateBackup || n.fx.holds() {
			t.Fatalf("state %v, still holds the stale VIP: %v", r.State(), n.fx.holds())
		}
		cancel()
		<-n.done
	})
}

// With a Ready channel the router stays in Initialize, sending nothing,
// until it is closed.
func TestWaitsForReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := &node{tr: (&lan{}).port("192.0.2.11"), fx: newEffects(), done: make(chan struct{})}
		ready := make(chan struct{})
		r, err := NewRouter(baseInstance(100), RouterOptions{Transport: n.tr, Effects: n.fx, Ready: ready})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		go func() { r.Run(ctx); close(n.done) }()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if r.State() != StateInitialize || len(n.tr.sentPackets()) != 0 {
			t.Fatalf("before ready: state %v, sent %d", r.State(), len(n.tr.sentPackets()))
		}
		t0 := time.Now()
		close(ready)
		time.Sleep(time.Second)
		synctest.Wait()
		if r.State() != StateMaster || r.Counters().BecameMaster != 1 {
			t.Fatalf("after ready: state %v", r.State())
		}
		if sent := n.tr.sentPackets(); sent[0].at.Sub(t0) != down100 {
			t.Fatalf("first advert %v after ready, want the master down interval %v", sent[0].at.Sub(t0), down100)
		}
		cancel()
		<-n.done
	})
}

// Preempting a master that does not confirm the release (keepalived): the
// VIPs are added after a short grace (50 ms at most) past our advert.
func TestPreemptUnconfirmed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		t0 := time.Now()
		n := start(t, &lan{}, "192.0.2.12", baseInstance(101))
		for len(n.tr.sentPackets()) == 0 {
			n.inject(t, advert(100, 10), peer, vrrp.GroupIPv4, 255)
			time.Sleep(100 * time.Millisecond)
			synctest.Wait()
		}
		sent := n.tr.sentPackets()[0]
		if n.r.State() != StateBackup || n.fx.holds() {
			t.Fatalf("VIP added with the advert, before the old master could release it")
		}
		// Lower-priority adverts don't reset the Master_Down_Timer (§6.4.2).
		if sent.at.Sub(t0) != down101 {
			t.Fatalf("advert %v after start, want the master down interval %v", sent.at.Sub(t0), down101)
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		wantState(t, n, StateMaster)
		if e := n.lastEvent(); e.At.Sub(sent.at) != 50*time.Millisecond {
			t.Fatalf("took the VIP %v after its advert, want the 50ms grace", e.At.Sub(sent.at))
		}
	})
}
