package failover

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gitedge/gitedge/failover/vrrp"
	"github.com/gitedge/gitedge/internal/testkit"
)

// mnode is a node whose instance VI_1 runs under a Manager on a
// fakeSystem, so changes reach it through Apply as in production.
type mnode struct {
	m   *Manager
	sys *fakeSystem
	recorder
}

// managed starts a Manager at addr on l and applies ins. Must be called
// inside a synctest bubble; the Manager is closed at the end of the test.
func managed(t *testing.T, l *lan, addr string, ins ...Instance) *mnode {
	t.Helper()
	n := newMnode(t, newFakeSystemOn(l, addr), Options{TrackProxy: true})
	n.apply(t, ins...)
	return n
}

// newMnode starts a Manager with o on sys, its transitions recorded; it
// is closed at the end of the test.
func newMnode(t *testing.T, sys *fakeSystem, o Options) *mnode {
	t.Helper()
	n := &mnode{sys: sys}
	o.System, o.OnTransition = sys, n.record
	m, err := NewManager(o)
	if err != nil {
		t.Fatal(err)
	}
	n.m = m
	t.Cleanup(func() { m.Close() })
	return n
}

// loggedMaster starts a Manager on sys running VI_1 at priority 100 (the
// only router on its LAN: master within its first second), its log in
// the buffer returned.
func loggedMaster(t *testing.T, sys *fakeSystem) (*mnode, *testkit.SyncBuffer) {
	t.Helper()
	log := &testkit.SyncBuffer{}
	n := newMnode(t, sys, Options{Logger: slog.New(slog.NewTextHandler(log, nil))})
	n.apply(t, baseInstance(100))
	return n, log
}

func (n *mnode) apply(t *testing.T, ins ...Instance) {
	t.Helper()
	if err := n.m.Apply(context.Background(), Config{Instances: ins}); err != nil {
		t.Fatal(err)
	}
}

func (n *recorder) reasons(t0 time.Time) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, e := range n.events {
		if !e.At.Before(t0) {
			out = append(out, e.Reason)
		}
	}
	return out
}

func (n *mnode) tr() *memTransport { return n.sys.transport("VI_1") }
func (n *mnode) fx() *memEffects   { return n.sys.effects("VI_1") }

func (n *mnode) want(t *testing.T, s State) {
	t.Helper()
	if got := states(n.m)["VI_1"]; got != s {
		t.Fatalf("managed node: state %v, want %v (transitions %s)", got, s, n.since(time.Time{}))
	}
	if n.fx().holds() != (s == StateMaster) {
		t.Fatalf("managed node: in %v but holds %v", s, n.fx().held())
	}
}

// inPlace checks that the managed instance was neither reopened nor sent
// through Initialize since t0.
func (n *mnode) inPlace(t *testing.T, t0 time.Time) {
	t.Helper()
	if c := n.sys.openCount("VI_1"); c != 1 {
		t.Errorf("instance opened %d times: restarted", c)
	}
	if log := n.since(t0); strings.Contains(log, "INIT") {
		t.Errorf("went through INIT after the change: %s (reasons %q)", log, n.reasons(t0))
	}
}

// adverts renders the packets sent since t0 as "offset packet" lines.
func adverts(tr *memTransport, t0 time.Time) []string {
	var out []string
	for _, s := range tr.sentSince(t0) {
		out = append(out, s.at.Sub(t0).String()+" "+s.String())
	}
	return out
}

