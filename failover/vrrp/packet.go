package vrrp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// IPProtocol is the IP protocol number of VRRP (RFC 5798 §5.1.1.4, RFC 3768 §5.2.4).
const IPProtocol = 112

// TTL is the only IPv4 TTL / IPv6 hop limit a VRRP packet may be sent or
// accepted with (RFC 5798 §5.1.1.3, §5.1.2.3; RFC 3768 §5.2.3).
const TTL = 255

// Multicast groups for advertisements (RFC 5798 §5.1.1.2, §5.1.2.2).
var (
	GroupIPv4 = netip.AddrFrom4([4]byte{224, 0, 0, 18})
	GroupIPv6 = netip.MustParseAddr("ff02::12")
)

// Type is the VRRP message type; Advertisement is the only one defined.
type Type uint8

// TypeAdvertisement is the VRRP ADVERTISEMENT (RFC 5798 §5.2.2).
const TypeAdvertisement Type = 1

func (t Type) String() string {
	if t == TypeAdvertisement {
		return "Advertisement"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// AuthType is the VRRPv2 authentication type (RFC 3768 §5.3.6). Version 3
// has no authentication.
type AuthType uint8

// Authentication types of RFC 3768 §5.3.6 (and RFC 2338 for AH).
const (
	AuthNone   AuthType = 0
	AuthSimple AuthType = 1 // keepalived's auth_type PASS
	AuthAH     AuthType = 2
)

func (a AuthType) String() string {
	switch a {
	case AuthNone:
		return "none"
	case AuthSimple:
		return "simple"
	case AuthAH:
		return "ah"
	}
	return fmt.Sprintf("AuthType(%d)", uint8(a))
}

// Sentinel errors returned (wrapped) by UnmarshalBinary, MarshalBinary and
// Decode. Receivers map each to a drop reason.
var (
	ErrTooShort  = errors.New("vrrp: packet shorter than its header and address count")
	ErrTooLong   = errors.New("vrrp: packet longer than its address count allows")
	ErrVersion   = errors.New("vrrp: unsupported version")
	ErrType      = errors.New("vrrp: unknown message type")
	ErrChecksum  = errors.New("vrrp: bad checksum")
	ErrAddresses = errors.New("vrrp: invalid address list")
	ErrField     = errors.New("vrrp: field out of range")
)

const (
	headerLen = 8
	authLen   = 8 // RFC 3768 §5.3.10: Authentication Data, 8 octets
)

// Packet is one VRRP advertisement as on the wire. Field names follow
// RFC 5798 §5.1 / RFC 3768 §5.1.
type Packet struct {
	Version  uint8 // 2 or 3
	Type     Type
	VRID     uint8
	Priority uint8
	// AuthType is version 2 only; version 3 has the 4 reserved bits there
	// instead (see Reserved).
	AuthType AuthType
	// Reserved holds version 3's 4 reserved bits (RFC 5798 §5.2.6: zero on
	// send, ignored on receipt); kept so a decode round-trips exactly.
	Reserved uint8
	// Interval is Adver Int in seconds (version 2, 8 bits, RFC 3768 §5.3.7)
	// or Max Adver Int in centiseconds (version 3, 12 bits, RFC 5798 §5.2.7).
	Interval uint16
	Checksum uint16
	// Addresses are the virtual addresses: IPv4 for version 2, all IPv4 or
	// all IPv6 for version 3 (RFC 5798 §5.2.9).
	Addresses []netip.Addr
	// AuthData is version 2's Authentication Data (RFC 3768 §5.3.10): the
	// NUL-padded password for AuthSimple.
	AuthData [8]byte
}

// AdvertInterval is the packet's interval as a duration.
func (p *Packet) AdvertInterval() time.Duration {
	if p.Version == 2 {
		return time.Duration(p.Interval) * time.Second
	}
	return time.Duration(p.Interval) * 10 * time.Millisecond
}

// Password is the version 2 simple-text password: AuthData up to its first NUL.
func (p *Packet) Password() string {
	for i, c := range p.AuthData {
		if c == 0 {
			return string(p.AuthData[:i])
		}
	}
	return string(p.AuthData[:])
}

// SetPassword stores pw as keepalived does: truncated to 8 bytes, NUL padded.
func (p *Packet) SetPassword(pw string) {
	p.AuthData = [8]byte{}
	copy(p.AuthData[:], pw)
}

// Len is the encoded length of p.
func (p *Packet) Len() int {
	n := headerLen
	for _, a := range p.Addresses {
		n += addrLen(a)
	}
	if p.Version == 2 {
		n += authLen
	}
	return n
}

func addrLen(a netip.Addr) int {
	if a.Is4() {
		return 4
	}
	return 16
}

// MarshalBinary encodes p with the Checksum field as it is; Encode fills
// the checksum in first.
func (p *Packet) MarshalBinary() ([]byte, error) {
	if err := p.check(); err != nil {
		return nil, err
	}
	b := make([]byte, p.Len())
	b[0] = p.Version<<4 | uint8(p.Type)
	b[1] = p.VRID
	b[2] = p.Priority
	b[3] = uint8(len(p.Addresses))
	if p.Version == 2 {
		// RFC 3768 §5.1: Auth Type (8 bits), Adver Int (8 bits).
		b[4] = uint8(p.AuthType)
		b[5] = uint8(p.Interval)
	} else {
		// RFC 5798 §5.1: rsvd (4 bits), Max Adver Int (12 bits).
		binary.BigEndian.PutUint16(b[4:], uint16(p.Reserved)<<12|p.Interval)
	}
	binary.BigEndian.PutUint16(b[6:], p.Checksum)
	off := headerLen
	for _, a := range p.Addresses {
		off += copy(b[off:], a.AsSlice())
	}
	if p.Version == 2 {
		copy(b[off:], p.AuthData[:])
	}
	return b, nil
}

func (p *Packet) check() error {
	switch p.Version {
	case 2:
		if p.Interval > 0xff {
			return fmt.Errorf("%w: v2 Adver Int %d exceeds 8 bits", ErrField, p.Interval)
		}
		if p.Reserved != 0 {
			return fmt.Errorf("%w: v2 has no reserved bits", ErrField)
		}
	case 3:
		if p.Interval > 0xfff {
			return fmt.Errorf("%w: v3 Max Adver Int %d exceeds 12 bits", ErrField, p.Interval)
		}
		if p.Reserved > 0xf {
			return fmt.Errorf("%w: reserved %d exceeds 4 bits", ErrField, p.Reserved)
		}
		if p.AuthType != AuthNone || p.AuthData != [8]byte{} {
			return fmt.Errorf("%w: v3 has no authentication (RFC 5798 §9)", ErrField)
		}
	default:
		return fmt.Errorf("%w: %d", ErrVersion, p.Version)
	}
	if p.Type > 0xf {
		return fmt.Errorf("%w: %d exceeds 4 bits", ErrType, p.Type)
	}
	if len(p.Addresses) > 255 {
		return fmt.Errorf("%w: %d addresses, at most 255", ErrAddresses, len(p.Addresses))
	}
	for i, a := range p.Addresses {
		switch {
		case !a.IsValid() || a.Zone() != "":
			return fmt.Errorf("%w: address %d (%v) is not a plain IPv4 or IPv6 address", ErrAddresses, i, a)
		case p.Version == 2 && !a.Is4():
			return fmt.Errorf("%w: version 2 carries IPv4 only, got %v", ErrAddresses, a)
		case a.Is4() != p.Addresses[0].Is4():
			return fmt.Errorf("%w: IPv4 and IPv6 mixed (RFC 5798 §5.2.9)", ErrAddresses)
		}
	}
	return nil
}

// UnmarshalBinary decodes one VRRP message (the IP payload). It checks the
// structure — version, type, length against the address count — but not
// the checksum, which needs the IP addresses; Decode checks that too.
// The address family of a version 3 message follows from its length.
func (p *Packet) UnmarshalBinary(b []byte) error {
	if len(b) < headerLen {
		return fmt.Errorf("%w: %d bytes", ErrTooShort, len(b))
	}
	// RFC 5798 §7.1 / RFC 3768 §7.1: the version must be the one we speak.
	ver, typ := b[0]>>4, Type(b[0]&0x0f)
	if ver != 2 && ver != 3 {
		return fmt.Errorf("%w: %d", ErrVersion, ver)
	}
	if typ != TypeAdvertisement {
		return fmt.Errorf("%w: %d", ErrType, typ)
	}
	n := int(b[3])
	var alen int
	switch ver {
	case 2:
		alen = 4
		if want := headerLen + 4*n + authLen; len(b) != want {
			return lengthErr(len(b), want)
		}
	case 3:
		switch len(b) {
		case headerLen + 4*n:
			alen = 4
		case headerLen + 16*n:
			alen = 16
		default:
			if len(b) < headerLen+4*n {
				return lengthErr(len(b), headerLen+4*n)
			}
			if len(b) > headerLen+16*n {
				return lengthErr(len(b), headerLen+16*n)
			}
			return fmt.Errorf("%w: %d bytes fit neither %d IPv4 nor %d IPv6 addresses", ErrAddresses, len(b), n, n)
		}
	}
	*p = Packet{Version: ver, Type: typ, VRID: b[1], Priority: b[2]}
	if ver == 2 {
		p.AuthType = AuthType(b[4])
		p.Interval = uint16(b[5])
	} else {
		v := binary.BigEndian.Uint16(b[4:])
		p.Reserved = uint8(v >> 12)
		p.Interval = v & 0x0fff
	}
	p.Checksum = binary.BigEndian.Uint16(b[6:])
	if n > 0 {
		p.Addresses = make([]netip.Addr, n)
	}
	off := headerLen
	for i := range n {
		if alen == 4 {
			p.Addresses[i] = netip.AddrFrom4([4]byte(b[off : off+4]))
		} else {
			p.Addresses[i] = netip.AddrFrom16([16]byte(b[off : off+16]))
		}
		off += alen
	}
	if ver == 2 {
		copy(p.AuthData[:], b[off:])
	}
	return nil
}

func lengthErr(got, want int) error {
	if got < want {
		return fmt.Errorf("%w: %d bytes, the address count needs %d", ErrTooShort, got, want)
	}
	return fmt.Errorf("%w: %d bytes, the address count allows %d", ErrTooLong, got, want)
}

// Encode computes p's checksum for a message sent from src to dst (which
// matter for version 3 only), stores it in p.Checksum and returns the bytes.
func (p *Packet) Encode(src, dst netip.Addr) ([]byte, error) {
	p.Checksum = 0
	b, err := p.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if p.Version == 3 && src.Is4() != dst.Is4() {
		return nil, fmt.Errorf("%w: source %v and destination %v differ in family", ErrAddresses, src, dst)
	}
	p.Checksum = Checksum(b, p.Version, src, dst)
	binary.BigEndian.PutUint16(b[6:], p.Checksum)
	return b, nil
}

// Decode unmarshals b, received from src to dst, and verifies its checksum.
func Decode(b []byte, src, dst netip.Addr) (*Packet, error) {
	p := new(Packet)
	if err := p.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	if p.Version == 3 {
		if !src.IsValid() || !dst.IsValid() || src.Unmap().Is4() != dst.Unmap().Is4() {
			return nil, fmt.Errorf("%w: v3 needs source and destination of one family, got %v and %v", ErrAddresses, src, dst)
		}
		if n := len(p.Addresses); n > 0 && p.Addresses[0].Is4() != src.Unmap().Is4() {
			return nil, fmt.Errorf("%w: address family differs from the IP header's", ErrAddresses)
		}
	}
	if c := Checksum(b, p.Version, src, dst); c != p.Checksum {
		return nil, fmt.Errorf("%w: got %#04x, computed %#04x", ErrChecksum, p.Checksum, c)
	}
	return p, nil
}

// Checksum computes the checksum of the encoded message b, treating its
// checksum field as zero. Version 2 sums the VRRP message alone
// (RFC 3768 §5.3.8); version 3 prepends the IPv4 or IPv6 pseudo-header of
// src and dst (RFC 5798 §5.2.8).
func Checksum(b []byte, version uint8, src, dst netip.Addr) uint16 {
	var sum uint32
	if version == 3 {
		src, dst = src.Unmap(), dst.Unmap()
		sum += sumBytes(src.AsSlice()) + sumBytes(dst.AsSlice())
		// IPv4 pseudo-header (RFC 768 form): zero, protocol, 16-bit length.
		// IPv6 (RFC 8200 §8.1): 32-bit length, 3 zero bytes, next header.
		// Both add up to protocol + length in one's complement.
		sum += IPProtocol + uint32(len(b))
	}
	sum += sumBytes(b)
	if len(b) >= 8 {
		sum -= uint32(binary.BigEndian.Uint16(b[6:])) // checksum field counts as zero
	}
	return finish(sum)
}

func sumBytes(b []byte) uint32 {
	var s uint32
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func finish(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
