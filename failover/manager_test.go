package failover

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeSystem hands out in-memory transports on a lan, all from one
// address (one node), and records them.
type fakeSystem struct {
	lan  *lan
	addr string

	mu      sync.Mutex
	opens   map[string]int
	fx      map[string]*memEffects
	allFx   map[string][]*memEffects // every effects ever opened, by instance
	tr      map[string]*memTransport
	links   map[string]bool
	openErr map[string]error // by interface
	w       Watcher
	// onQuery, when set, runs in LinkState after the answer is read and
	// before it is returned: an event that comes while a query runs.
	onQuery func(name string)
	// host, when set, is the system of another process on the same node:
	// an instance opened here gets the effects last opened there for it
	// (one interface, one set of addresses), as an upgraded process does.
	host *fakeSystem
}

func newFakeSystem() *fakeSystem { return newFakeSystemOn(&lan{}, "192.0.2.11") }

// newFakeSystemOn makes a node at addr on l; its effects report VIPs added
// while another router on l holds them (lan.dualHolds).
func newFakeSystemOn(l *lan, addr string) *fakeSystem {
	return &fakeSystem{lan: l, addr: addr, opens: map[string]int{}, fx: map[string]*memEffects{}, allFx: map[string][]*memEffects{}, tr: map[string]*memTransport{},
		links: map[string]bool{"eth0": true, "eth1": true}, openErr: map[string]error{}}
}

func (s *fakeSystem) Open(in Instance) (Transport, Effects, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.openErr[in.Interface]; err != nil {
		return nil, nil, err
	}
	s.opens[in.Name]++
	var fx *memEffects
	if s.host != nil {
		fx = s.host.effects(in.Name)
	}
	if fx == nil {
		fx = s.lan.effects()
	}
	tr := s.lan.port(s.addr)
	s.fx[in.Name], s.tr[in.Name] = fx, tr
	s.allFx[in.Name] = append(s.allFx[in.Name], fx)
	return tr, fx, nil
}

// successor is a system for a new process on the same node as s: same
// address, same lan, same interfaces.
func (s *fakeSystem) successor() *fakeSystem {
	n := newFakeSystemOn(s.lan, s.addr)
	n.host = s
	return n
}

func (s *fakeSystem) LinkState(name string) (LinkState, error) {
	s.mu.Lock()
	up, ok := s.links[name]
	hook := s.onQuery
	s.mu.Unlock()
	if hook != nil {
		hook(name)
	}
	if !ok {
		return LinkState{}, errors.New("Link not found")
	}
	return LinkState{Up: up}, nil
}

// setLink sets an interface's state, as LinkState answers it from now on.
func (s *fakeSystem) setLink(name string, up bool) {
	s.mu.Lock()
	s.links[name] = up
	s.mu.Unlock()
}

// link changes an interface's state and sends the event.
func (s *fakeSystem) link(name string, up bool) {
	s.setLink(name, up)
	s.watcher().Link(name, up)
}

func (s *fakeSystem) watcher() Watcher {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w
}

func (s *fakeSystem) Watch(ctx context.Context, w Watcher) error {
	s.mu.Lock()
	s.w = w
	s.mu.Unlock()
	<-ctx.Done()
	return nil
}

func (s *fakeSystem) effects(name string) *memEffects {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fx[name]
}

func (s *fakeSystem) transport(name string) *memTransport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tr[name]
}

func (s *fakeSystem) openCount(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens[name]
}

func TestManagerApplyTrackAndClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := newFakeSystem()
		reg := prometheus.NewRegistry()
		var mu sync.Mutex
		var events []string
		m, err := NewManager(Options{System: sys, Registerer: reg, TrackProxy: true, OnTransition: func(e Event) {
			mu.Lock()
			events = append(events, e.Instance+":"+e.To.String())
			mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		a := baseInstance(100)
		a.TrackInterfaces = []string{"eth1"}
		b := baseInstance(100)
		b.Name, b.VRID, b.VIPs, b.TrackProxy = "VI_2", 34, []netip.Prefix{netip.MustParsePrefix("192.0.2.20/24")}, true
		cfg := Config{Instances: []Instance{a, b}}
		if err := m.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if s := states(m); s["VI_1"] != StateMaster || s["VI_2"] != StateMaster {
			t.Fatalf("states %v", s)
		}
		if st := m.Status(); len(st) != 2 || st[0].Name != "VI_1" || st[0].State != StateMaster || st[0].Master != addr1 || st[1].VIPs[0] != "192.0.2.20/24" {
			t.Fatalf("status %+v", st)
		}
		// Same config: nothing restarts.
		if err := m.Apply(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
		if sys.openCount("VI_1") != 1 || sys.openCount("VI_2") != 1 {
			t.Fatalf("re-applying the same config reopened instances: %v", sys.opens)
		}
		// An invalid config changes nothing.
		bad := Config{Instances: []Instance{a, a}}
		if err := m.Apply(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "used twice") {
			t.Fatalf("duplicate instance accepted: %v", err)
		}
		// Tracked interface down: only VI_1 faults. Proxy unhealthy: VI_2.
		sys.link("eth1", false)
		m.SetProxyHealthy(false)
		synctest.Wait()
		if s := states(m); s["VI_1"] != StateFault || s["VI_2"] != StateFault {
			t.Fatalf("states after tracking failures %v", s)
		}
		sys.link("eth1", true)
		m.SetProxyHealthy(true)
		time.Sleep(time.Second)
		synctest.Wait()
		if s := states(m); s["VI_1"] != StateMaster || s["VI_2"] != StateMaster {
			t.Fatalf("states after healing %v", s)
		}
		// A VIP removed by hand is put back.
		fx1 := sys.effects("VI_1")
		fx1.RemoveVIPs(a.VIPs)
		sys.w.AddrRemoved(2, a.VIPs[0].Addr())
		synctest.Wait()
		if !fx1.holds() {
			t.Fatal("VIP not restored after removal")
		}
		// Change VI_1's priority, drop VI_2: VI_2 stops cleanly, VI_1
		// takes the change in place and stays master.
		fx2 := sys.effects("VI_2")
		a.Priority = 120
		if err := m.Apply(context.Background(), Config{Instances: []Instance{a}}); err != nil {
			t.Fatal(err)
		}
		if fx2.holds() || !fx1.holds() || sys.openCount("VI_1") != 1 {
			t.Fatalf("after change: VI_2 holds %v, VI_1 holds %v, VI_1 opened %d times", fx2.holds(), fx1.holds(), sys.openCount("VI_1"))
		}
		if s := states(m); len(s) != 1 || s["VI_1"] != StateMaster {
			t.Fatalf("states %v", s)
		}
		if st := m.Status(); st[0].Priority != 120 {
			t.Fatalf("status after the change %+v", st)
		}
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var sawState bool
		for _, mf := range mfs {
			if mf.GetName() == MetricState {
				sawState = true
				for _, mt := range mf.Metric {
					if mt.Label[0].GetValue() == "VI_2" {
						t.Fatal("removed instance still has a state series")
					}
				}
			}
		}
		if !sawState {
			t.Fatal("no state metric registered")
		}
		m.Close()
		if sys.effects("VI_1").holds() {
			t.Fatal("VIPs left after Close")
		}
		if err := m.Apply(context.Background(), cfg); err == nil {
			t.Fatal("Apply after Close accepted")
		}
		mu.Lock()
		defer mu.Unlock()
		if len(events) < 8 {
			t.Fatalf("events %v", events)
		}
	})
}

// states is every running instance's state by name, from Status.
func states(m *Manager) map[string]State {
	out := map[string]State{}
	for _, s := range m.Status() {
		out[s.Name] = s.State
	}
	return out
}

// TestStatusJSON: the status of an instance reads in lowerCamel JSON, its
// state as keepalived names it, and reads back.
func TestStatusJSON(t *testing.T) {
	st := InstanceStatus{Name: "VI_1", State: StateMaster, Priority: 100, VIPs: []string{"192.0.2.20/24"},
		Counters: Counters{AdvertsSent: 3, Drops: map[string]uint64{DropAuth: 1}}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"VI_1","state":"MASTER","priority":100,"vips":["192.0.2.20/24"],"counters":{"advertsSent":3,"advertsReceived":0,"transitions":0,"becameMaster":0,"announcements":0,"addressMismatch":0,"drops":{"Auth":1}}}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
	var back InstanceStatus
	if err := json.Unmarshal(b, &back); err != nil || back.State != StateMaster {
		t.Errorf("read back: %v %+v", err, back)
	}
	if err := json.Unmarshal([]byte(`{"state":"LEADER"}`), &back); err == nil {
		t.Error("an unknown state reads")
	}
}

// counters is every running instance's counters by name, from Status.
func counters(m *Manager) map[string]Counters {
	out := map[string]Counters{}
	for _, s := range m.Status() {
		out[s.Name] = s.Counters
	}
	return out
}

// TestManagerProxyNotStartedIsNoFault: at a node's first start the proxy
// tracker reports "unhealthy" until the proxy applies its first config
// (no listener yet). That is a proxy not started, not a failed one: the
// instance waits in Initialize for Ready and then starts, with no
// INIT > FAULT > INIT (a false critical notification). A proxy failing
// afterwards is a FAULT.
func TestManagerProxyNotStartedIsNoFault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ready := make(chan struct{})
		var mu sync.Mutex
		var events []string
		m, err := NewManager(Options{System: newFakeSystem(), TrackProxy: true, Ready: ready, OnTransition: func(e Event) {
			mu.Lock()
			events = append(events, e.From.String()+">"+e.To.String())
			mu.Unlock()
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		log := func() string {
			mu.Lock()
			defer mu.Unlock()
			return strings.Join(events, ", ")
		}
		in := baseInstance(100)
		in.TrackProxy = true
		m.SetProxyHealthy(false) // the tracker's ticks before the first config
		if err := m.Apply(context.Background(), Config{Instances: []Instance{in}}); err != nil {
			t.Fatal(err)
		}
		m.SetProxyHealthy(false)
		time.Sleep(time.Second)
		synctest.Wait()
		if got := log(); got != "" {
			t.Fatalf("transitions before the proxy is ready: %s", got)
		}
		close(ready) // the first config applied: listening
		synctest.Wait()
		m.SetProxyHealthy(true)
		time.Sleep(time.Second)
		synctest.Wait()
		if got, want := log(), "INIT>BACKUP, BACKUP>MASTER"; got != want {
			t.Fatalf("transitions at the first start %q, want %q", got, want)
		}
		m.SetProxyHealthy(false) // a real failure
		synctest.Wait()
		if got, want := log(), "INIT>BACKUP, BACKUP>MASTER, MASTER>FAULT"; got != want {
			t.Fatalf("transitions after the proxy failed %q, want %q", got, want)
		}
	})
}

// TestManagerSeedYieldsToNewerEvent: a link event that reaches an
// instance while its tracked interface's state is being queried (at
// start, or when an in-place change tracks it) is at least as new as the
// answer, which must not overwrite it. The answer read before a link-up
// event used to be handed over after it and hold the instance in FAULT
// for good. The re-query is off: it would repair this a second later.
func TestManagerSeedYieldsToNewerEvent(t *testing.T) {
	cases := []struct {
		name      string
		answer    bool // eth1 when the query reads it
		inPlace   bool // eth1 tracked by an in-place change, not at start
		wantState State
	}{
		{"start, answer down, event up", false, false, StateMaster},
		{"start, answer up, event down", true, false, StateFault},
		{"in place, answer down, event up", false, true, StateMaster},
		{"in place, answer up, event down", true, true, StateFault},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t0 := time.Now()
				sys := newFakeSystem()
				sys.setLink("eth1", c.answer)
				n := newMnode(t, sys, Options{requeryEvery: -1})
				fired := false
				sys.onQuery = func(name string) {
					if name == "eth1" && !fired {
						fired = true
						sys.setLink("eth1", !c.answer)
						managerWatcher{n.m}.Link("eth1", !c.answer)
					}
				}
				a := baseInstance(100)
				if !c.inPlace {
					a.TrackInterfaces = []string{"eth1"}
				}
				n.apply(t, a)
				if c.inPlace {
					time.Sleep(time.Second)
					a.TrackInterfaces = []string{"eth1"}
					n.apply(t, a)
				}
				time.Sleep(2 * time.Second)
				synctest.Wait()
				if !fired {
					t.Fatal("eth1 was never queried")
				}
				if got := states(n.m)["VI_1"]; got != c.wantState {
					t.Fatalf("state %v, want %v (transitions %s)", got, c.wantState, n.since(t0))
				}
			})
		})
	}
}