func wantAdverts(t *testing.T, tr *memTransport, t0 time.Time, want ...string) {
	t.Helper()
	got := adverts(tr, t0)
	if len(got) > len(want) {
		got = got[:len(want)]
	}
	if !slices.Equal(got, want) {
		t.Fatalf("adverts since the change:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

const (
	// Master_Down_Timer of a backup at priority 100 that accepted an advert
	// at 960.546875ms (the 101 master's, see TestElection), fired at
	// 1321.484375ms: 321.484375ms after a change at 1s.
	downAfter1s = 321484375 * time.Nanosecond
)

// pair starts the managed node at 192.0.2.11 with a and a peer at
// 192.0.2.12 with peer, and lets them elect for a second.
func pair(t *testing.T, a, peer Instance) (*lan, *mnode, *node) {
	t.Helper()
	l := &lan{}
	m := managed(t, l, "192.0.2.11", a)
	p := start(t, l, "192.0.2.12", peer)
	time.Sleep(time.Second)
	synctest.Wait()
	return l, m, p
}

// change applies a and lets d pass; it returns when a was applied.
func (n *mnode) change(t *testing.T, a Instance, d time.Duration) time.Time {
	t.Helper()
	t1 := time.Now()
	n.apply(t, a)
	time.Sleep(d)
	synctest.Wait()
	return t1
}

// wantQuiet fails if any of the nodes made a transition since t0.
func wantQuiet(t *testing.T, t0 time.Time, nodes ...interface{ since(time.Time) string }) {
	t.Helper()
	var got string
	for _, n := range nodes {
		got += n.since(t0)
	}
	if got != "" {
		t.Fatalf("transitions after the change: %s", got)
	}
}

// wantNoDualHolds fails if a VIP was added while another node held it.
func (l *lan) wantNoDualHolds(t *testing.T) {
	t.Helper()
	if d := l.dualHolds(); d != 0 {
		t.Fatalf("VIP added %d times while the other node held it", d)
	}
}

// A new priority goes out with the next advertisement, and the election
// follows it by the RFC's rules (RFC 5798 §6.4.2, §6.4.3), never through
// Initialize.
func TestInPlacePriority(t *testing.T) {
	nopreempt := func(prio uint8) Instance {
		in := baseInstance(prio)
		in.Preempt = false
		return in
	}
	tests := []struct {
		name          string
		a, peer       Instance // the managed node and its peer at start
		to            uint8    // the managed node's new priority
		wait          time.Duration
		before, after State    // the managed node's, before and after the change
		adverts       []string // its first adverts after the change
		mWant, pWant  string   // transitions after the change
	}{{
		name: "master raised", a: baseInstance(101), peer: baseInstance(100), to: 150, wait: time.Second,
		before: StateMaster, after: StateMaster,
		// The advert already scheduled (every 100ms from 360.546875ms)
		// carries the new priority; nothing is sent at the change.
		adverts: []string{
			"60.546875ms v3 prio=150 int=10 addrs=[192.0.2.10] to=224.0.0.18",
			"160.546875ms v3 prio=150 int=10 addrs=[192.0.2.10] to=224.0.0.18"},
	}, {
		name: "master lowered below a preempting backup", a: baseInstance(101), peer: baseInstance(100), to: 90, wait: 2 * time.Second,
		before: StateMaster, after: StateBackup,
		// The backup hears 90 < 100 at 60.5ms and lets its
		// Master_Down_Timer run out (§6.4.2, Preempt_Mode true); the
		// master steps down on its advert, with one last advert.
		adverts: []string{
			"60.546875ms v3 prio=90 int=10 addrs=[192.0.2.10] to=224.0.0.18",
			"160.546875ms v3 prio=90 int=10 addrs=[192.0.2.10] to=224.0.0.18",
			"260.546875ms v3 prio=90 int=10 addrs=[192.0.2.10] to=224.0.0.18",
			"321.484375ms v3 prio=90 int=10 addrs=[192.0.2.10] to=224.0.0.18"},
		mWant: "MASTER>BACKUP@" + downAfter1s.String(), pWant: "BACKUP>MASTER@" + downAfter1s.String(),
	}, {
		name: "master lowered, backup without preempt", a: baseInstance(101), peer: nopreempt(100), to: 90, wait: 3 * time.Second,
		before: StateMaster, after: StateMaster,
		adverts: []string{"60.546875ms v3 prio=90 int=10 addrs=[192.0.2.10] to=224.0.0.18"},
	}, {
		name: "backup raised above the master", a: baseInstance(100), peer: baseInstance(101), to: 150, wait: 2 * time.Second,
		before: StateBackup, after: StateMaster,
		// The master's next advert (101 < 150) no longer resets the
		// Master_Down_Timer; it runs out and we preempt.
		adverts: []string{"321.484375ms v3 prio=150 int=10 addrs=[192.0.2.10] to=224.0.0.18"},
		mWant:   "BACKUP>MASTER@" + downAfter1s.String(), pWant: "MASTER>BACKUP@" + downAfter1s.String(),
	}, {
		name: "backup raised, no preempt", a: nopreempt(100), peer: baseInstance(101), to: 150, wait: 3 * time.Second,
		before: StateBackup, after: StateBackup,
	}, {
		// The owner preempts all the same (§6.1).
		name: "backup made the address owner", a: nopreempt(100), peer: baseInstance(101), to: 255, wait: time.Second,
		before: StateBackup, after: StateMaster,
		// Our advert at once; the master releases the VIP on it, and we
		// take it after the 50ms grace (its confirmation is dropped: the
		// owner discards every advert, §7.1).
		adverts: []string{
			"0s v3 prio=255 int=10 addrs=[192.0.2.10] to=224.0.0.18",
			"50ms v3 prio=255 int=10 addrs=[192.0.2.10] to=224.0.0.18",
			"150ms v3 prio=255 int=10 addrs=[192.0.2.10] to=224.0.0.18"},
		mWant: "BACKUP>MASTER@50ms", pWant: "MASTER>BACKUP@0s",
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := tt.a
				l, m, p := pair(t, a, tt.peer)
				m.want(t, tt.before)
				a.Priority = tt.to
				t1 := m.change(t, a, tt.wait)
				wantAdverts(t, m.tr(), t1, tt.adverts...)
				if got := m.since(t1); got != tt.mWant {
					t.Fatalf("managed node transitions %q, want %q", got, tt.mWant)
				}
				if got := p.since(t1); got != tt.pWant {
					t.Fatalf("peer transitions %q, want %q", got, tt.pWant)
				}
				m.inPlace(t, t1)
				m.want(t, tt.after)
				if tt.after == StateMaster {
					wantState(t, p, StateBackup)
				} else {
					wantState(t, p, StateMaster)
				}
				l.wantNoDualHolds(t)
				if st := m.m.Status(); st[0].Priority != tt.to {
					t.Fatalf("status priority %d", st[0].Priority)
				}
			})
		})
	}
}

