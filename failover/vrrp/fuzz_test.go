package vrrp

import (
	"bytes"
	"net/netip"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder: it must never panic, and
// whatever it accepts must re-encode to exactly the same bytes.
func FuzzDecode(f *testing.F) {
	for _, name := range []string{"v2_pass_adverts.pcap", "v2_pass_2vip_adverts.pcap", "v3_fast_adverts.pcap",
		"v3_ipv6_adverts.pcap", "unicast_v2_v3_adverts.pcap"} {
		for _, fr := range vrrpFrames(f, name) {
			f.Add(fr.payload, fr.src.AsSlice(), fr.dst.AsSlice())
		}
	}
	f.Add([]byte{}, n1.AsSlice(), GroupIPv4.AsSlice())
	f.Add([]byte{0x31, 1, 1, 255, 0, 0, 0, 0}, n1.AsSlice(), GroupIPv4.AsSlice())      // count far beyond length
	f.Add([]byte{0x31, 1, 1, 0, 0xff, 0xff, 0, 0}, ll1.AsSlice(), GroupIPv6.AsSlice()) // no addresses, reserved bits set
	f.Add(bytes.Repeat([]byte{0x21}, 2000), n1.AsSlice(), GroupIPv4.AsSlice())
	f.Fuzz(func(t *testing.T, b, src, dst []byte) {
		s, _ := netip.AddrFromSlice(src)
		d, _ := netip.AddrFromSlice(dst)
		p, err := Decode(b, s, d)
		var q Packet
		uerr := q.UnmarshalBinary(b)
		if err == nil && uerr != nil {
			t.Fatalf("Decode accepted what UnmarshalBinary refused: %v", uerr)
		}
		if uerr != nil {
			return
		}
		out, err2 := q.MarshalBinary()
		if err2 != nil {
			t.Fatalf("decoded packet does not marshal: %v (%+v)", err2, q)
		}
		if !bytes.Equal(out, b) {
			t.Fatalf("round trip\n got % x\nwant % x", out, b)
		}
		if err == nil {
			if c := Checksum(out, p.Version, s, d); c != p.Checksum {
				t.Fatalf("accepted checksum %#x, recomputed %#x", p.Checksum, c)
			}
		}
	})
}
