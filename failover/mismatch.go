package failover

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/gitedge/gitedge/failover/vrrp"
)

// Dropped advertisements that point at a difference between the nodes'
// configurations (a password rotated on one node only, another VRID,
// version or interval) leave both nodes MASTER: each drops the other's
// adverts. keepalived logs them; gitedge logs them too, rate-limited, and
// shows the last one in the instance's status (PeerMismatch), which the
// node's failover condition follows.
const (
	// mismatchLogEvery is how often at most a summary of further drops of
	// one reason from one source is logged after the first drop's line.
	mismatchLogEvery = 30 * time.Second
	// mismatchHold is how long the last mismatch stays in the status once
	// its drops stop (an accepted advert from its source clears it at once).
	mismatchHold = time.Minute
	// maxDropLogs bounds the sources followed at once (spoofed sources
	// must not grow memory); drops beyond are only counted in the metric.
	maxDropLogs = 32
)

// PeerMismatch is the last advertisement an instance dropped because the
// sender's configuration differs from ours, as the status shows it.
type PeerMismatch struct {
	Reason string     `json:"reason"` // a Drop constant: Auth, VRID, Version, Interval, UnknownPeer
	Source netip.Addr `json:"source"`
	// Count is the drops of Reason from Source since First.
	Count   uint64    `json:"count"`
	First   time.Time `json:"first"`
	Last    time.Time `json:"last"`
	Message string    `json:"message"` // what differs and what to check, as logged
}

type dropKey struct {
	reason string
	src    netip.Addr
}

// dropLog follows the drops of one reason from one source; owned by the
// Run goroutine.
type dropLog struct {
	count, pending uint64 // since first; since the last log line
	first, last    time.Time
	logged         time.Time
}

// peerDrop logs a drop that an operator should hear about: the first one
// at once, then a summary at most every mismatchLogEvery. mismatch says
// whether it is a configuration difference the status reports (not a
// malformed or routed packet). Runs on the Run goroutine.
func (r *Router) peerDrop(reason string, src netip.Addr, hint string, mismatch bool) {
	now := time.Now()
	k := dropKey{reason, src}
	dl, ok := r.dropLogs[k]
	if !ok {
		if len(r.dropLogs) >= maxDropLogs {
			for key, old := range r.dropLogs {
				if now.Sub(old.last) > mismatchHold {
					delete(r.dropLogs, key)
				}
			}
		}
		if len(r.dropLogs) >= maxDropLogs {
			return
		}
		dl = &dropLog{first: now}
		r.dropLogs[k] = dl
	} else if now.Sub(dl.last) > mismatchHold {
		*dl = dropLog{first: now} // a new episode: log its first drop again
	}
	dl.count++
	dl.pending++
	dl.last = now
	switch {
	case dl.logged.IsZero():
		r.log.Warn(fmt.Sprintf("dropped an advertisement from %v on VRID %d: %s", src, r.cfg.VRID, hint),
			"reason", reason, "from", src)
		dl.logged, dl.pending = now, 0
	case now.Sub(dl.logged) >= r.mismatchEvery:
		r.log.Warn(fmt.Sprintf("dropped %d advertisements from %v on VRID %d in the last %v: %s",
			dl.pending, src, r.cfg.VRID, now.Sub(dl.logged).Round(time.Second), hint),
			"reason", reason, "from", src, "total", dl.count)
		dl.logged, dl.pending = now, 0
	}
	if !mismatch {
		return
	}
	pm := &PeerMismatch{Reason: reason, Source: src, Count: dl.count, First: dl.first, Last: now,
		Message: fmt.Sprintf("dropped %d advertisements from %v on VRID %d: %s", dl.count, src, r.cfg.VRID, hint)}
	r.mu.Lock()
	r.mismatch = pm
	r.mu.Unlock()
}

// peerAccepted clears the mismatch of a source whose advertisement was
// accepted: its configuration now matches ours.
func (r *Router) peerAccepted(src netip.Addr) {
	r.mu.Lock()
	if r.mismatch != nil && r.mismatch.Source == src {
		r.mismatch = nil
	}
	r.mu.Unlock()
	for k := range r.dropLogs {
		if k.src == src {
			delete(r.dropLogs, k)
		}
	}
}

// PeerMismatch returns the last advertisement dropped for a configuration
// difference within mismatchHold, or nil. Safe from any goroutine.
func (r *Router) PeerMismatch() *PeerMismatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mismatch == nil || time.Since(r.mismatch.Last) > mismatchHold {
		return nil
	}
	pm := *r.mismatch
	return &pm
}

// ours reports whether an advertisement that names another VRID or
// version is meant for this instance: it comes from one of our unicast
// peers or lists one of our VIPs. Other VRRP groups on the link are
// normal and only counted.
func (r *Router) ours(p *vrrp.Packet, src netip.Addr) bool {
	if slices.Contains(r.cfg.UnicastPeers, src.Unmap()) {
		return true
	}
	for _, a := range p.Addresses {
		for _, v := range r.cfg.VIPs {
			if v.Addr() == a {
				return true
			}
		}
	}
	return false
}
