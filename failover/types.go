package failover

import (
	"fmt"
	"net/netip"
	"time"
)

// State is a VRRP instance's state: RFC 5798 §6.4's Initialize, Backup and
// Master, plus Fault (as keepalived's) while a tracked condition fails.
type State int32

// States of a Router.
const (
	StateInitialize State = iota
	StateBackup
	StateMaster
	StateFault
)

func (s State) String() string {
	switch s {
	case StateInitialize:
		return "INIT"
	case StateBackup:
		return "BACKUP"
	case StateMaster:
		return "MASTER"
	case StateFault:
		return "FAULT"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// MarshalText writes the state as String does ("MASTER"), for status JSON.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (s *State) UnmarshalText(b []byte) error {
	for st := StateInitialize; st <= StateFault; st++ {
		if st.String() == string(b) {
			*s = st
			return nil
		}
	}
	return fmt.Errorf("VRRP state %q: expected INIT, BACKUP, MASTER or FAULT", b)
}

// Event is one state transition of an instance.
type Event struct {
	Instance string
	From, To State
	// Reason says what caused it, e.g. "master down timer", "higher priority
	// advertisement from 192.0.2.12", "tracked interface eth1 down".
	Reason string
	At     time.Time
}

// Datagram is one received VRRP message with the IP header fields the
// receive checks of RFC 5798 §7.1 / RFC 3768 §7.1 need.
type Datagram struct {
	Payload  []byte
	Src, Dst netip.Addr
	// TTL is the IPv4 TTL or IPv6 hop limit the packet arrived with.
	TTL int
}

// Transport sends and receives one instance's VRRP messages.
//
// Send transmits an encoded message to dst (the multicast group or a
// unicast peer) from Source(), with TTL / hop limit 255; it must not block
// for long and may be called only from the Router's goroutine. Receive
// blocks until a datagram arrives; the Router owns the returned payload.
// After Close, Receive returns an error wrapping net.ErrClosed. Source may
// change over time (the interface's address) and is read before each Send.
type Transport interface {
	Send(msg []byte, dst netip.Addr) error
	Receive() (Datagram, error)
	Source() netip.Addr
	Close() error
}

// Effects changes the host for one instance: its VIPs on its interface and
// the announcements that move clients to this node. Every method is
// idempotent and called only from the Router's goroutine; it should return
// within milliseconds. An Effects or Transport that depends on the
// Instance also implements Reconfigurable to follow in-place changes.
type Effects interface {
	// AddVIPs makes sure every VIP is on the interface. A master calls it
	// on taking over and again after every advertisement it sends, so an
	// implementation may give the addresses a lifetime those calls renew.
	AddVIPs(vips []netip.Prefix) error
	// RemoveVIPs makes sure no VIP is on the interface; absent ones are fine.
	RemoveVIPs(vips []netip.Prefix) error
	// Announce sends count gratuitous ARPs (IPv4) or unsolicited neighbour
	// advertisements (IPv6) for each VIP, back to back.
	Announce(vips []netip.Prefix, count int) error
}

// Counters are an instance's totals since it started.
type Counters struct {
	AdvertsSent     uint64 `json:"advertsSent"`
	AdvertsReceived uint64 `json:"advertsReceived"` // accepted ones
	Transitions     uint64 `json:"transitions"`
	BecameMaster    uint64 `json:"becameMaster"`
	Announcements   uint64 `json:"announcements"`   // bursts of GARP / NA
	AddressMismatch uint64 `json:"addressMismatch"` // accepted adverts whose address list differs from ours
	// Drops counts discarded packets by reason (the Drop constants).
	Drops map[string]uint64 `json:"drops,omitempty"`
}

// Drop reasons, the label values of the drops metric, in PascalCase as
// every reason of gitedge.
const (
	DropTTL         = "TTL"
	DropTooShort    = "TooShort"
	DropTooLong     = "TooLong"
	DropVersion     = "Version"
	DropType        = "Type"
	DropChecksum    = "Checksum"
	DropAddresses   = "Addresses"
	DropVRID        = "VRID"
	DropAuth        = "Auth"
	DropInterval    = "Interval"
	DropOwner       = "Owner"
	DropUnknownPeer = "UnknownPeer"
	DropOwn         = "Own"
	DropFault       = "Fault"
)
