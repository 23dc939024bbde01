package failover

import (
	"errors"
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

// TestManagerReopenRetriesFailedStart: an instance whose interface was
// made again is restarted with a new socket; when that start fails (the
// interface gone once more, a socket that cannot be opened), the
// instance is shown in FAULT with the error, and started again within a
// re-query period of the cause going away, not left stopped until the
// next Apply.
func TestManagerReopenRetriesFailedStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sys := newFakeSystem()
		n, log := loggedMaster(t, sys)
		time.Sleep(time.Second)
		if got := states(n.m)["VI_1"]; got != StateMaster {
			t.Fatalf("alone on the lan: %v, want MASTER", got)
		}
		sys.mu.Lock()
		sys.openErr["eth0"] = errors.New(`interface "eth0": no such device`)
		sys.mu.Unlock()
		opens := sys.openCount("VI_1")
		sys.watcher().Recreated("eth0")
		time.Sleep(3 * requeryPeriod)
		synctest.Wait()
		st := n.m.Status()
		if len(st) != 1 || st[0].State != StateFault || !strings.Contains(st[0].Error, "no such device") || st[0].ErrorSince.IsZero() {
			t.Fatalf("status while its start fails: %+v, want VI_1 in FAULT with the error", st)
		}
		if l := log.String(); strings.Count(l, "retrying every second") != 1 {
			t.Fatalf("the failure is to be logged once, not at each retry:\n%s", l)
		}
		sys.mu.Lock()
		delete(sys.openErr, "eth0")
		sys.mu.Unlock()
		time.Sleep(requeryPeriod + time.Second)
		synctest.Wait()
		st = n.m.Status()
		if len(st) != 1 || st[0].State != StateMaster || st[0].Error != "" {
			t.Fatalf("status a re-query period after the interface came back: %+v, want VI_1 MASTER again", st)
		}
		if got := sys.openCount("VI_1"); got != opens+1 {
			t.Fatalf("opened %d times after the failure, want once", got-opens)
		}
		if l := log.String(); !strings.Contains(l, "instance started again") {
			t.Fatalf("the restart was not logged:\n%s", l)
		}
	})
}
