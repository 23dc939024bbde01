package failover

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gitedge/gitedge/internal/testkit"
)

// cmpAddrs compares netip values by value.
var cmpAddrs = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
}

// upgraded starts the Manager of a new process on the node of old (same
// address, same interface) with the snapshot old handed over, as cmd does
// after SIGUSR2: through its JSON. ready is its Options.Ready (nil: none).
func upgraded(t *testing.T, old *mnode, s Snapshot, ready <-chan struct{}, log *testkit.SyncBuffer) *mnode {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseSnapshot(b)
	if err != nil {
		t.Fatalf("parsing the snapshot just written: %v\n%s", err, b)
	}
	o := Options{TrackProxy: true, Ready: ready, Inherit: &parsed}
	if log != nil {
		o.Logger = slog.New(slog.NewTextHandler(log, nil))
	}
	return newMnode(t, old.sys.successor(), o)
}

// reasoned renders events since t0 as "FROM>TO (reason)".
func (n *recorder) reasoned(t0 time.Time) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, e := range n.events {
		if !e.At.Before(t0) {
			out = append(out, fmt.Sprintf("%s>%s (%s)", e.From, e.To, e.Reason))
		}
	}
	return out
}

// wireGaps merges what the transports sent since t0 in time order and
// returns the longest gap between two adverts and every priority 0 one.
func wireGaps(t0 time.Time, trs ...*memTransport) (maxGap time.Duration, prio0 []string) {
	var all []sentPacket
	for _, tr := range trs {
		all = append(all, tr.sentSince(t0)...)
	}
	slices.SortStableFunc(all, func(a, b sentPacket) int { return a.at.Compare(b.at) })
	for i, s := range all {
		if s.p.Priority == 0 {
			prio0 = append(prio0, fmt.Sprintf("%v %s", s.at.Sub(t0), s))
		}
		if i > 0 {
			maxGap = max(maxGap, s.at.Sub(all[i-1].at))
		}
	}
	return maxGap, prio0
}

