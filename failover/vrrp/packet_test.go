package vrrp

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	n1   = netip.MustParseAddr("192.0.2.11")
	n2   = netip.MustParseAddr("192.0.2.12")
	vip4 = netip.MustParseAddr("192.0.2.10")
	vip6 = netip.MustParseAddr("2001:db8::10")
	ll1  = netip.MustParseAddr("fe80::ff:fe00:11")
)

func v2pass(prio uint8, addrs ...netip.Addr) *Packet {
	p := &Packet{Version: 2, Type: TypeAdvertisement, VRID: 33, Priority: prio,
		AuthType: AuthSimple, Interval: 1, Addresses: addrs}
	p.SetPassword("9999")
	return p
}

// TestEncodeMatchesKeepalived builds packets from their fields (not from a
// decode) and compares them byte for byte with what keepalived 2.2.7 sent.
func TestEncodeMatchesKeepalived(t *testing.T) {
	tests := []struct {
		name     string
		p        *Packet
		src, dst netip.Addr
		want     string
	}{
		{"v2 pass n1", v2pass(100, vip4), n1, GroupIPv4, "21 21 64 01 01 01 45 5f c0 00 02 0a 39 39 39 39 00 00 00 00"},
		{"v2 pass n2", v2pass(101, vip4), n2, GroupIPv4, "21 21 65 01 01 01 44 5f c0 00 02 0a 39 39 39 39 00 00 00 00"},
		{"v2 pass stop", v2pass(0, vip4), n2, GroupIPv4, "21 21 00 01 01 01 a9 5f c0 00 02 0a 39 39 39 39 00 00 00 00"},
		{"v2 pass 2 vips", v2pass(100, vip4, netip.MustParseAddr("192.0.2.20")), n1, GroupIPv4,
			"21 21 64 02 01 01 83 49 c0 00 02 0a c0 00 02 14 39 39 39 39 00 00 00 00"},
		{"v3 ipv4 1s", &Packet{Version: 3, Type: 1, VRID: 33, Priority: 100, Interval: 100, Addresses: []netip.Addr{vip4}},
			n1, GroupIPv4, "31 21 64 01 00 64 05 d4 c0 00 02 0a"},
		{"v3 ipv4 stop", &Packet{Version: 3, Type: 1, VRID: 33, Priority: 0, Interval: 100, Addresses: []netip.Addr{vip4}},
			n2, GroupIPv4, "31 21 00 01 00 64 69 d3 c0 00 02 0a"},
		{"v3 ipv4 100ms", &Packet{Version: 3, Type: 1, VRID: 33, Priority: 100, Interval: 10, Addresses: []netip.Addr{vip4}},
			n1, GroupIPv4, "31 21 64 01 00 0a 06 2e c0 00 02 0a"},
		{"v3 ipv6", &Packet{Version: 3, Type: 1, VRID: 33, Priority: 100, Interval: 100, Addresses: []netip.Addr{vip6}},
			ll1, GroupIPv6, "31 21 64 01 00 64 3f 81 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10"},
		// unicast_v2_v3_adverts.pcap: the v3 pseudo-header uses the peer's address.
		{"v3 unicast", &Packet{Version: 3, Type: 1, VRID: 35, Priority: 100, Interval: 100, Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.35")}},
			n1, n2, "31 23 64 01 00 64 23 bf c0 00 02 23"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Encode(tt.src, tt.dst)
			if err != nil {
				t.Fatal(err)
			}
			if want := mustHex(t, tt.want); !bytes.Equal(got, want) {
				t.Fatalf("encoded\n got % x\nwant % x", got, want)
			}
			back, err := Decode(got, tt.src, tt.dst)
			if err != nil {
				t.Fatalf("decode own encoding: %v", err)
			}
			if back.Priority != tt.p.Priority || back.Interval != tt.p.Interval || back.Password() != tt.p.Password() {
				t.Fatalf("round trip changed fields: %+v", back)
			}
		})
	}
}

