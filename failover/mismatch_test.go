package failover

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gitedge/gitedge/failover/vrrp"
	"github.com/gitedge/gitedge/internal/testkit"
)

// mismatchRouter runs a Router for in at 192.0.2.11 that logs to log.
// Must be called inside a synctest bubble.
func mismatchRouter(t *testing.T, in Instance, log *testkit.SyncBuffer) *node {
	t.Helper()
	n := &node{tr: (&lan{}).port("192.0.2.11"), fx: newEffects(), done: make(chan struct{})}
	r, err := NewRouter(in, RouterOptions{Transport: n.tr, Effects: n.fx, Logger: slog.New(slog.NewJSONHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	n.r = r
	ctx, cancel := context.WithCancel(t.Context())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		r.Run(ctx)
	}()
	t.Cleanup(n.stop)
	return n
}

// dropWarnings are the WARN lines about dropped adverts.
func dropWarnings(log *testkit.SyncBuffer) []string {
	var out []string
	for line := range strings.Lines(log.String()) {
		if strings.Contains(line, `"level":"WARN"`) && strings.Contains(line, "dropped") {
			out = append(out, line)
		}
	}
	return out
}

// TestRouterPeerMismatch: every drop reason that points at the sender's
// configuration is logged once (not per packet) with what to check, and
// shown in the status; another VRRP group on the link is not; a routed
// or malformed packet is logged but is no configuration mismatch.
func TestRouterPeerMismatch(t *testing.T) {
	other := netip.MustParseAddr("192.0.2.12")
	v2 := func(pass string, interval uint16) *vrrp.Packet {
		p := &vrrp.Packet{Version: 2, Type: vrrp.TypeAdvertisement, VRID: 33, Priority: 50, Interval: interval, Addresses: []netip.Addr{vip.Addr()}}
		if pass != "" {
			p.AuthType = vrrp.AuthSimple
			p.SetPassword(pass)
		}
		return p
	}
	v3 := func(vrid uint8, addr string) *vrrp.Packet {
		return &vrrp.Packet{Version: 3, Type: vrrp.TypeAdvertisement, VRID: vrid, Priority: 50, Interval: 100, Addresses: []netip.Addr{netip.MustParseAddr(addr)}}
	}
	for _, tc := range []struct {
		name     string
		version  int
		p        *vrrp.Packet
		ttl      int
		reason   string
		warn     string // in the one WARN line; "" none
		mismatch bool
	}{
		{"VRID differs, our VIP", 3, v3(34, "192.0.2.10"), 255, DropVRID, "it is for VRID 34 with our peer or virtual addresses (set the same virtualRouterID on both nodes)", true},
		{"another group on the link", 3, v3(34, "192.0.2.99"), 255, DropVRID, "", false},
		{"version differs", 3, v2("", 1), 255, DropVersion, "VRRP version 2, ours 3 (set the same version on both nodes)", true},
		{"password differs", 2, v2("other", 1), 255, DropAuth, "authentication mismatch (check auth.password on both nodes)", true},
		{"no password", 2, v2("", 1), 255, DropAuth, "authentication mismatch: auth type", true},
		{"interval differs", 2, v2("secret", 2), 255, DropInterval, "advertisement interval 2s, ours 1s (set the same advertInterval on both nodes)", true},
		{"routed", 3, v3(33, "192.0.2.10"), 64, DropTTL, "TTL 64, not 255", false},
	} {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				in := baseInstance(100)
				if tc.version == 2 {
					in.Version, in.AdvertInterval, in.AuthPass = 2, time.Second, "secret"
				}
				var log testkit.SyncBuffer
				n := mismatchRouter(t, in, &log)
				for range 3 {
					n.inject(t, tc.p, other, vrrp.GroupIPv4, tc.ttl)
					time.Sleep(time.Second)
					synctest.Wait()
				}
				if got := n.r.Counters().Drops[tc.reason]; got != 3 {
					t.Fatalf("drops %v, want 3 %s", n.r.Counters().Drops, tc.reason)
				}
				w := dropWarnings(&log)
				switch {
				case tc.warn == "" && len(w) != 0:
					t.Fatalf("warnings %q, want none", w)
				case tc.warn != "" && (len(w) != 1 || !strings.Contains(w[0], "dropped an advertisement from 192.0.2.12 on VRID 33: "+tc.warn)):
					t.Fatalf("warnings %q, want one with %q", w, tc.warn)
				}
				pm := n.r.PeerMismatch()
				if !tc.mismatch {
					if pm != nil {
						t.Fatalf("peer mismatch %+v, want none", pm)
					}
					return
				}
				if pm == nil || pm.Reason != tc.reason || pm.Source != other || pm.Count != 3 || pm.Last.Sub(pm.First) != 2*time.Second ||
					!strings.Contains(pm.Message, "dropped 3 advertisements from 192.0.2.12 on VRID 33: "+tc.warn) {
					t.Fatalf("peer mismatch %+v", pm)
				}
			})
		})
	}
}

// TestRouterPeerMismatchSummary: drops that go on are summed up at most
// every mismatchLogEvery; the status forgets the mismatch when an
// advert from that peer is accepted (the password fixed) or a minute
// after the last drop.
func TestRouterPeerMismatchSummary(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		other := netip.MustParseAddr("192.0.2.12")
		in := baseInstance(100)
		in.Version, in.AdvertInterval, in.AuthPass = 2, time.Second, "secret"
		var log testkit.SyncBuffer
		n := mismatchRouter(t, in, &log)
		send := func(pass string) {
			p := &vrrp.Packet{Version: 2, Type: vrrp.TypeAdvertisement, VRID: 33, Priority: 150, Interval: 1, AuthType: vrrp.AuthSimple, Addresses: []netip.Addr{vip.Addr()}}
			p.SetPassword(pass)
			n.inject(t, p, other, vrrp.GroupIPv4, 255)
			time.Sleep(time.Second)
			synctest.Wait()
		}
		for range 45 { // 45 s of a peer with another password
			send("other")
		}
		w := dropWarnings(&log)
		if len(w) != 2 || !strings.Contains(w[0], "dropped an advertisement from") ||
			!strings.Contains(w[1], "dropped 30 advertisements from 192.0.2.12 on VRID 33 in the last 30s: authentication mismatch") {
			t.Fatalf("warnings over 45s %q, want the first drop and one summary", w)
		}
		if pm := n.r.PeerMismatch(); pm == nil || pm.Count != 45 {
			t.Fatalf("peer mismatch %+v, want 45 drops", pm)
		}
		send("secret") // fixed: accepted, the status clears at once
		if pm := n.r.PeerMismatch(); pm != nil {
			t.Fatalf("peer mismatch %+v after an accepted advert", pm)
		}
		send("other") // broken again: a new first line
		if w := dropWarnings(&log); len(w) != 3 || !strings.Contains(w[2], "dropped an advertisement from") {
			t.Fatalf("warnings %q, want a new first line", w)
		}
		time.Sleep(mismatchHold)
		if pm := n.r.PeerMismatch(); pm != nil {
			t.Fatalf("peer mismatch %+v a minute after the last drop", pm)
		}
	})
}