// The whole upgrade on one lan, for v3 at 100 ms and v2 at 1 s: A master
// and B backup; A hands over to A' (a new process on A's node, sharing its
// interface). A' resumes MASTER at once (no INIT>BACKUP, first advert the
// moment Apply returns, no GARP), both advertise until A releases without
// a priority 0 and leaves the VIPs; on the wire the adverts never pause
// longer than one interval, B never leaves BACKUP, each process discards
// the other's adverts as its own.
func TestHandoverOverlap(t *testing.T) {
	tests := []struct {
		name     string
		version  int
		interval time.Duration
	}{
		{"v3 100ms", 3, 100 * time.Millisecond},
		{"v2 1s", 2, time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				iv := tc.interval
				inst := func(prio uint8) Instance {
					in := baseInstance(prio)
					in.Version, in.AdvertInterval = tc.version, iv
					return in
				}
				l := &lan{}
				a := managed(t, l, "192.0.2.11", inst(100))
				time.Sleep(5 * iv)
				b := managed(t, l, "192.0.2.12", inst(50))
				time.Sleep(5 * iv)
				synctest.Wait()
				a.want(t, StateMaster)
				if got := states(b.m)["VI_1"]; got != StateBackup {
					t.Fatalf("B %v before the upgrade", got)
				}
				lastA := a.tr().sentPackets()
				// Off A's beat, so the two processes' adverts interleave.
				time.Sleep(iv * 35 / 100)
				t0 := time.Now()

				snap, err := a.m.Handover()
				if err != nil {
					t.Fatal(err)
				}
				want := Snapshot{TakenAt: t0, PID: snap.PID, Instances: []InstanceSnapshot{{
					Name: "VI_1", Interface: "eth0", VRID: 33, Version: tc.version, State: StateMaster, Priority: 100,
					AdvertInterval: iv, Source: addr1, VIPs: []netip.Prefix{vip}, LastAdvertSent: lastA[len(lastA)-1].at,
				}}}
				if d := cmp.Diff(want, snap, cmpAddrs); d != "" {
					t.Fatalf("snapshot (-want +got):\n%s", d)
				}

				a2 := upgraded(t, a, snap, make(chan struct{}), nil) // its proxy never ready: not waited for
				a2.apply(t, inst(100))
				// Apply returned: A' has advertised, at this very instant.
				if s := a2.tr().sentSince(t0); len(s) != 1 || !s[0].at.Equal(t0) || s[0].p.Priority != 100 {
					t.Fatalf("A' sent %v by the end of Apply, want one advert at once", adverts(a2.tr(), t0))
				}
				if got, want := a2.reasoned(t0), []string{"INIT>MASTER (" + inheritedReason + ")"}; !slices.Equal(got, want) {
					t.Fatalf("A' transitions %q, want %q", got, want)
				}
				// The overlap: both advertise for a while.
				time.Sleep(3*iv + iv/2)
				synctest.Wait()
				if err := a.m.Release(); err != nil {
					t.Fatal(err)
				}
				tRel := time.Now()
				a2.m.Confirm()
				time.Sleep(10 * iv)
				synctest.Wait()

				a2.want(t, StateMaster)
				if got := states(b.m)["VI_1"]; got != StateBackup {
					t.Fatalf("B %v after the upgrade", got)
				}
				if ev := b.reasoned(t0); len(ev) > 0 {
					t.Fatalf("B saw transitions during the upgrade: %q", ev)
				}
				gap, prio0 := wireGaps(t0.Add(-iv), a.tr(), a2.tr())
				if gap > iv {
					t.Fatalf("adverts paused %v on the wire, more than one interval (%v)", gap, iv)
				}
				if len(prio0) > 0 {
					t.Fatalf("priority 0 adverts during the upgrade: %v", prio0)
				}
				// A sent nothing after Release; A' kept its own beat from t0.
				if s := a.tr().sentSince(tRel); len(s) > 0 {
					t.Fatalf("A sent %d adverts after Release", len(s))
				}
				if n := len(a2.tr().sentSince(t0)); n != 14 { // t0 + k×interval, k = 0..13
					t.Fatalf("A' sent %d adverts, want one every interval since t0 (14)", n)
				}
				fx := a2.fx()
				if fx != a.fx() {
					t.Fatal("the rig gave A' an interface of its own")
				}
				if held := fx.held(); !slices.Equal(held, []netip.Prefix{vip}) {
					t.Fatalf("VIPs on the interface after the upgrade %v", held)
				}
				if r := fx.removals(); len(r) != 1 { // A's own start-up, long before
					t.Fatalf("VIPs removed during the upgrade: %v", r)
				}
				if got := fx.burstLog(t0); len(got) > 0 {
					t.Fatalf("gratuitous ARPs sent during the upgrade: %v", got)
				}
				// Each heard the other from its own address and let it be.
				if c := counters(a2.m)["VI_1"]; c.Drops[DropOwn] == 0 {
					t.Fatalf("A' counters %+v: A's adverts never reached it, the overlap is not tested", c)
				}
				if got := states(a.m); len(got) != 0 {
					t.Fatalf("A still runs %v after Release", got)
				}
				if err := a.m.Apply(context.Background(), Config{Instances: []Instance{inst(100)}}); err == nil || !strings.Contains(err.Error(), "after Release") {
					t.Fatalf("Apply after Release: %v", err)
				}
			})
		})
	}
}

