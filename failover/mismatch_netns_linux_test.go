package failover

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/internal/testkit/nstest"
)

// TestNetnsPeerMismatch runs two nodes in two namespaces with VRRP v2
// passwords that differ (a rotation done on one node only): each drops
// the other's adverts, both are MASTER, and each says so once in its log
// (not once per packet) and in its status. With the same password there
// is one master and nothing is said.
func TestNetnsPeerMismatch(t *testing.T) {
	for _, tc := range []struct {
		name         string
		passA, passB string
		mismatch     bool
	}{
		{"different passwords", "old-pass", "new-pass", true},
		{"same password", "same-pw", "same-pw", false},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			if !nstest.InNetns(t) {
				return
			}
			l := newHandoverLab(t, 2, time.Second)
			l.in.AuthPass = tc.passB
			b := l.prepareB("gitedge")
			inA := l.in
			inA.Interface, inA.AuthPass = "ua", tc.passA
			a := l.startA("A", inA, "")
			a.await(t, "applied", 10*time.Second)
			a.awaitState(t, "MASTER", 10*time.Second)
			b.send(t, "start")
			b.await(t, "applied", 10*time.Second)
			status := func(h *helper) InstanceStatus {
				t.Helper()
				h.send(t, "status")
				e := h.await(t, "status", 5*time.Second)
				if len(e.Status) != 1 {
					t.Fatalf("%s: status of %d instances, want 1", h.name, len(e.Status))
				}
				return e.Status[0]
			}
			dropLines := func(h *helper) []string {
				h.mu.Lock()
				defer h.mu.Unlock()
				var out []string
				for _, line := range h.output {
					if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "dropped") {
						out = append(out, line)
					}
				}
				return out
			}
			if !tc.mismatch {
				b.awaitState(t, "BACKUP", 10*time.Second)
				testkit.Poll(t, 15*time.Second, func() string {
					if st := status(b); st.Counters.AdvertsReceived < 4 {
						return fmt.Sprintf("B accepted %d adverts, want 4", st.Counters.AdvertsReceived)
					}
					return ""
				})
				for _, h := range []*helper{a, b} {
					st := status(h)
					if st.PeerMismatch != nil || len(dropLines(h)) > 0 {
						t.Fatalf("%s: peer mismatch %+v, log %q with the same password", h.name, st.PeerMismatch, dropLines(h))
					}
				}
				if st := status(a); st.State != StateMaster {
					t.Fatalf("A is %s, want MASTER", st.State)
				}
				return
			}
			// Each drops the other's adverts: both are master.
			b.awaitState(t, "MASTER", 10*time.Second)
			for _, h := range []*helper{a, b} {
				other := labB
				if h == b {
					other = labA
				}
				var pm *PeerMismatch
				testkit.Poll(t, 15*time.Second, func() string {
					pm = status(h).PeerMismatch
					if pm == nil || pm.Count < 4 {
						return fmt.Sprintf("%s: peer mismatch %+v, want 4 drops", h.name, pm)
					}
					return ""
				})
				if pm.Reason != DropAuth || pm.Source != other || !strings.Contains(pm.Message, "check auth.password on both nodes") ||
					pm.First.IsZero() || pm.Last.Before(pm.First) {
					t.Fatalf("%s: peer mismatch %+v, want Auth from %v", h.name, pm, other)
				}
				lines := dropLines(h)
				want := fmt.Sprintf("dropped an advertisement from %v on VRID 33: authentication mismatch (check auth.password on both nodes)", other)
				if len(lines) != 1 || !strings.Contains(lines[0], want) || !strings.Contains(lines[0], `"level":"WARN"`) {
					t.Fatalf("%s: log lines about drops %q, want one WARN %q", h.name, lines, want)
				}
			}
		})
	}
}
