package failover

import (
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/gitedge/gitedge/failover/vrrp"
)

// The socket filter passes the instance's VRID and nothing else, with and
// without an IPv4 header (of any length) in front.
func TestVRIDFilter(t *testing.T) {
	msg, err := advert(100, 10).Encode(netip.MustParseAddr("192.0.2.11"), vrrp.GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	ip := func(ihl int) []byte {
		h := make([]byte, ihl*4)
		h[0] = 0x40 | byte(ihl)
		return append(h, msg...)
	}
	tests := []struct {
		name string
		pkt  []byte
		v4   bool
		vrid uint8
		pass bool
	}{
		{"v4 match", ip(5), true, 33, true},
		{"v4 options match", ip(6), true, 33, true},
		{"v4 other vrid", ip(5), true, 34, false},
		{"v6 match", msg, false, 33, true},
		{"v6 other vrid", msg, false, 1, false},
	}
	for _, tt := range tests {
		vm, err := bpf.NewVM(vridProgram(tt.vrid, tt.v4))
		if err != nil {
			t.Fatal(err)
		}
		n, err := vm.Run(tt.pkt)
		if err != nil || (n > 0) != tt.pass {
			t.Errorf("%s: filter returned %d, %v", tt.name, n, err)
		}
	}
}