// A backup hands over its master's view: A' resumes BACKUP at once (no
// advert of its own), and its Master_Down_Timer follows the master's
// interval as A learned it (v3, RFC 5798 §6.4.2), or its own (v2). With
// the master gone silent it takes over exactly one Master_Down_Interval
// after starting.
func TestHandoverInheritBackup(t *testing.T) {
	tests := []struct {
		name     string
		version  int
		own      time.Duration // this node's configured interval
		master   time.Duration // the master's, as the snapshot records it
		takeover time.Duration // after Apply: 3 × interval + skew (priority 100)
	}{
		{"v3 learns the master's 200ms", 3, 100 * time.Millisecond, 200 * time.Millisecond, 600*time.Millisecond + 156*200*time.Millisecond/256},
		{"v2 keeps its own 1s", 2, time.Second, time.Second, 3*time.Second + 156*time.Second/256},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := baseInstance(100)
				in.Version, in.AdvertInterval = tc.version, tc.own
				old := &mnode{sys: newFakeSystem()}
				s := Snapshot{TakenAt: time.Now(), Instances: []InstanceSnapshot{{
					Name: "VI_1", Interface: "eth0", VRID: 33, Version: tc.version, State: StateBackup, Priority: 100,
					AdvertInterval: tc.own, Source: addr1,
					Master: &MasterSeen{Address: addr2, Priority: 101, AdvertInterval: tc.master, LastSeen: time.Now()},
				}}}
				t0 := time.Now()
				n := upgraded(t, old, s, nil, nil)
				n.apply(t, in)
				synctest.Wait()
				if got := states(n.m)["VI_1"]; got != StateBackup {
					t.Fatalf("state %v after Apply, want BACKUP", got)
				}
				if st := n.m.Status(); st[0].Master != addr2 {
					t.Fatalf("master %v, want the inherited %v", st[0].Master, addr2)
				}
				if s := n.tr().sentSince(t0); len(s) > 0 {
					t.Fatalf("the inherited backup advertised: %v", adverts(n.tr(), t0))
				}
				time.Sleep(10 * time.Second)
				synctest.Wait()
				want := fmt.Sprintf("INIT>BACKUP@0s BACKUP>MASTER@%v", tc.takeover)
				if got := n.since(t0); got != want {
					t.Fatalf("transitions %q, want %q", got, want)
				}
			})
		})
	}
}

// A snapshot the config no longer matches is ignored for that instance:
// a normal start (INIT>BACKUP, then an election) and the log says why.
// The VIPs the old process holds are not removed as leftovers meanwhile.
func TestHandoverMismatchStartsNormally(t *testing.T) {
	master := func(mod func(*InstanceSnapshot)) Snapshot {
		is := InstanceSnapshot{Name: "VI_1", Interface: "eth0", VRID: 33, Version: 3, State: StateMaster, Priority: 100,
			AdvertInterval: 100 * time.Millisecond, Source: addr1, VIPs: []netip.Prefix{vip}}
		if mod != nil {
			mod(&is)
		}
		return Snapshot{Instances: []InstanceSnapshot{is}}
	}
	tests := []struct {
		name    string
		snap    Snapshot
		age     time.Duration
		cfg     func(*Instance)
		events  string // since Apply
		log     string // a line of the log says this
		removed int    // RemoveVIPs calls before Confirm
	}{
		{name: "matching: inherited", snap: master(nil),
			events: "INIT>MASTER (" + inheritedReason + ")", log: "resuming the previous process's state"},
		{name: "another source address: inherited, said", snap: master(func(s *InstanceSnapshot) { s.Source = peer }),
			events: "INIT>MASTER (" + inheritedReason + ")", log: "adverts now go out from another address than the previous process's"},
		{name: "another VRID", snap: master(nil), cfg: func(i *Instance) { i.VRID = 34 },
			events: "INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)", log: "virtualRouterID 34, was 33"},
		{name: "another interface", snap: master(nil), cfg: func(i *Instance) { i.Interface = "eth1" },
			events: "INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)", log: "interface eth1, was eth0"},
		{name: "another version", snap: master(nil), cfg: func(i *Instance) { i.Version, i.AdvertInterval = 2, time.Second },
			events: "INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)", log: "version 2, was 3"},
		{name: "another address family", snap: master(nil),
			cfg: func(i *Instance) { i.VIPs = []netip.Prefix{netip.MustParsePrefix("2001:db8::10/64")} },
			// These VIPs are not the old process's: removed as leftovers.
			events: "INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)", log: "IPv6 VIPs, were IPv4", removed: 1},
		{name: "snapshot too old", snap: master(nil), age: SnapshotMaxAge + time.Second,
			events: "INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)", log: "the snapshot is from another upgrade", removed: 1},
		{name: "invalid snapshot", snap: master(func(s *InstanceSnapshot) { s.VIPs = nil }),
			events: "INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)", log: "a master holds its VIPs; none listed", removed: 1},
		{name: "another instance's", snap: master(func(s *InstanceSnapshot) { s.Name = "VI_9" }),
			events: "INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)", log: "the previous process ran an instance this config does not have"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := baseInstance(100)
				if tc.cfg != nil {
					tc.cfg(&in)
				}
				old := &mnode{sys: newFakeSystem()}
				tc.snap.TakenAt = time.Now().Add(-tc.age)
				var log testkit.SyncBuffer
				n := upgradedRaw(t, old, tc.snap, &log)
				t0 := time.Now()
				n.apply(t, in)
				time.Sleep(5 * time.Second)
				synctest.Wait()
				if got := strings.Join(n.reasoned(t0), ", "); got != tc.events {
					t.Fatalf("transitions %q, want %q\nlog:\n%s", got, tc.events, log.String())
				}
				if !strings.Contains(log.String(), tc.log) {
					t.Fatalf("the log does not say %q:\n%s", tc.log, log.String())
				}
				if r := n.fx().removals(); len(r) != tc.removed {
					t.Fatalf("VIPs removed %v, want %d calls", r, tc.removed)
				}
			})
		})
	}
}

