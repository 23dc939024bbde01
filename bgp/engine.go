package bgp

import (
	"fmt"
	"net/netip"
	"time"
)

// engine is the BGP implementation a Speaker drives: GoBGP in production
// (gobgpEngine), a recording fake in tests. Only the Speaker's goroutine
// calls it, one call at a time; every call returns as soon as the local
// server has taken it (milliseconds), except stop, which waits for the
// sessions to close. Peers are keyed by address.
type engine interface {
	// start runs a BGP server with this identity; onPeer receives every
	// session state change, on another goroutine, and must not block.
	start(g identity, onPeer func(PeerEvent)) error
	// stop ends the server and its sessions. graceful closes the TCP
	// connections without a NOTIFICATION, so a router in graceful-restart
	// helper mode keeps the routes (RFC 4724 §4.2); otherwise each session
	// ends with a Cease (RFC 4486) and the routers drop the routes at once.
	stop(graceful bool) error
	// addPeer configures a session; restarting sets the Restart State bit
	// in its graceful-restart capability (RFC 4724 §3).
	addPeer(p Peer, restarting bool) error
	// deletePeer ends a session with a Cease and forgets the peer.
	deletePeer(addr netip.Addr) error
	// peers lists the configured sessions as the server sees them.
	peers() ([]peerInfo, error)
	// announce adds the route or replaces its attributes.
	announce(r Route) error
	// withdraw removes the route; an unknown prefix is not an error.
	withdraw(p netip.Prefix) error
}

// identity is what a BGP server is started with; another identity needs
// another server (every session restarts).
type identity struct {
	ASN      uint32
	RouterID netip.Addr
}

// peerInfo is one configured session as the engine sees it.
type peerInfo struct {
	Address netip.Addr
	State   SessionState
	// Since is when the session was established (zero unless it is).
	Since time.Time
	// Advertised counts the prefixes sent to the peer.
	Advertised int
}

// PeerEvent is one state change of a session.
type PeerEvent struct {
	Peer     netip.Addr
	From, To SessionState
	// Reason says why a session left Established (a NOTIFICATION, the
	// hold timer, the connection closed); "" otherwise.
	Reason string
	At     time.Time
}

// SessionState is a BGP session's state (RFC 4271 §8.2.2).
type SessionState int

// Session states.
const (
	StateIdle SessionState = iota
	StateConnect
	StateActive
	StateOpenSent
	StateOpenConfirm
	StateEstablished
)

var stateNames = [...]string{"idle", "connect", "active", "openSent", "openConfirm", "established"}

func (s SessionState) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("SessionState(%d)", int(s))
}

// MarshalText writes String, for JSON.
func (s SessionState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *SessionState) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = SessionState(i)
			return nil
		}
	}
	return fmt.Errorf("unknown session state %q", b)
}
