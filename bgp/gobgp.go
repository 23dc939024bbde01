package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"
)

// gobgpEngine runs GoBGP (github.com/osrg/gobgp/v4) in the process. A
// server serves one identity: start makes one, stop ends it for good.
type gobgpEngine struct {
	log *slog.Logger
	srv *server.BgpServer
	// stopWatch ends the peer-event watcher.
	stopWatch context.CancelFunc
	// stopping demotes GoBGP's complaint that Stop finds the server
	// already stopped (after a graceful stop) to debug.
	stopping *atomic.Bool
}

var _ engine = (*gobgpEngine)(nil)

const localOnlyPolicy = "gitedge-local-only"

// connectRetry is the pause between connection attempts to a peer; GoBGP
// waits at least 2 s (and 1.5-2 s before the first).
const connectRetry = 2

func (e *gobgpEngine) start(g identity, onPeer func(PeerEvent)) error {
	if e.srv != nil {
		return errors.New("BGP server already running")
	}
	e.stopping = new(atomic.Bool)
	lvl := new(slog.LevelVar)
	lvl.Set(slog.LevelDebug) // quietHandler filters
	srv := server.NewBgpServer(server.LoggerOption(slog.New(quietHandler{e.log.Handler(), e.stopping}), lvl))
	go srv.Serve()
	ctx := context.Background()
	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:      g.ASN,
		RouterId: g.RouterID.String(),
		// Sessions are opened by the node; it listens on no port, so it
		// needs no privilege for port 179 and never clashes with a
		// routing daemon on the host.
		ListenPort: -1,
	}})
	if err == nil {
		// Nothing learned from the routers is used: only the node's own
		// routes enter the RIB.
		err = srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: localOnlyPolicy, Statements: []*api.Statement{{
			Name:       localOnlyPolicy,
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ROUTE_ACTION_ACCEPT},
		}}}})
	}
	if err == nil {
		err = srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
			Direction:     api.PolicyDirection_POLICY_DIRECTION_IMPORT,
			Policies:      []*api.Policy{{Name: localOnlyPolicy}},
			DefaultAction: api.RouteAction_ROUTE_ACTION_REJECT,
		}})
	}
	if err == nil {
		var wctx context.Context
		wctx, e.stopWatch = context.WithCancel(ctx)
		err = srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{
			OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
				if ev.Type != apiutil.PEER_EVENT_STATE {
					return
				}
				st := ev.Peer.State
				pe := PeerEvent{Peer: st.NeighborAddress, To: fromFSM(st.SessionState), At: at}
				switch st.DisconnectReason {
				case api.PeerState_DISCONNECT_REASON_UNSPECIFIED,
					api.PeerState_DISCONNECT_REASON_IDLE_TIMER_EXPIRED, // the next attempt, not a failure
					api.PeerState_DISCONNECT_REASON_DECONFIGURED:       // our own doing
				default:
					pe.Reason = st.DisconnectMessage
				}
				onPeer(pe)
			},
		}, server.WatchPeer())
	}
	if err != nil {
		srv.Stop()
		if e.stopWatch != nil {
			e.stopWatch()
		}
		return fmt.Errorf("starting the BGP server (AS %d, router ID %s): %w", g.ASN, g.RouterID, err)
	}
	e.srv = srv
	return nil
}

func (e *gobgpEngine) stop(graceful bool) error {
	srv := e.srv
	if srv == nil {
		return nil
	}
	e.srv = nil
	defer e.stopWatch()
	var err error
	if graceful {
		err = srv.StopBgp(context.Background(), &api.StopBgpRequest{AllowGracefulRestart: true})
	}
	// Stop sends the Ceases (unless StopBgp above closed the sessions
	// already) and ends the BFD server, which StopBgp leaves running.
	e.stopping.Store(true)
	srv.Stop()
	return err
}

func (e *gobgpEngine) addPeer(p Peer, restarting bool) error {
	if e.srv == nil {
		return errors.New("BGP server not running")
	}
	fam := familyOf(p.Address)
	afi := &api.AfiSafi{
		Config: &api.AfiSafiConfig{Family: fam, Enabled: true},
		// The family is in the graceful-restart capability: the router
		// keeps its routes across a hand-over (RFC 4724 §3).
		MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}},
	}
	hold := uint64(p.HoldTime / time.Second)
	peer := &api.Peer{
		Conf: &api.PeerConf{NeighborAddress: p.Address.String(), PeerAsn: p.ASN, AuthPassword: p.Password},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: hold, KeepaliveInterval: max(hold/3, 1), ConnectRetry: connectRetry,
			// Send every change at once: a withdrawal must not wait for an
			// advertisement interval.
			MinimumAdvertisementInterval: 0,
		}},
		Transport: &api.Transport{RemotePort: uint32(p.Port)},
		GracefulRestart: &api.GracefulRestart{
			Enabled:     true,
			RestartTime: uint32(p.RestartTime / time.Second),
			// Send our routes one second after the session is up at the
			// latest, even if the router's End-of-RIB is late (RFC 4724
			// §4.1's selection deferral): the node originates all it says.
			DeferralTime:    1,
			LocalRestarting: restarting,
		},
		AfiSafis: []*api.AfiSafi{afi},
	}
	return e.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: peer})
}