// upgradedRaw is upgraded without the JSON round trip, for snapshots
// ParseSnapshot would refuse.
func upgradedRaw(t *testing.T, old *mnode, s Snapshot, log *testkit.SyncBuffer) *mnode {
	t.Helper()
	return newMnode(t, old.sys.successor(), Options{Logger: slog.New(slog.NewTextHandler(log, nil)), Inherit: &s})
}

// The old process's side: Release needs a Handover first; AbortHandover
// (the new process failed) leaves everything running on its beat, with no
// transition; a second hand-over then releases without a priority 0 and
// leaves the VIPs.
func TestHandoverAbortThenRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := newFakeSystem()
		n, log := loggedMaster(t, sys)
		m := n.m
		time.Sleep(time.Second)
		synctest.Wait()
		tr, fx := sys.transport("VI_1"), sys.effects("VI_1")
		if err := m.Release(); err == nil || !strings.Contains(err.Error(), "Release without Handover") {
			t.Fatalf("Release without Handover: %v", err)
		}
		t0 := time.Now()
		if _, err := m.Handover(); err != nil {
			t.Fatal(err)
		}
		if _, err := m.Handover(); err == nil || !strings.Contains(err.Error(), "already under way") {
			t.Fatalf("a second Handover at once: %v", err)
		}
		time.Sleep(250 * time.Millisecond)
		m.AbortHandover(errors.New("the new binary exited with status 1 before it was ready"))
		time.Sleep(time.Second)
		synctest.Wait()
		if !strings.Contains(log.String(), "upgrade aborted: this process keeps running every instance") ||
			!strings.Contains(log.String(), "the new binary exited with status 1") {
			t.Fatalf("the abort is not logged with its reason:\n%s", log.String())
		}
		if s := states(m)["VI_1"]; s != StateMaster {
			t.Fatalf("state %v after the abort", s)
		}
		sent := tr.sentSince(t0)
		for i, s := range sent {
			if s.p.Priority != 100 || (i > 0 && s.at.Sub(sent[i-1].at) != 100*time.Millisecond) {
				t.Fatalf("adverts around the abort: %v", adverts(tr, t0))
			}
		}
		if c := counters(m)["VI_1"]; c.Transitions != 2 { // INIT>BACKUP>MASTER at start, no more
			t.Fatalf("%d transitions", c.Transitions)
		}

		if _, err := m.Handover(); err != nil {
			t.Fatalf("Handover after an abort: %v", err)
		}
		t1 := time.Now()
		if err := m.Release(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if s := tr.sentSince(t1); len(s) > 0 {
			t.Fatalf("sent after Release: %v", adverts(tr, t1))
		}
		if !fx.holds() || len(fx.removals()) != 1 { // the start-up one
			t.Fatalf("after Release: holds %v, removals %v", fx.held(), fx.removals())
		}
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
		if fx.holds() != true || len(tr.sentSince(t1)) > 0 {
			t.Fatal("Close after Release acted")
		}
		if _, err := m.Handover(); err == nil {
			t.Fatal("Handover after Release accepted")
		}
	})
}

