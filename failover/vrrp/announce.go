package vrrp

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
)

// Ethernet types of the frames built here.
const (
	EtherTypeARP  = 0x0806
	EtherTypeIPv6 = 0x86dd
)

// AllNodes is the IPv6 all-nodes group unsolicited NAs go to (RFC 4861 §7.2.6).
var AllNodes = netip.MustParseAddr("ff02::1")

// GratuitousARP builds the Ethernet frame announcing that ip is at mac: an
// ARP request (RFC 5227 §3 "ARP Announcement", RFC 5798 §6.4.1 / RFC 3768
// §6.4.1 "broadcast a gratuitous ARP request") to the broadcast address,
// with sender and target protocol address both ip and the target hardware
// address all ones, as keepalived sends it. The frame is 42 bytes.
func GratuitousARP(mac net.HardwareAddr, ip netip.Addr) ([]byte, error) {
	if len(mac) != 6 || !ip.Is4() {
		return nil, fmt.Errorf("gratuitous ARP needs a 6-byte MAC and an IPv4 address, got %v and %v", mac, ip)
	}
	b := make([]byte, 42)
	bcast := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	copy(b[0:], bcast)
	copy(b[6:], mac)
	binary.BigEndian.PutUint16(b[12:], EtherTypeARP)
	a := b[14:]
	binary.BigEndian.PutUint16(a[0:], 1)      // hardware: Ethernet
	binary.BigEndian.PutUint16(a[2:], 0x0800) // protocol: IPv4
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1) // op: request
	copy(a[8:], mac)
	ip4 := ip.As4()
	copy(a[14:], ip4[:])
	copy(a[18:], bcast)
	copy(a[24:], ip4[:])
	return b, nil
}

// UnsolicitedNA builds the Ethernet frame of an unsolicited neighbour
// advertisement for ip (RFC 4861 §7.2.6, RFC 5798 §6.4.1 "for each IPv6
// address ... send an unsolicited ND Neighbor Advertisement with the Router
// Flag (R) set"): from ip itself to ff02::1, hop limit 255, Override set,
// target ip and a Target Link-Layer Address option carrying mac. router
// sets the R flag; keepalived leaves it clear for non-router hosts.
func UnsolicitedNA(mac net.HardwareAddr, ip netip.Addr, router bool) ([]byte, error) {
	if len(mac) != 6 || !ip.Is6() || ip.Is4In6() {
		return nil, fmt.Errorf("unsolicited NA needs a 6-byte MAC and an IPv6 address, got %v and %v", mac, ip)
	}
	const icmpLen = 32 // 24 header+target, 8 option
	b := make([]byte, 14+40+icmpLen)
	// Destination MAC of ff02::1 (RFC 2464 §7): 33:33 + low 32 bits.
	copy(b[0:], []byte{0x33, 0x33, 0, 0, 0, 1})
	copy(b[6:], mac)
	binary.BigEndian.PutUint16(b[12:], EtherTypeIPv6)
	h := b[14:54]
	h[0] = 0x60
	binary.BigEndian.PutUint16(h[4:], icmpLen)
	h[6] = 58 // ICMPv6
	h[7] = 255
	src, dst := ip.As16(), AllNodes.As16()
	copy(h[8:], src[:])
	copy(h[24:], dst[:])
	m := b[54:]
	m[0] = 136                 // Neighbor Advertisement
	var flags uint32 = 1 << 29 // Override
	if router {
		flags |= 1 << 31
	}
	binary.BigEndian.PutUint32(m[4:], flags)
	copy(m[8:], src[:])
	m[24], m[25] = 2, 1 // Target Link-Layer Address, 8 bytes
	copy(m[26:], mac)
	sum := sumBytes(src[:]) + sumBytes(dst[:]) + icmpLen + 58 + sumBytes(m)
	binary.BigEndian.PutUint16(m[2:], finish(sum))
	return b, nil
}