// TestDecodeCaptures decodes every VRRP packet keepalived sent in the
// captures, re-encodes it byte for byte, and checks the fields the
// captures' decodes state.
func TestDecodeCaptures(t *testing.T) {
	files := []string{"v2_pass_adverts.pcap", "v2_pass_2vip_adverts.pcap", "v2_pass_sequence.pcap",
		"v3_ipv4_adverts.pcap", "v3_fast_adverts.pcap", "v3_ipv6_adverts.pcap", "v3_dual_sequence.pcap",
		"unicast_v2_v3_adverts.pcap"}
	total := 0
	for _, name := range files {
		for i, f := range vrrpFrames(t, name) {
			total++
			if f.ttl != TTL {
				t.Errorf("%s #%d: TTL %d", name, i, f.ttl)
			}
			p, err := Decode(f.payload, f.src, f.dst)
			if err != nil {
				t.Errorf("%s #%d: %v", name, i, err)
				continue
			}
			if p.VRID < 33 || p.VRID > 35 {
				t.Errorf("%s #%d: VRID %d", name, i, p.VRID)
			}
			if p.Version == 2 && (p.AuthType != AuthSimple || p.Password() != "9999" || p.AdvertInterval() != time.Second) {
				t.Errorf("%s #%d: v2 auth/interval %v %q %v", name, i, p.AuthType, p.Password(), p.AdvertInterval())
			}
			// Re-encode from the decoded fields: same bytes, same checksum.
			q := *p
			got, err := q.Encode(f.src, f.dst)
			if err != nil || !bytes.Equal(got, f.payload) {
				t.Errorf("%s #%d: re-encode\n got % x (%v)\nwant % x", name, i, got, err, f.payload)
			}
			// v3 is checksummed with the pseudo-header, v2 without it.
			wrongVer := uint8(5 - p.Version)
			if Checksum(f.payload, wrongVer, f.src, f.dst) == p.Checksum {
				t.Errorf("%s #%d: checksum also valid as version %d", name, i, wrongVer)
			}
		}
	}
	if total < 40 {
		t.Fatalf("only %d VRRP frames in the captures", total)
	}
}