// Until Confirm the new process is provisional: its proxy's health does
// not move an inherited instance (the old process's proxy serves), an
// instance it did not inherit still waits for Ready, Handover is refused,
// and Close (the new process failing before it is ready) stops without a
// priority 0 and leaves the VIPs to the old process, which carries on.
// After Confirm the next proxy report counts.
func TestHandoverProvisional(t *testing.T) {
	vi2 := func() Instance {
		in := baseInstance(100)
		in.Name, in.VRID, in.VIPs = "VI_2", 34, []netip.Prefix{netip.MustParsePrefix("192.0.2.20/24")}
		return in
	}
	vi1 := baseInstance(100)
	vi1.TrackProxy = true

	t.Run("fails before ready", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			l := &lan{}
			a := managed(t, l, "192.0.2.11", vi1)
			time.Sleep(time.Second)
			synctest.Wait()
			snap, err := a.m.Handover()
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			ready := make(chan struct{})
			a2 := upgraded(t, a, snap, ready, nil)
			a2.apply(t, vi1, vi2())
			a2.m.SetProxyHealthy(false)
			time.Sleep(time.Second)
			synctest.Wait()
			if s := states(a2.m); s["VI_1"] != StateMaster || s["VI_2"] != StateInitialize {
				t.Fatalf("provisional states %v: want VI_1 MASTER (proxy health not its call yet), VI_2 waiting for Ready", s)
			}
			if _, err := a2.m.Handover(); err == nil || !strings.Contains(err.Error(), "not confirmed") {
				t.Fatalf("Handover while provisional: %v", err)
			}
			// The new process gives up: it stops without a word.
			if err := a2.m.Close(); err != nil {
				t.Fatal(err)
			}
			_, prio0 := wireGaps(t0, a2.tr())
			if len(prio0) > 0 {
				t.Fatalf("the failed new process sent %v", prio0)
			}
			a.m.AbortHandover(errors.New("new process closed"))
			time.Sleep(time.Second)
			synctest.Wait()
			a.want(t, StateMaster)
			if r := a.fx().removals(); len(r) != 1 {
				t.Fatalf("VIPs removed: %v", r)
			}
			if ev := a.reasoned(t0); len(ev) > 0 {
				t.Fatalf("A's transitions: %q", ev)
			}
			gap, _ := wireGaps(t0, a.tr(), a2.tr())
			if gap > 100*time.Millisecond {
				t.Fatalf("a gap of %v on the wire", gap)
			}
		})
	})
	t.Run("confirmed", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			a := managed(t, &lan{}, "192.0.2.11", vi1)
			time.Sleep(time.Second)
			synctest.Wait()
			snap, err := a.m.Handover()
			if err != nil {
				t.Fatal(err)
			}
			a2 := upgraded(t, a, snap, nil, nil)
			a2.apply(t, vi1)
			a2.m.SetProxyHealthy(false)
			if err := a.m.Release(); err != nil {
				t.Fatal(err)
			}
			a2.m.Confirm()
			synctest.Wait()
			if s := states(a2.m)["VI_1"]; s != StateMaster {
				t.Fatalf("state %v at Confirm: a report from before it counted", s)
			}
			t1 := time.Now()
			a2.m.SetProxyHealthy(false)
			synctest.Wait()
			if s := states(a2.m)["VI_1"]; s != StateFault {
				t.Fatalf("state %v after an unhealthy report past Confirm, want FAULT", s)
			}
			if _, prio0 := wireGaps(t1, a2.tr()); len(prio0) != 1 {
				t.Fatalf("priority 0 adverts on FAULT: %v", prio0)
			}
			// Confirmed: Close is a clean stop again.
			a2.m.SetProxyHealthy(true)
			time.Sleep(time.Second)
			synctest.Wait()
			t2 := time.Now()
			a2.m.Close()
			if _, prio0 := wireGaps(t2, a2.tr()); len(prio0) != 1 || a2.fx().holds() {
				t.Fatalf("clean stop after Confirm: priority 0 %v, holds %v", prio0, a2.fx().held())
			}
		})
	})
}

