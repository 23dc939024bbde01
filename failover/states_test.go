package failover

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

// dumpManager renders the whole state a Manager left on a fakeSystem, one
// sorted line per fact: each instance ever opened (state, priority, times
// opened, every VIP held by any of its effects, its last advert) and the
// transitions since t0.
func dumpManager(m *Manager, sys *fakeSystem, events []Event, t0 time.Time) string {
	var lines []string
	status := map[string]InstanceStatus{}
	for _, st := range m.Status() {
		status[st.Name] = st
	}
	sys.mu.Lock()
	names := slices.Sorted(maps.Keys(sys.opens))
	sys.mu.Unlock()
	for _, name := range names {
		sys.mu.Lock()
		var held []netip.Prefix
		for _, fx := range sys.allFx[name] {
			held = append(held, fx.held()...)
		}
		tr := sys.tr[name]
		opens := sys.opens[name]
		sys.mu.Unlock()
		last := "none"
		if s := tr.sentPackets(); len(s) > 0 {
			last = s[len(s)-1].String()
		}
		state := "stopped"
		if st, ok := status[name]; ok {
			state = fmt.Sprintf("%s prio=%d vips=%v", st.State, st.Priority, st.VIPs)
		}
		lines = append(lines, fmt.Sprintf("%s %s opens=%d holds=%v last advert: %s", name, state, opens, held, last))
	}
	byName := map[string][]string{}
	for _, e := range events {
		if !e.At.Before(t0) {
			byName[e.Instance] = append(byName[e.Instance], fmt.Sprintf("%s>%s (%s)", e.From, e.To, e.Reason))
		}
	}
	for name, evs := range byName {
		lines = append(lines, name+" events: "+strings.Join(evs, ", "))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// A sequence of configs through one Manager, each step compared with a
// dump of the whole resulting state: in-place changes keep the instance
// (no INIT, opened once), changes that need a new socket restart it,
// removed instances leave nothing behind (tailscale's TestRouterStates).
func TestManagerStates(t *testing.T) {
	in := func(name string, vrid, prio uint8, mod func(*Instance), vips ...string) Instance {
		i := baseInstance(prio)
		i.Name, i.VRID, i.VIPs = name, vrid, nil
		for _, v := range vips {
			i.VIPs = append(i.VIPs, netip.MustParsePrefix(v))
		}
		if mod != nil {
			mod(&i)
		}
		return i
	}
	steps := []struct {
		name string
		cfg  []Instance
		want string
	}{
		{
			name: "two instances start",
			cfg: []Instance{
				in("VI_1", 33, 100, nil, "192.0.2.10/24"),
				in("VI_2", 34, 100, nil, "192.0.2.20/24"),
			},
			want: `
VI_1 MASTER prio=100 vips=[192.0.2.10/24] opens=1 holds=[192.0.2.10/24] last advert: v3 prio=100 int=10 addrs=[192.0.2.10] to=224.0.0.18
VI_1 events: INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)
VI_2 MASTER prio=100 vips=[192.0.2.20/24] opens=1 holds=[192.0.2.20/24] last advert: v3 prio=100 int=10 addrs=[192.0.2.20] to=224.0.0.18
VI_2 events: INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)`,
		},
		{
			name: "priority, a VIP and an interval change in place",
			cfg: []Instance{
				in("VI_1", 33, 120, nil, "192.0.2.10/24", "192.0.2.11/24"),
				in("VI_2", 34, 100, func(i *Instance) { i.AdvertInterval = 200 * time.Millisecond }, "192.0.2.20/24"),
			},
			want: `
VI_1 MASTER prio=120 vips=[192.0.2.10/24 192.0.2.11/24] opens=1 holds=[192.0.2.10/24 192.0.2.11/24] last advert: v3 prio=120 int=10 addrs=[192.0.2.10 192.0.2.11] to=224.0.0.18
VI_2 MASTER prio=100 vips=[192.0.2.20/24] opens=1 holds=[192.0.2.20/24] last advert: v3 prio=100 int=20 addrs=[192.0.2.20] to=224.0.0.18`,
		},
		{
			name: "a VIP removed, an instance removed, one added",
			cfg: []Instance{
				in("VI_1", 33, 120, nil, "192.0.2.11/24"),
				in("VI_3", 35, 50, nil, "192.0.2.30/24"),
			},
			want: `
VI_1 MASTER prio=120 vips=[192.0.2.11/24] opens=1 holds=[192.0.2.11/24] last advert: v3 prio=120 int=10 addrs=[192.0.2.11] to=224.0.0.18
VI_2 events: MASTER>INIT (stopped)
VI_2 stopped opens=1 holds=[] last advert: v3 prio=0 int=20 addrs=[192.0.2.20] to=224.0.0.18
VI_3 MASTER prio=50 vips=[192.0.2.30/24] opens=1 holds=[192.0.2.30/24] last advert: v3 prio=50 int=10 addrs=[192.0.2.30] to=224.0.0.18
VI_3 events: INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)`,
		},
		{
			name: "the same config again changes nothing",
			cfg: []Instance{
				in("VI_1", 33, 120, nil, "192.0.2.11/24"),
				in("VI_3", 35, 50, nil, "192.0.2.30/24"),
			},
			want: `
VI_1 MASTER prio=120 vips=[192.0.2.11/24] opens=1 holds=[192.0.2.11/24] last advert: v3 prio=120 int=10 addrs=[192.0.2.11] to=224.0.0.18
VI_2 stopped opens=1 holds=[] last advert: v3 prio=0 int=20 addrs=[192.0.2.20] to=224.0.0.18
VI_3 MASTER prio=50 vips=[192.0.2.30/24] opens=1 holds=[192.0.2.30/24] last advert: v3 prio=50 int=10 addrs=[192.0.2.30] to=224.0.0.18`,
		},
		{
			name: "a new VRID restarts; tracking changes in place",
			cfg: []Instance{
				in("VI_1", 36, 120, nil, "192.0.2.11/24"),
				in("VI_3", 35, 50, func(i *Instance) { i.TrackInterfaces = []string{"eth1"} }, "192.0.2.30/24"),
			},
			want: `
VI_1 MASTER prio=120 vips=[192.0.2.11/24] opens=2 holds=[192.0.2.11/24] last advert: v3 prio=120 int=10 addrs=[192.0.2.11] to=224.0.0.18
VI_1 events: MASTER>INIT (stopped), INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)
VI_2 stopped opens=1 holds=[] last advert: v3 prio=0 int=20 addrs=[192.0.2.20] to=224.0.0.18
VI_3 MASTER prio=50 vips=[192.0.2.30/24] opens=1 holds=[192.0.2.30/24] last advert: v3 prio=50 int=10 addrs=[192.0.2.30] to=224.0.0.18`,
		},
		{
			name: "a new interface restarts; the owner priority changes in place",
			cfg: []Instance{
				in("VI_1", 36, 120, func(i *Instance) { i.Interface = "eth1" }, "192.0.2.11/24"),
				in("VI_3", 35, 255, func(i *Instance) { i.TrackInterfaces = []string{"eth1"} }, "192.0.2.30/24"),
			},
			want: `
VI_1 MASTER prio=120 vips=[192.0.2.11/24] opens=3 holds=[192.0.2.11/24] last advert: v3 prio=120 int=10 addrs=[192.0.2.11] to=224.0.0.18
VI_1 events: MASTER>INIT (stopped), INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)
VI_2 stopped opens=1 holds=[] last advert: v3 prio=0 int=20 addrs=[192.0.2.20] to=224.0.0.18
VI_3 MASTER prio=255 vips=[192.0.2.30/24] opens=1 holds=[192.0.2.30/24] last advert: v3 prio=255 int=10 addrs=[192.0.2.30] to=224.0.0.18`,
		},
		{
			name: "nothing configured: everything stops",
			want: `
VI_1 events: MASTER>INIT (stopped)
VI_1 stopped opens=3 holds=[] last advert: v3 prio=0 int=10 addrs=[192.0.2.11] to=224.0.0.18
VI_2 stopped opens=1 holds=[] last advert: v3 prio=0 int=20 addrs=[192.0.2.20] to=224.0.0.18
VI_3 events: MASTER>INIT (stopped)
VI_3 stopped opens=1 holds=[] last advert: v3 prio=0 int=10 addrs=[192.0.2.30] to=224.0.0.18`,
		},
	}
	synctest.Test(t, func(t *testing.T) {
		sys := newFakeSystem()
		var rec recorder
		m, err := NewManager(Options{System: sys, OnTransition: rec.record})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		for _, s := range steps {
			t0 := time.Now()
			if err := m.Apply(context.Background(), Config{Instances: s.cfg}); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			time.Sleep(2 * time.Second)
			synctest.Wait()
			rec.mu.Lock()
			got := dumpManager(m, sys, rec.events, t0)
			rec.mu.Unlock()
			if want := strings.TrimSpace(s.want); got != want {
				t.Fatalf("%s:\n got:\n%s\nwant:\n%s", s.name, got, want)
			}
		}
	})
}