func TestDecodeErrors(t *testing.T) {
	good := mustHex(t, "21 21 65 01 01 01 44 5f c0 00 02 0a 39 39 39 39 00 00 00 00")
	good3 := mustHex(t, "31 21 64 01 00 64 05 d4 c0 00 02 0a")
	mod := func(b []byte, f func([]byte) []byte) []byte { return f(bytes.Clone(b)) }
	tests := []struct {
		name string
		b    []byte
		src  netip.Addr
		dst  netip.Addr
		want error
	}{
		{"empty", nil, n2, GroupIPv4, ErrTooShort},
		{"header only", good[:7], n2, GroupIPv4, ErrTooShort},
		{"truncated auth", good[:19], n2, GroupIPv4, ErrTooShort},
		{"oversized", append(bytes.Clone(good), 0), n2, GroupIPv4, ErrTooLong},
		{"version 1", mod(good, func(b []byte) []byte { b[0] = 0x11; return b }), n2, GroupIPv4, ErrVersion},
		{"version 4", mod(good, func(b []byte) []byte { b[0] = 0x41; return b }), n2, GroupIPv4, ErrVersion},
		{"type 2", mod(good, func(b []byte) []byte { b[0] = 0x22; return b }), n2, GroupIPv4, ErrType},
		{"count too high", mod(good, func(b []byte) []byte { b[3] = 2; return b }), n2, GroupIPv4, ErrTooShort},
		{"count too low", mod(good, func(b []byte) []byte { b[3] = 0; return b }), n2, GroupIPv4, ErrTooLong},
		{"bad checksum", mod(good, func(b []byte) []byte { b[7] ^= 1; return b }), n2, GroupIPv4, ErrChecksum},
		{"password changed", mod(good, func(b []byte) []byte { b[12] = '8'; return b }), n2, GroupIPv4, ErrChecksum},
		{"v3 wrong source", good3, n2, GroupIPv4, ErrChecksum},
		{"v3 wrong destination", good3, n1, n2, ErrChecksum},
		{"v3 family mismatch", good3, ll1, GroupIPv6, ErrAddresses},
		{"v3 odd length", append(bytes.Clone(good3), 1, 2), n1, GroupIPv4, ErrAddresses},
		{"v3 truncated", good3[:10], n1, GroupIPv4, ErrTooShort},
		{"v3 oversized", append(bytes.Clone(good3), make([]byte, 20)...), n1, GroupIPv4, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.b, tt.src, tt.dst)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestMarshalRejects(t *testing.T) {
	tests := []struct {
		name string
		p    Packet
		want error
	}{
		{"version", Packet{Version: 4, Type: 1}, ErrVersion},
		{"v2 interval", Packet{Version: 2, Type: 1, Interval: 256}, ErrField},
		{"v3 interval", Packet{Version: 3, Type: 1, Interval: 4096}, ErrField},
		{"v3 auth", Packet{Version: 3, Type: 1, AuthType: AuthSimple}, ErrField},
		{"v2 ipv6", Packet{Version: 2, Type: 1, Addresses: []netip.Addr{vip6}}, ErrAddresses},
		{"mixed", Packet{Version: 3, Type: 1, Addresses: []netip.Addr{vip4, vip6}}, ErrAddresses},
		{"zero addr", Packet{Version: 3, Type: 1, Addresses: []netip.Addr{{}}}, ErrAddresses},
		{"too many", Packet{Version: 3, Type: 1, Addresses: make([]netip.Addr, 256)}, ErrAddresses},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.p.MarshalBinary(); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestPasswordTruncatedToEight(t *testing.T) {
	var p Packet
	p.SetPassword("123456789")
	if p.Password() != "12345678" {
		t.Fatalf("got %q", p.Password())
	}
}

// TestAnnouncementsMatchKeepalived compares the GARP and unsolicited NA
// frames with keepalived's byte for byte.
func TestAnnouncementsMatchKeepalived(t *testing.T) {
	for _, name := range []string{"v2_garp.pcap", "v3_garp.pcap"} {
		frames := readPcap(t, name)
		n := 0
		for _, f := range frames {
			if f.etherType != EtherTypeARP {
				continue
			}
			n++
			mac := net.HardwareAddr(f.raw[6:12])
			ip := netip.AddrFrom4([4]byte(f.raw[28:32]))
			got, err := GratuitousARP(mac, ip)
			if err != nil || !bytes.Equal(got, f.raw) {
				t.Fatalf("%s: GARP\n got % x (%v)\nwant % x", name, got, err, f.raw)
			}
		}
		if n == 0 {
			t.Fatalf("%s: no ARP frames", name)
		}
	}
	n := 0
	for _, f := range readPcap(t, "v3_ipv6_unsolicited_na.pcap") {
		if f.etherType != EtherTypeIPv6 || f.proto != 58 || f.payload[0] != 136 {
			continue
		}
		n++
		got, err := UnsolicitedNA(net.HardwareAddr(f.raw[6:12]), f.src, false)
		if err != nil || !bytes.Equal(got, f.raw) {
			t.Fatalf("NA\n got % x (%v)\nwant % x", got, err, f.raw)
		}
	}
	if n == 0 {
		t.Fatal("no neighbour advertisements in the capture")
	}
	if _, err := GratuitousARP(net.HardwareAddr{1, 2, 3}, vip4); err == nil {
		t.Fatal("short MAC accepted")
	}
	if _, err := UnsolicitedNA(net.HardwareAddr{1, 2, 3, 4, 5, 6}, vip4, false); err == nil {
		t.Fatal("IPv4 target accepted for NA")
	}
}