// TestHandoverHoldsReopen: an interface recreated while handing over does
// not restart the old process's instances then: a restart stops a master
// as a shutdown does (priority 0, VIPs removed), which would take from
// the new process, on this same node, the VIPs it holds. If the upgrade
// is aborted the restart comes then, with new sockets; once released it
// is the new process's own.
func TestHandoverHoldsReopen(t *testing.T) {
	for _, abort := range []bool{true, false} {
		name := "released"
		if abort {
			name = "aborted"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				sys := newFakeSystem()
				n, log := loggedMaster(t, sys)
				m := n.m
				time.Sleep(time.Second)
				synctest.Wait()
				tr, fx := sys.transport("VI_1"), sys.effects("VI_1")
				opens := sys.openCount("VI_1")
				if _, err := m.Handover(); err != nil {
					t.Fatal(err)
				}
				t0 := time.Now()
				sys.watcher().Recreated("eth0")
				time.Sleep(time.Second)
				synctest.Wait()
				if got := sys.openCount("VI_1"); got != opens {
					t.Fatalf("reopened %d times while handing over, want none", got-opens)
				}
				for _, s := range tr.sentSince(t0) {
					if s.p.Priority != 100 {
						t.Fatalf("adverts while handing over: %v", adverts(tr, t0))
					}
				}
				if !fx.holds() || states(m)["VI_1"] != StateMaster {
					t.Fatalf("while handing over: holds %v, state %v", fx.held(), states(m)["VI_1"])
				}
				if !strings.Contains(log.String(), "interface recreated during an upgrade") {
					t.Fatalf("the held restart is not logged:\n%s", log.String())
				}
				if !abort {
					if err := m.Release(); err != nil {
						t.Fatal(err)
					}
					time.Sleep(time.Second)
					synctest.Wait()
					if got := sys.openCount("VI_1"); got != opens {
						t.Fatalf("reopened %d times after Release, want none", got-opens)
					}
					if !fx.holds() {
						t.Fatal("the VIPs were removed by the released process")
					}
					return
				}
				m.AbortHandover(errors.New("the new process failed its health check"))
				time.Sleep(time.Second)
				synctest.Wait()
				if got := sys.openCount("VI_1"); got != opens+1 {
					t.Fatalf("reopened %d times after the abort, want once", got-opens)
				}
				if l := log.String(); !strings.Contains(l, "restarting the instance with a new socket") || !strings.Contains(l, "during the upgrade") {
					t.Fatalf("the restart after the abort is not logged:\n%s", l)
				}
			})
		})
	}
}

// TestProvisionalReopenSilent: the new process, before Confirm, restarts
// an instance whose interface was made again without a priority 0 and
// without removing the VIPs, which the old process still holds on this
// node; the old process stays master.
func TestProvisionalReopenSilent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := managed(t, &lan{}, "192.0.2.11", baseInstance(100))
		time.Sleep(time.Second)
		synctest.Wait()
		snap, err := a.m.Handover()
		if err != nil {
			t.Fatal(err)
		}
		a2 := upgraded(t, a, snap, nil, nil)
		a2.apply(t, baseInstance(100))
		time.Sleep(time.Second)
		synctest.Wait()
		tr0, fx0 := a2.tr(), a2.fx()
		removed := len(fx0.removals())
		opens := a2.sys.openCount("VI_1")
		t0 := time.Now()
		a2.sys.watcher().Recreated("eth0")
		time.Sleep(time.Second)
		synctest.Wait()
		if got := a2.sys.openCount("VI_1"); got != opens+1 {
			t.Fatalf("the new process reopened %d times, want once", got-opens)
		}
		if _, prio0 := wireGaps(t0, tr0); len(prio0) > 0 {
			t.Fatalf("the provisional process sent %v as it restarted the instance", prio0)
		}
		if r := fx0.removals(); len(r) != removed {
			t.Fatalf("the provisional process removed VIPs as it restarted the instance: %v", r[removed:])
		}
		a.want(t, StateMaster)
		if !a.fx().holds() {
			t.Fatal("the old process no longer holds the VIPs")
		}
	})
}
