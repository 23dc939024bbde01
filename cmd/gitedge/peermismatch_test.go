package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/reconcile"
)

// TestPeerMismatchCondition: an instance dropping a peer's adverts for a
// configuration difference makes the failover condition Failed, so
// `gitedge status` exits 3 with the reason; without one, or when an apply
// error is already there, the condition is left as the loop set it.
func TestPeerMismatchCondition(t *testing.T) {
	at := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	pm := &failover.PeerMismatch{Reason: failover.DropAuth, Source: netip.MustParseAddr("192.0.2.12"), Count: 12, First: at, Last: at,
		Message: "dropped 12 advertisements from 192.0.2.12 on VRID 33: authentication mismatch (check auth.password on both nodes)"}
	for _, tc := range []struct {
		name     string
		cond     reconcile.CondStatus
		mismatch *failover.PeerMismatch
		code     int
		reason   string
	}{
		{"no mismatch", reconcile.CondReady, nil, statusOK, ""},
		{"mismatch", reconcile.CondReady, pm, statusUnhealthy, "failover Failed: instance VI_1: dropped 12 advertisements from 192.0.2.12 on VRID 33: authentication mismatch"},
		{"apply error kept", reconcile.CondStalled, pm, statusUnhealthy, "failover Stalled: bad VIP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := nodeStatus{Status: reconcile.Status{Live: &reconcile.CommitInfo{Commit: "abc"},
				Conditions: map[string]reconcile.Condition{"failover": {Status: tc.cond, Message: map[bool]string{true: "bad VIP"}[tc.cond != reconcile.CondReady]}}}}
			s.VRRP = []vrrpStatus{{InstanceStatus: failover.InstanceStatus{Name: "VI_1", State: failover.StateMaster, PeerMismatch: tc.mismatch}}}
			peerMismatchCondition(&s)
			h := judge(s)
			if h.Code != tc.code || (tc.reason != "" && (len(h.Reasons) != 1 || !strings.HasPrefix(h.Reasons[0], tc.reason))) {
				t.Fatalf("exit %d, reasons %q; want %d, %q", h.Code, h.Reasons, tc.code, tc.reason)
			}
		})
	}
}