// preempt and preemptDelay change on a backup under a lower-priority
// master.
func TestInPlacePreempt(t *testing.T) {
	tests := []struct {
		name   string
		before func(*Instance) // at start
		after  func(*Instance) // the change, 1s later
		want   string          // managed node's transitions after the change
	}{
		{"turned on", func(in *Instance) { in.Preempt = false }, func(in *Instance) { in.Preempt = true },
			"BACKUP>MASTER@" + downAfter1s.String()},
		{"delay shortened", func(in *Instance) { in.PreemptDelay = 10 * time.Second }, func(in *Instance) { in.PreemptDelay = time.Second },
			// The delay ran from the first lower advert (60.9375ms after
			// start), so it is over at the next advert after the change.
			"BACKUP>MASTER@" + downAfter1s.String()},
		{"turned off while the delay runs", func(in *Instance) { in.PreemptDelay = 10 * time.Second }, func(in *Instance) { in.Preempt = false },
			""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				l := &lan{}
				p := start(t, l, "192.0.2.12", baseInstance(100))
				time.Sleep(time.Second)
				synctest.Wait()
				a := baseInstance(101)
				tt.before(&a)
				m := managed(t, l, "192.0.2.11", a)
				time.Sleep(time.Second)
				synctest.Wait()
				m.want(t, StateBackup)
				tt.after(&a)
				t1 := m.change(t, a, 15*time.Second)
				if got := m.since(t1); got != tt.want {
					t.Fatalf("transitions %q, want %q", got, tt.want)
				}
				m.inPlace(t, t1)
				if tt.want == "" {
					wantState(t, p, StateMaster)
				} else {
					wantState(t, p, StateBackup)
				}
			})
		})
	}
}

var (
	vip2 = netip.MustParsePrefix("192.0.2.20/24")
	vip3 = netip.MustParsePrefix("192.0.2.30/24")
)

