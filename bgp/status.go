package bgp

import (
	"context"
	"net/netip"
	"slices"
	"time"
)

// Status is what /status and the status page show of the speaker.
type Status struct {
	// State is "idle" (no config yet), "waitingForProxy" (sessions open,
	// nothing announced until the proxy is ready), "announcing",
	// "withdrawn" (for a clean stop), "handedOver" (to a new process) or
	// "stopped".
	State    string     `json:"state"`
	ASN      uint32     `json:"asn,omitempty"`
	RouterID netip.Addr `json:"routerID,omitzero"`
	// Restarting is set while the sessions of a process that took over
	// (Options.Restarting) are being opened with the Restart State bit.
	Restarting    bool                 `json:"restarting,omitempty"`
	Peers         []PeerStatus         `json:"peers"`
	Announcements []AnnouncementStatus `json:"announcements"`
}

// PeerStatus is one session.
type PeerStatus struct {
	Address netip.Addr   `json:"address"`
	ASN     uint32       `json:"asn"`
	State   SessionState `json:"state"`
	// Since is when the session entered State.
	Since time.Time `json:"since,omitzero"`
	// UptimeSeconds is how long it has been established; 0 when it is not.
	UptimeSeconds int64 `json:"uptimeSeconds"`
	// PrefixesAnnounced counts the routes sent to the peer now.
	PrefixesAnnounced int `json:"prefixesAnnounced"`
	// LastError is why the session last went down (a NOTIFICATION, the
	// hold timer, the connection closed), and when.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	// Flaps counts the times the session left Established.
	Flaps uint64 `json:"flaps"`
}

// AnnouncementStatus is one configured prefix.
type AnnouncementStatus struct {
	Prefix    netip.Prefix `json:"prefix"`
	Announced bool         `json:"announced"`
	// Reason says why it is not announced.
	Reason      string      `json:"reason,omitempty"`
	MED         *uint32     `json:"med,omitempty"`
	Communities []Community `json:"communities,omitempty"`
	TrackProxy  bool        `json:"trackProxy,omitempty"`
}

// Status returns the speaker's state now. While Run runs it asks the BGP
// server for the prefixes sent per session; otherwise it returns the
// state as Run left it.
func (s *Speaker) Status() Status {
	if s.ran.Load() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		var st Status
		if s.do(ctx, func() error { st = s.status(true); return nil }) == nil {
			return st
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.last
	st.Peers = slices.Clone(st.Peers)
	st.Announcements = slices.Clone(st.Announcements)
	return st
}

// publish records the status for Status calls made after Run.
func (s *Speaker) publish() {
	st := s.status(false)
	s.mu.Lock()
	s.last = st
	s.mu.Unlock()
}

// status builds the Status on Run's goroutine; withEngine asks the server
// for the routes sent per session (otherwise they are counted from what
// is announced).
func (s *Speaker) status(withEngine bool) Status {
	st := Status{State: "announcing", Peers: []PeerStatus{}, Announcements: []AnnouncementStatus{}}
	switch {
	case s.handedOver:
		st.State = "handedOver"
	case !s.started:
		st.State = "idle"
	case s.withdrawn:
		st.State = "withdrawn"
	case !s.gateOpen:
		st.State = "waitingForProxy"
	}
	if s.started {
		st.ASN, st.RouterID = s.id.ASN, s.id.RouterID
		st.Restarting = s.opts.Restarting && !s.restartDone
	}
	advertised := map[netip.Addr]int{}
	if withEngine && s.started {
		if list, err := s.eng.peers(); err == nil {
			for _, p := range list {
				advertised[p.Address] = p.Advertised
			}
		} else {
			withEngine = false
		}
	}
	now := time.Now()
	s.mu.Lock()
	for _, p := range s.cfg.Peers {
		a := p.Address.Unmap()
		ss, ok := s.sessions[a]
		if !ok {
			continue
		}
		ps := PeerStatus{Address: a, ASN: p.ASN, State: ss.state, Since: ss.since, LastError: ss.lastErr,
			LastErrorAt: ss.lastErrAt, Flaps: ss.flaps}
		if ss.state == StateEstablished {
			ps.UptimeSeconds = int64(now.Sub(ss.established) / time.Second)
			if withEngine {
				ps.PrefixesAnnounced = advertised[a]
			} else {
				for pr := range s.routes {
					if pr.Addr().Is4() == a.Is4() {
						ps.PrefixesAnnounced++
					}
				}
			}
		}
		st.Peers = append(st.Peers, ps)
	}
	s.mu.Unlock()
	_, why := s.wanted()
	for i, r := range s.cfg.Routes() {
		as := AnnouncementStatus{Prefix: r.Prefix, Communities: r.Communities, TrackProxy: s.cfg.Announce[i].TrackProxy}
		if r.HasMED {
			as.MED = &r.MED
		}
		_, as.Announced = s.routes[r.Prefix]
		if !as.Announced {
			as.Reason = why[r.Prefix]
		}
		st.Announcements = append(st.Announcements, as)
	}
	return st
}