func (e *gobgpEngine) deletePeer(addr netip.Addr) error {
	if e.srv == nil {
		return errors.New("BGP server not running")
	}
	return e.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: addr.String()})
}

func (e *gobgpEngine) peers() ([]peerInfo, error) {
	if e.srv == nil {
		return nil, nil
	}
	var out []peerInfo
	err := e.srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if p.State == nil {
			return
		}
		a, err := netip.ParseAddr(p.State.NeighborAddress)
		if err != nil {
			return
		}
		pi := peerInfo{Address: a, State: fromAPIState(p.State.SessionState)}
		if pi.State == StateEstablished && p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
			pi.Since = p.Timers.State.Uptime.AsTime()
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				pi.Advertised += int(af.State.Advertised)
			}
		}
		out = append(out, pi)
	})
	return out, err
}

func (e *gobgpEngine) announce(r Route) error {
	if e.srv == nil {
		return errors.New("BGP server not running")
	}
	p, err := gobgpPath(r, false)
	if err != nil {
		return err
	}
	_, err = e.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{p}})
	return err
}

func (e *gobgpEngine) withdraw(prefix netip.Prefix) error {
	if e.srv == nil {
		return nil
	}
	p, err := gobgpPath(Route{Prefix: prefix}, true)
	if err != nil {
		return err
	}
	return e.srv.DeletePath(apiutil.DeletePathRequest{Paths: []*apiutil.Path{p}})
}

// gobgpPath is a locally originated path: origin IGP, the next hop left
// unspecified so GoBGP puts the session's own address there.
func gobgpPath(r Route, withdraw bool) (*apiutil.Path, error) {
	nlri, err := gobgp.NewIPAddrPrefix(r.Prefix)
	if err != nil {
		return nil, err
	}
	attrs := []gobgp.PathAttributeInterface{gobgp.NewPathAttributeOrigin(gobgp.BGP_ORIGIN_ATTR_TYPE_IGP)}
	fam := gobgp.RF_IPv4_UC
	if r.Prefix.Addr().Is4() {
		nh, err := gobgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, nh)
	} else {
		fam = gobgp.RF_IPv6_UC
		mp, err := gobgp.NewPathAttributeMpReachNLRI(fam, []gobgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, err
		}
		attrs = append(attrs, mp)
	}
	if r.HasMED {
		attrs = append(attrs, gobgp.NewPathAttributeMultiExitDisc(r.MED))
	}
	if len(r.Communities) > 0 {
		cs := make([]uint32, len(r.Communities))
		for i, c := range r.Communities {
			cs[i] = uint32(c)
		}
		attrs = append(attrs, gobgp.NewPathAttributeCommunities(cs))
	}
	return &apiutil.Path{Family: fam, Nlri: nlri, Attrs: attrs, Withdrawal: withdraw}, nil
}

func familyOf(a netip.Addr) *api.Family {
	if a.Unmap().Is4() {
		return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

func fromFSM(s gobgp.FSMState) SessionState {
	switch s {
	case gobgp.BGP_FSM_CONNECT:
		return StateConnect
	case gobgp.BGP_FSM_ACTIVE:
		return StateActive
	case gobgp.BGP_FSM_OPENSENT:
		return StateOpenSent
	case gobgp.BGP_FSM_OPENCONFIRM:
		return StateOpenConfirm
	case gobgp.BGP_FSM_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}

func fromAPIState(s api.PeerState_SessionState) SessionState {
	switch s {
	case api.PeerState_SESSION_STATE_CONNECT:
		return StateConnect
	case api.PeerState_SESSION_STATE_ACTIVE:
		return StateActive
	case api.PeerState_SESSION_STATE_OPENSENT:
		return StateOpenSent
	case api.PeerState_SESSION_STATE_OPENCONFIRM:
		return StateOpenConfirm
	case api.PeerState_SESSION_STATE_ESTABLISHED:
		return StateEstablished
	}
	return StateIdle
}

// quietHandler passes GoBGP's logs on with its Info demoted to Debug (the
// Speaker logs session changes itself), and its error about stopping a
// stopped server dropped to Debug while a stop is under way.
type quietHandler struct {
	h        slog.Handler
	stopping *atomic.Bool
}

func (q quietHandler) level(l slog.Level) slog.Level {
	if l < slog.LevelWarn {
		return slog.LevelDebug
	}
	if q.stopping.Load() {
		return slog.LevelDebug
	}
	return l
}

func (q quietHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return q.h.Enabled(ctx, q.level(l))
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error {
	r.Level = q.level(r.Level)
	if !q.h.Enabled(ctx, r.Level) {
		return nil
	}
	return q.h.Handle(ctx, r)
}

func (q quietHandler) WithAttrs(a []slog.Attr) slog.Handler {
	return quietHandler{q.h.WithAttrs(a), q.stopping}
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{q.h.WithGroup(name), q.stopping}
}