// VIPs added and removed on the holder, announced when added, without a
// mastership change; a backup's new VIPs are what it takes over later.
func TestInPlaceVIPs(t *testing.T) {
	t.Run("master", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := baseInstance(101)
			l, m, p := pair(t, a, baseInstance(100))
			t0 := time.Now()
			a.VIPs = []netip.Prefix{vip, vip2}
			m.apply(t, a)
			if got := m.fx().held(); !slices.Equal(got, []netip.Prefix{vip, vip2}) {
				t.Fatalf("holds %v after adding %v", got, vip2)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			// Only the new VIP announced, at once, with the configured repeat.
			if got := m.fx().burstLog(t0); !slices.Equal(got, []string{"5×[192.0.2.20/24]@0s"}) {
				t.Fatalf("announcements %q", got)
			}
			wantAdverts(t, m.tr(), t0, "60.546875ms v3 prio=101 int=10 addrs=[192.0.2.10 192.0.2.20] to=224.0.0.18")

			t1 := time.Now()
			a.VIPs = []netip.Prefix{vip2, vip3}
			m.apply(t, a)
			if got := m.fx().held(); !slices.Equal(got, []netip.Prefix{vip2, vip3}) {
				t.Fatalf("holds %v after replacing %v by %v", got, vip, vip3)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			wantAdverts(t, m.tr(), t1, "60.546875ms v3 prio=101 int=10 addrs=[192.0.2.20 192.0.2.30] to=224.0.0.18")
			if got := m.fx().burstLog(t1); !slices.Equal(got, []string{"5×[192.0.2.30/24]@0s"}) {
				t.Fatalf("announcements %q", got)
			}
			m.inPlace(t, t0)
			wantQuiet(t, t0, m, p)
			if st := m.m.Status(); !slices.Equal(st[0].VIPs, []string{"192.0.2.20/24", "192.0.2.30/24"}) {
				t.Fatalf("status VIPs %v", st[0].VIPs)
			}
			l.wantNoDualHolds(t)
		})
	})
	t.Run("backup", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := baseInstance(100)
			_, m, p := pair(t, a, baseInstance(101))
			a.VIPs = []netip.Prefix{vip2}
			t0 := m.change(t, a, time.Second)
			m.want(t, StateBackup)
			if len(m.fx().burstLog(t0)) != 0 || len(m.tr().sentSince(t0)) != 0 {
				t.Fatalf("a backup announced or advertised on a VIP change")
			}
			// The master stops: we take over with the new list.
			t1 := time.Now()
			p.stop()
			time.Sleep(time.Second)
			synctest.Wait()
			m.want(t, StateMaster)
			if got := m.fx().held(); !slices.Equal(got, []netip.Prefix{vip2}) {
				t.Fatalf("holds %v", got)
			}
			wantAdverts(t, m.tr(), t1, skew100.String()+" v3 prio=100 int=10 addrs=[192.0.2.20] to=224.0.0.18")
			m.inPlace(t, t0)
		})
	})
}

// A new advertisement interval goes out with the next advert and sets the
// spacing after it; a v3 backup learns it and times the master out by it
// (RFC 5798 §6.4.2).
func TestInPlaceAdvertInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := baseInstance(101)
		l, m, p := pair(t, a, baseInstance(100))
		a.AdvertInterval = 200 * time.Millisecond
		t1 := m.change(t, a, time.Second)
		wantAdverts(t, m.tr(), t1,
			"60.546875ms v3 prio=101 int=20 addrs=[192.0.2.10] to=224.0.0.18",
			"260.546875ms v3 prio=101 int=20 addrs=[192.0.2.10] to=224.0.0.18",
			"460.546875ms v3 prio=101 int=20 addrs=[192.0.2.10] to=224.0.0.18")
		// Cut the link: the last advert the backup hears is at 860.546875ms;
		// it waits 3×200ms + (156×200ms/256) = 721.875ms from there.
		l.setCut(true)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got, want := p.since(t1), "BACKUP>MASTER@1.582421875s"; got != want {
			t.Fatalf("backup transitions %q, want %q", got, want)
		}
		m.inPlace(t, t1)
		m.want(t, StateMaster)
	})
}

// Auth and unicast peers are read from the new configuration at the next
// packet.
func TestInPlaceAuthAndUnicastPeers(t *testing.T) {
	t.Run("auth", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			v2 := func(prio uint8) Instance {
				in := baseInstance(prio)
				in.Version, in.AdvertInterval, in.AuthPass = 2, time.Second, "old"
				return in
			}
			l := &lan{}
			a := v2(101)
			m := managed(t, l, "192.0.2.11", a)
			p := start(t, l, "192.0.2.12", v2(100))
			time.Sleep(5 * time.Second)
			synctest.Wait()
			m.want(t, StateMaster)
			a.AuthPass = "new"
			t1 := m.change(t, a, time.Second)
			wantAdverts(t, m.tr(), t1, "605.46875ms v2 prio=101 int=1 addrs=[192.0.2.10] to=224.0.0.18 pass=new")
			if d := p.r.Counters().Drops[DropAuth]; d != 1 {
				t.Fatalf("the peer with the old password dropped %d adverts, want 1", d)
			}
			m.inPlace(t, t1)
		})
	})
	t.Run("unicast peers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := &lan{}
			a := baseInstance(101)
			a.UnicastPeers, a.UnicastSource = []netip.Addr{addr2}, addr1
			m := managed(t, l, "192.0.2.11", a)
			time.Sleep(time.Second)
			synctest.Wait()
			a.UnicastPeers = []netip.Addr{addr2, peer}
			t1 := m.change(t, a, 100*time.Millisecond)
			wantAdverts(t, m.tr(), t1,
				"60.546875ms v3 prio=101 int=10 addrs=[192.0.2.10] to=192.0.2.12",
				"60.546875ms v3 prio=101 int=10 addrs=[192.0.2.10] to=192.0.2.13")
			m.inPlace(t, t1)
		})
	})
}

