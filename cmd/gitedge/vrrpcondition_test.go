package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/reconcile"
)

// TestVRRPCondition: an instance dropping a peer's adverts for a
// configuration difference, or one that does not run (its restart
// failed, retried meanwhile), makes the failover condition Failed, so
// `gitedge status` exits 3 with the reason, the instance that does not
// run first; without either, or when an apply error is already there, the
// condition is left as the loop set it.
func TestVRRPCondition(t *testing.T) {
	at := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	pm := &failover.PeerMismatch{Reason: failover.DropAuth, Source: netip.MustParseAddr("192.0.2.12"), Count: 12, First: at, Last: at,
		Message: "dropped 12 advertisements from 192.0.2.12 on VRID 33: authentication mismatch (check auth.password on both nodes)"}
	down := `not running: its restart after its interface was made again failed (retried every second): instance "VI_2": interface "vr0": no such device`
	for _, tc := range []struct {
		name     string
		cond     reconcile.CondStatus
		mismatch *failover.PeerMismatch
		down     string // the second instance's Error
		code     int
		reason   string
	}{
		{"no mismatch", reconcile.CondReady, nil, "", statusOK, ""},
		{"mismatch", reconcile.CondReady, pm, "", statusUnhealthy, "failover Failed: instance VI_1: dropped 12 advertisements from 192.0.2.12 on VRID 33: authentication mismatch"},
		{"apply error kept", reconcile.CondStalled, pm, "", statusUnhealthy, "failover Stalled: bad VIP"},
		{"not running", reconcile.CondReady, nil, down, statusUnhealthy, "failover Failed: instance VI_2: not running: its restart"},
		{"not running before a mismatch", reconcile.CondReady, pm, down, statusUnhealthy, "failover Failed: instance VI_2: not running: its restart"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := nodeStatus{Status: reconcile.Status{Live: &reconcile.CommitInfo{Commit: "abc"},
				Conditions: map[string]reconcile.Condition{"failover": {Status: tc.cond, Message: map[bool]string{true: "bad VIP"}[tc.cond != reconcile.CondReady]}}}}
			s.VRRP = []vrrpStatus{{InstanceStatus: failover.InstanceStatus{Name: "VI_1", State: failover.StateMaster, PeerMismatch: tc.mismatch}}}
			if tc.down != "" {
				s.VRRP = append(s.VRRP, vrrpStatus{InstanceStatus: failover.InstanceStatus{Name: "VI_2", State: failover.StateFault, Error: tc.down, ErrorSince: at}})
			}
			vrrpCondition(&s)
			h := judge(s)
			if h.Code != tc.code || (tc.reason != "" && (len(h.Reasons) != 1 || !strings.HasPrefix(h.Reasons[0], tc.reason))) {
				t.Fatalf("exit %d, reasons %q; want %d, %q", h.Code, h.Reasons, tc.code, tc.reason)
			}
		})
	}
}
