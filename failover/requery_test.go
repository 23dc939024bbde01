package failover

import (
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestManagerRequeryRepairsLostLinkEvents: link events lost (a full
// netlink socket buffer) leave an instance's view of its tracked
// interface wrong; the re-query puts it right within a period or two and
// says so. Each case runs without the re-query first, to show the loss
// alone leaves the state wrong.
func TestManagerRequeryRepairsLostLinkEvents(t *testing.T) {
	cases := []struct {
		name   string
		before func(sys *fakeSystem) // events delivered
		lost   func(sys *fakeSystem) // events dropped
		want   State
		wrong  State // without the re-query
		logged string
	}{
		{"down", nil, func(sys *fakeSystem) { sys.link("eth1", false) },
			StateFault, StateMaster, "instance=VI_1 interface=eth1 up=false"},
		{"up", func(sys *fakeSystem) { sys.link("eth1", false) }, func(sys *fakeSystem) { sys.link("eth1", true) },
			StateMaster, StateFault, "instance=VI_1 interface=eth1 up=true"},
		{"gone", nil, func(sys *fakeSystem) {
			sys.mu.Lock()
			delete(sys.links, "eth1")
			sys.mu.Unlock()
			sys.watcher().Link("eth1", false)
		}, StateFault, StateMaster, "instance=VI_1 interface=eth1 up=false"},
	}
	for _, c := range cases {
		for _, requery := range []bool{false, true} {
			name := c.name + "/without re-query"
			if requery {
				name = c.name + "/with re-query"
			}
			t.Run(name, func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					t0 := time.Now()
					var log testkit.SyncBuffer
					var drop atomic.Bool
					o := Options{Logger: slog.New(slog.NewTextHandler(&log, nil)), dropLinkEvents: &drop, requeryEvery: -1}
					if requery {
						o.requeryEvery = 0 // the default period
					}
					sys := newFakeSystem()
					n := newMnode(t, sys, o)
					a := baseInstance(100)
					a.TrackInterfaces = []string{"eth1"}
					n.apply(t, a)
					time.Sleep(time.Second)
					if c.before != nil {
						c.before(sys)
						time.Sleep(time.Second)
					}
					drop.Store(true)
					c.lost(sys)
					time.Sleep(2 * requeryPeriod)
					synctest.Wait()
					got := states(n.m)["VI_1"]
					if !requery {
						if got != c.wrong {
							t.Fatalf("without the re-query: state %v, want it left at %v", got, c.wrong)
						}
						return
					}
					if got != c.want {
						t.Fatalf("state %v two re-query periods after the lost event, want %v (transitions %s)", got, c.want, n.since(t0))
					}
					if l := log.String(); !strings.Contains(l, "differs from the last link event") || !strings.Contains(l, c.logged) {
						t.Fatalf("the correction was not logged with %q:\n%s", c.logged, l)
					}
				})
			})
		}
	}
}