// Tracking changes in place: a newly tracked condition that fails puts
// the instance in Fault, an untracked one no longer holds it there.
func TestInPlaceTracking(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{}
		a := baseInstance(100)
		m := managed(t, l, "192.0.2.11", a)
		m.sys.setLink("eth2", false)
		time.Sleep(time.Second)
		synctest.Wait()
		m.want(t, StateMaster)
		steps := []struct {
			name   string
			change func()
			want   string
		}{
			{"track a down interface", func() { a.TrackInterfaces = []string{"eth2"}; m.apply(t, a) }, "MASTER>FAULT@0s"},
			{"untrack it", func() { a.TrackInterfaces = nil; m.apply(t, a) }, "FAULT>INIT@0s INIT>BACKUP@0s BACKUP>MASTER@360.9375ms"},
			{"track an up interface", func() { a.TrackInterfaces = []string{"eth1"}; m.apply(t, a) }, ""},
			{"it goes down", func() { m.sys.link("eth1", false) }, "MASTER>FAULT@0s"},
			{"untrack it", func() { a.TrackInterfaces = nil; m.apply(t, a) }, "FAULT>INIT@0s INIT>BACKUP@0s BACKUP>MASTER@360.9375ms"},
			{"proxy unhealthy, not tracked", func() { m.m.SetProxyHealthy(false) }, ""},
			{"track the proxy", func() { a.TrackProxy = true; m.apply(t, a) }, "MASTER>FAULT@0s"},
			{"untrack the proxy", func() { a.TrackProxy = false; m.apply(t, a) }, "FAULT>INIT@0s INIT>BACKUP@0s BACKUP>MASTER@360.9375ms"},
		}
		for _, s := range steps {
			t0 := time.Now()
			s.change()
			time.Sleep(time.Second)
			synctest.Wait()
			if got := m.since(t0); got != s.want {
				t.Fatalf("%s: transitions %q, want %q", s.name, got, s.want)
			}
			for _, r := range m.reasons(t0) {
				if r == "stopped" {
					t.Fatalf("%s: the instance was stopped", s.name)
				}
			}
		}
		if c := m.sys.openCount("VI_1"); c != 1 {
			t.Fatalf("opened %d times", c)
		}
	})
}

// GARP refresh changes at once on a master; repeat and delay apply at the
// next takeover.
func TestInPlaceGARP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{}
		a := baseInstance(100)
		m := managed(t, l, "192.0.2.11", a)
		time.Sleep(10 * time.Second)
		synctest.Wait()
		a.GARP.Refresh = 20 * time.Second
		a.GARP.Repeat = 2
		t1 := m.change(t, a, 45*time.Second)
		if got := m.fx().burstLog(t1); !slices.Equal(got, []string{"1×[192.0.2.10/24]@20s", "1×[192.0.2.10/24]@40s"}) {
			t.Fatalf("announcements after the change %q", got)
		}
		a.GARP.Refresh = 0
		t2 := m.change(t, a, 2*time.Minute)
		if got := m.fx().burstLog(t2); len(got) != 0 {
			t.Fatalf("refresh turned off, still announced %q", got)
		}
		// A VIP added now is announced with the new repeat.
		a.VIPs = append(a.VIPs, vip2)
		t3 := time.Now()
		m.apply(t, a)
		synctest.Wait()
		if got := m.fx().burstLog(t3); !slices.Equal(got, []string{"2×[192.0.2.20/24]@0s"}) {
			t.Fatalf("announcements of the new VIP %q", got)
		}
		m.inPlace(t, t1)
	})
}

