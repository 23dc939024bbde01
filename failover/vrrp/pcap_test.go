package vrrp

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// frame is one Ethernet frame of a capture, with the VRRP payload and the
// IP header fields a receiver looks at pulled out.
type frame struct {
	raw       []byte
	etherType uint16
	src, dst  netip.Addr
	ttl       uint8
	proto     uint8
	payload   []byte // IP payload
}

// readPcap parses a classic little-endian microsecond pcap of Ethernet
// frames (what tcpdump wrote for the keepalived captures in testdata/).
func readPcap(t testing.TB, name string) []frame {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("%s: not a little-endian Ethernet pcap", name)
	}
	var out []frame
	for off := 24; off < len(b); {
		if off+16 > len(b) {
			t.Fatalf("%s: truncated record header at %d", name, off)
		}
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		off += 16
		if off+n > len(b) {
			t.Fatalf("%s: truncated record at %d", name, off)
		}
		out = append(out, parseFrame(t, b[off:off+n]))
		off += n
	}
	return out
}

func parseFrame(t testing.TB, raw []byte) frame {
	f := frame{raw: raw, etherType: binary.BigEndian.Uint16(raw[12:])}
	ip := raw[14:]
	switch f.etherType {
	case 0x0800:
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:]))
		f.ttl, f.proto = ip[8], ip[9]
		f.src = netip.AddrFrom4([4]byte(ip[12:16]))
		f.dst = netip.AddrFrom4([4]byte(ip[16:20]))
		f.payload = ip[ihl:total]
	case 0x86dd:
		plen := int(binary.BigEndian.Uint16(ip[4:]))
		f.proto, f.ttl = ip[6], ip[7]
		f.src = netip.AddrFrom16([16]byte(ip[8:24]))
		f.dst = netip.AddrFrom16([16]byte(ip[24:40]))
		f.payload = ip[40 : 40+plen]
	}
	return f
}

// vrrpFrames returns the capture's VRRP frames.
func vrrpFrames(t testing.TB, name string) []frame {
	var out []frame
	for _, f := range readPcap(t, name) {
		if (f.etherType == 0x0800 || f.etherType == 0x86dd) && f.proto == IPProtocol {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no VRRP frames", name)
	}
	return out
}
