package bgp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/gitedge/gitedge/internal/testkit"
)

// The real engine without root: a Speaker peers over loopback with a
// GoBGP server standing for the router (graceful-restart helper on), and
// what the router receives is read from its RIB.

type loopRouter struct {
	srv  *server.BgpServer
	port int
}

func newLoopRouter(t *testing.T) *loopRouter {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	srv := server.NewBgpServer()
	go srv.Serve()
	t.Cleanup(srv.Stop)
	ctx := context.Background()
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn: 65000, RouterId: "192.0.2.1", ListenPort: int32(port), ListenAddresses: []string{"127.0.0.1"}}}); err != nil {
		t.Fatal(err)
	}
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: &api.Peer{
		Conf:            &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: 65010},
		Transport:       &api.Transport{PassiveMode: true},
		Timers:          &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1}},
		GracefulRestart: &api.GracefulRestart{Enabled: true, HelperOnly: true},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: fam, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}}},
	}}); err != nil {
		t.Fatal(err)
	}
	return &loopRouter{srv: srv, port: port}
}

// routes renders the router's IPv4 RIB: one line per path.
func (r *loopRouter) routes(t *testing.T) []string {
	t.Helper()
	var out []string
	err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL, Family: gobgp.RF_IPv4_UC},
		func(prefix gobgp.NLRI, paths []*apiutil.Path) {
			for _, p := range paths {
				s := prefix.String()
				for _, a := range p.Attrs {
					switch a := a.(type) {
					case *gobgp.PathAttributeMultiExitDisc:
						s += fmt.Sprintf(" med=%d", a.Value)
					case *gobgp.PathAttributeCommunities:
						s += fmt.Sprintf(" communities=%v", a.Value)
					case *gobgp.PathAttributeNextHop:
						s += " nh=" + a.Value.String()
					}
				}
				if p.Stale {
					s += " stale"
				}
				out = append(out, s)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// loopSession is the router's view of its session with the speaker.
type loopSession struct {
	state api.PeerState_SessionState
	up    time.Time
	// received counts the routes the router holds from the speaker (0
	// unless established); restarting is set while it keeps them for a
	// restarting speaker (RFC 4724 §4.2).
	received   uint64
	restarting bool
}

// session reads the router's session through ListPeer, which the server
// answers under its lock. (ListPath reads live paths after releasing it,
// which races with graceful restart marking them stale later: the
// hand-over test reads counts only, through ListPeer and GetTable.)
func (r *loopRouter) session(t *testing.T) loopSession {
	t.Helper()
	var ls loopSession
	err := r.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		ls.state = p.State.SessionState
		if p.Timers != nil && p.Timers.State != nil && p.Timers.State.Uptime != nil {
			ls.up = p.Timers.State.Uptime.AsTime()
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				ls.received += af.State.Received
			}
		}
		if p.GracefulRestart != nil {
			ls.restarting = p.GracefulRestart.PeerRestarting
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

// paths counts the router's IPv4 paths (stale ones included).
func (r *loopRouter) paths(t *testing.T) uint64 {
	t.Helper()
	res, err := r.srv.GetTable(context.Background(), &api.GetTableRequest{TableType: api.TableType_TABLE_TYPE_GLOBAL,
		Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}})
	if err != nil {
		t.Fatal(err)
	}
	return res.NumPath
}

func (r *loopRouter) waitSession(t *testing.T, what string, ok func(loopSession) bool) {
	t.Helper()
	testkit.Poll(t, 15*time.Second, func() string {
		if ls := r.session(t); !ok(ls) {
			return fmt.Sprintf("the router's session: %+v, want %s", ls, what)
		}
		return ""
	})
}

func (r *loopRouter) waitRoutes(t *testing.T, want ...string) {
	t.Helper()
	testkit.Poll(t, 15*time.Second, func() string {
		if got := r.routes(t); !slices.Equal(got, want) {
			return fmt.Sprintf("the router has %q, want %q", got, want)
		}
		return ""
	})
}

func loopConfig(port int, prefixes ...netip.Prefix) Config {
	c := Config{ASN: 65010, Node: "lb-0", NodeAddress: netip.MustParseAddr("192.0.2.11"),
		Peers: []Peer{{Address: netip.MustParseAddr("127.0.0.1"), ASN: 65000, Port: uint16(port), HoldTime: 3 * time.Second, RestartTime: 10 * time.Second}}}
	for _, p := range prefixes {
		c.Announce = append(c.Announce, Announcement{Prefix: p, TrackProxy: true,
			Communities: []Community{65010<<16 | 100}, MED: map[string]uint32{"lb-0": 7}})
	}
	return c
}

func runSpeaker(t *testing.T, o Options) (*Speaker, context.CancelFunc) {
	t.Helper()
	if o.Host == nil {
		o.Host = &fakeHost{}
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return s, stop
}

// GoBGP end to end, as the router sees it: the route with its MED,
// communities and the session's address as next hop; a second prefix
// without a session reset; a withdrawal on an unhealthy proxy.
func TestGoBGPAnnounce(t *testing.T) {
	r := newLoopRouter(t)
	s, _ := runSpeaker(t, Options{})
	ctx := t.Context()
	if err := s.Apply(ctx, loopConfig(r.port, pfx1)); err != nil {
		t.Fatal(err)
	}
	one := "198.51.100.10/32 nh=127.0.0.1 med=7 communities=[4260495460]"
	both := []string{one, "198.51.100.16/28 nh=127.0.0.1 med=7 communities=[4260495460]"}
	r.waitRoutes(t, one)
	up := r.session(t).up
	if err := s.Apply(ctx, loopConfig(r.port, pfx1, pfx2)); err != nil {
		t.Fatal(err)
	}
	r.waitRoutes(t, both...)
	if ls := r.session(t); ls.state != api.PeerState_SESSION_STATE_ESTABLISHED || !ls.up.Equal(up) {
		t.Errorf("the session after adding a prefix: %+v (up since %v before)", ls, up)
	}
	if st := s.Status(); st.Peers[0].State != StateEstablished || st.Peers[0].PrefixesAnnounced != 2 {
		t.Errorf("status: %+v", st.Peers)
	}
	s.SetProxyHealthy(false)
	r.waitRoutes(t)
	s.SetProxyHealthy(true)
	r.waitRoutes(t, both...)
}

// The hand-over against a GoBGP router in helper mode: it keeps the
// routes while no process holds the session, and the successor's session
// (Restart State bit set) refreshes them.
func TestGoBGPHandOver(t *testing.T) {
	r := newLoopRouter(t)
	s, stop := runSpeaker(t, Options{})
	ctx := t.Context()
	if err := s.Apply(ctx, loopConfig(r.port, pfx1, pfx2)); err != nil {
		t.Fatal(err)
	}
	r.waitSession(t, "established with both routes", func(ls loopSession) bool {
		return ls.state == api.PeerState_SESSION_STATE_ESTABLISHED && ls.received == 2
	})
	if err := s.HandOver(ctx); err != nil {
		t.Fatal(err)
	}
	stop()
	r.waitSession(t, "down, routes kept for the restarting speaker", func(ls loopSession) bool {
		return ls.state != api.PeerState_SESSION_STATE_ESTABLISHED && ls.restarting
	})
	if n := r.paths(t); n != 2 {
		t.Fatalf("while no process holds the session, the router has %d paths, want the 2 kept", n)
	}
	next, _ := runSpeaker(t, Options{Restarting: true})
	if err := next.Apply(ctx, loopConfig(r.port, pfx1, pfx2)); err != nil {
		t.Fatal(err)
	}
	r.waitSession(t, "established with the successor, routes refreshed", func(ls loopSession) bool {
		return ls.state == api.PeerState_SESSION_STATE_ESTABLISHED && !ls.restarting && ls.received == 2
	})
	if n := r.paths(t); n != 2 {
		t.Fatalf("after the successor's session, the router has %d paths, want 2", n)
	}
	if st := next.Status(); st.Restarting || st.State != "announcing" {
		t.Errorf("the successor's status: %+v", st)
	}
}

// The TCP MD5 password is a secret: neither the speaker's logs (GoBGP's
// own included, at Debug), nor its status show it, when a session is
// added and when its password changes.
func TestGoBGPPasswordNeverShown(t *testing.T) {
	r := newLoopRouter(t)
	var logs syncBuffer
	s, _ := runSpeaker(t, Options{Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	ctx := t.Context()
	c := loopConfig(r.port, pfx1)
	c.Peers[0].Password = "first-s3cret"
	if err := s.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	c.Peers[0].Password = "second-s3cret"
	if err := s.Apply(ctx, c); err != nil {
		t.Fatal(err)
	}
	st, err := json.Marshal(s.Status())
	if err != nil {
		t.Fatal(err)
	}
	out := logs.String() + string(st)
	if !strings.Contains(out, "re-opening the session") || !strings.Contains(out, "Password") {
		t.Fatalf("no log of the password change (the test would see nothing):\n%s", out)
	}
	if strings.Contains(out, "s3cret") {
		t.Errorf("a password shows:\n%s", out)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (GoBGP logs
// from its own goroutines).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