// Apply restarts an instance only for a change that needs a new socket,
// and takes every other change in place. The table covers every field of
// Instance (checked below), so a new field needs a case.
func TestApplyRestartsOnlyWhatNeedsIt(t *testing.T) {
	v2 := func(in *Instance) { in.Version, in.AdvertInterval, in.AuthPass = 2, time.Second, "pw" }
	uni := func(in *Instance) { in.UnicastPeers, in.UnicastSource = []netip.Addr{addr2}, addr1 }
	tests := []struct {
		name    string
		base    func(*Instance) // optional
		change  func(*Instance)
		restart bool
	}{
		{"interface", nil, func(in *Instance) { in.Interface = "eth1" }, true},
		{"vrid", nil, func(in *Instance) { in.VRID = 34 }, true},
		{"version", nil, v2, true},
		{"interval", nil, func(in *Instance) { in.AdvertInterval = time.Second }, false},
		{"priority", nil, func(in *Instance) { in.Priority = 200 }, false},
		{"preempt", nil, func(in *Instance) { in.Preempt = false }, false},
		{"preempt delay", nil, func(in *Instance) { in.PreemptDelay = time.Second }, false},
		{"auth", v2, func(in *Instance) { in.AuthPass = "other" }, false},
		{"multicast to unicast", nil, uni, true},
		{"unicast to multicast", uni, func(in *Instance) { in.UnicastPeers, in.UnicastSource = nil, netip.Addr{} }, true},
		{"unicast peers", uni, func(in *Instance) { in.UnicastPeers = append(in.UnicastPeers, peer) }, false},
		{"unicast source", uni, func(in *Instance) { in.UnicastSource = peer }, true},
		{"unicast source unused", nil, func(in *Instance) { in.UnicastSource = peer }, false},
		{"vips", nil, func(in *Instance) { in.VIPs = append(in.VIPs, vip2) }, false},
		{"vips to IPv6", nil, func(in *Instance) { in.VIPs = []netip.Prefix{netip.MustParsePrefix("2001:db8::10/64")} }, true},
		{"track proxy", nil, func(in *Instance) { in.TrackProxy = true }, false},
		{"track interfaces", nil, func(in *Instance) { in.TrackInterfaces = []string{"eth1"} }, false},
		{"garp", nil, func(in *Instance) { in.GARP.Repeat = 1 }, false},
	}
	covered := map[string]bool{"Name": true} // a new name is a new instance
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				a := baseInstance(100)
				if tt.base != nil {
					tt.base(&a)
				}
				b := a
				b.VIPs = slices.Clone(a.VIPs)
				b.UnicastPeers = slices.Clone(a.UnicastPeers)
				tt.change(&b)
				for _, f := range changedFields(a, b) {
					covered[f] = true
				}
				m := managed(t, &lan{}, "192.0.2.11", a)
				time.Sleep(5 * time.Second)
				synctest.Wait()
				t1 := m.change(t, b, 5*time.Second)
				stopped := slices.Contains(m.reasons(t1), "stopped")
				if c := m.sys.openCount("VI_1"); stopped != tt.restart || (c == 2) != tt.restart {
					t.Fatalf("restart %v (opened %d times, transitions %s), want %v", stopped, c, m.since(t1), tt.restart)
				}
				if !tt.restart && m.since(t1) != "" {
					t.Fatalf("transitions after an in-place change: %s", m.since(t1))
				}
				m.want(t, StateMaster)
				if st := m.m.Status(); st[0].Priority != b.Priority || len(st[0].VIPs) != len(b.VIPs) {
					t.Fatalf("status %+v after the change", st[0])
				}
			})
		})
	}
	for f := range changeRules {
		if !covered[f] {
			t.Errorf("no case changes %s", f)
		}
	}
}

// The wire contents helper: a sanity check of what the tests compare.
func TestSentPacketString(t *testing.T) {
	p := &vrrp.Packet{Version: 2, Type: vrrp.TypeAdvertisement, VRID: 33, Priority: 7, Interval: 1, AuthType: vrrp.AuthSimple, Addresses: []netip.Addr{vip.Addr()}}
	p.SetPassword("pw")
	if got, want := (sentPacket{p: p, dst: vrrp.GroupIPv4}).String(), "v2 prio=7 int=1 addrs=[192.0.2.10] to=224.0.0.18 pass=pw"; got != want {
		t.Fatalf("%q, want %q", got, want)
	}
}
