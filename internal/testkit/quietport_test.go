package testkit

import (
	"net/netip"
	"testing"
)

// TestQuietPortNeverTwice: ports picked one after another, none bound
// yet, are all different and below the ephemeral range. 500 random picks
// from 12000 ports repeat one almost surely (birthday odds past 99.99 %)
// when only "free a moment ago" is checked.
func TestQuietPortNeverTwice(t *testing.T) {
	seen := map[uint16]bool{}
	for range 500 {
		ap := netip.MustParseAddrPort(QuietPort(t))
		p := ap.Port()
		if p < 20000 || p >= 32000 {
			t.Fatalf("QuietPort gave %v: want a port in 20000..32000", ap)
		}
		if seen[p] {
			t.Fatalf("QuietPort gave port %d twice", p)
		}
		seen[p] = true
	}
}
