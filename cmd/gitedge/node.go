package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/gitedge/gitedge/bgp"
	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/forge"
	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/gitsource/relay"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/notify"
	"github.com/gitedge/gitedge/reconcile"
)

// node is one running gitedge process: the subsystems its options and
// node config enable, the reconcile loop that drives them from a source,
// the source's triggers and the admin server. `gitedge run` runs every
// part; `gitedge proxy` and `gitedge vrrp` run one subsystem each, from a
// directory, the same way; the demo runs one in-process.
type node struct {
	cfg   *nodeconfig.Config
	opts  nodeOptions
	log   *slog.Logger
	reg   *prometheus.Registry
	src   *switchSource // what the loop reads, across reloads
	parts liveParts     // the parts a reload may replace
	loop  *reconcile.Loop
	admin *adminServer

	// The subsystems; nil when this process does not run them.
	proxy *dataplane.Proxy
	vrrp  *failover.Manager
	infra *infra.Reconciler
	// bgp announces the VIPs of spec.bgp; in `gitedge run` it always
	// exists and applies the zero config (nothing runs) without the section.
	bgp *bgp.Speaker
	// withdrawWait is how long a stop waits, once BGP withdrew its routes,
	// before the proxy closes its listeners.
	withdrawWait time.Duration
	// forge and notify run when configured; the loop reports to them
	// through its Observer (feedback.go), failover and the proxy through
	// their hooks.
	forge  *forge.Reporter
	notify *notify.Notifier
	// relay tells the other nodes of spec.nodes of a new commit this node
	// found by a webhook, a poll or SIGHUP; nil when following a
	// directory. Its config follows reloads (off: the zero config).
	relay *relay.Relayer

	trackGap time.Duration
	// hup delivers SIGHUP: re-read the node config and re-fetch. nil: no
	// reloads (the demo).
	hup <-chan os.Signal
	// readConfig re-reads the node config on SIGHUP; nil: nothing to
	// re-read, SIGHUP only looks at the source again.
	readConfig func() (*nodeconfig.Config, error)
	// handOver are the steps the old process of an upgrade in place runs
	// once the new one is ready, before it releases VRRP (upgrade.go): what
	// else a subsystem hands over without a gap. An error is logged and the
	// upgrade goes on, the new process serving already. BGP plugs in here,
	// in newNode: n.handOver = append(n.handOver, speaker.HandOver).
	handOver []func(context.Context) error
	// takenOver is closed, in the new process of an upgrade in place, once
	// the old one has handed over (or is gone): BGP's sessions wait for it.
	takenOver chan struct{}
	// sd tells systemd how the node stands (serve.go); nil: not started by
	// systemd. sdReady is set once READY=1 was sent.
	sd      *sdNotifier
	sdReady atomic.Bool
}

// nodeOptions say which parts a node runs and how.
type nodeOptions struct {
	proxy bool // the dataplane
	vrrp  bool // failover (raw sockets: Linux, root or CAP_NET_RAW)
	bgp   bool // BGP announcements of spec.bgp (the zero config without it)
	// sourceDir follows a local directory (gitsource.Dir) instead of the
	// configured git remote; noWatch reads it only at start and on SIGHUP,
	// debounce is how quiet it must stay before it is read (0: gitsource's
	// default).
	sourceDir string
	noWatch   bool
	debounce  time.Duration
	// keepState records the last applied commit in the state directory
	// and serves it first at start.
	keepState bool
	// local checks every commit against this node: its name in
	// spec.nodes (unless defaults: the node config is built in and names
	// no real node) and its own ports.
	local    bool
	defaults bool
	resync   time.Duration // 0: no resync
	dryRun   bool
	access   bool // access log of every request and connection
	pprof    bool // /debug/pprof/ on the admin server
	// up hands sockets and VRRP state between the processes of an upgrade
	// in place (upgrade.go); nil: no upgrades (the demo).
	up *upgrades
}

func newNode(nc *nodeconfig.Config, o nodeOptions, log *slog.Logger) (*node, error) {
	n := &node{cfg: nc, opts: o, log: log, reg: prometheus.NewRegistry(), trackGap: 20 * time.Millisecond,
		withdrawWait: bgpWithdrawWait}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// The loop and the subsystems name themselves in their logs.
	n.loop = &reconcile.Loop{
		Node: nc.Node,
		// Asked before every infra write, so a node that loses mastership
		// mid-pass stops writing (one writer).
		Leadership: reconcile.Leadership{Master: n.isMaster},
		Resync:     o.resync,
		DryRun:     o.dryRun,
		Logger:     log,
		Metrics:    reconcile.NewMetrics(n.reg),
	}
	if o.local || o.vrrp {
		n.loop.Local = localChecks(nc, o)
	}
	if o.keepState && nc.StateDir != "" && !o.dryRun {
		// The last applied commit, served at start before any fetch.
		n.loop.State = reconcile.NewStateFile(nc.StateDir)
	}
	if o.proxy {
		popts := dataplane.Options{Logger: log, Registry: n.reg, IdlePoll: nc.IdlePoll}
		if o.access {
			// A stream of its own, named apart from the proxy's log.
			popts.AccessLog = log.With("subsystem", "access")
		}
		if o.up != nil {
			popts.Inherit = o.up.takeDataplane
		}
		popts.OnServerHealth = func(backend, server string, up bool, reason string) {
			n.notify.Notify(serverHealth(backend, server, up, reason, n.proxy.Status()))
		}
		n.proxy = dataplane.New(popts)
		n.loop.Dataplane = n.proxy
	}
	if o.vrrp {
		fo := failover.Options{
			Logger:     log,
			Registerer: n.reg,
			OnTransition: func(e failover.Event) {
				// A node that becomes master of any instance re-applies at
				// once: it may now lead infra (infra.leader: vrrp:NAME).
				if e.To == failover.StateMaster {
					n.loop.Poke()
				}
				n.notify.Notify(vrrpTransition(e))
			},
		}
		if o.up != nil {
			fo.Inherit = o.up.snapshot
		}
		if n.proxy != nil {
			fo.TrackProxy = true
			fo.Ready = n.proxy.Ready() // never claim a VIP with nothing listening
		}
		var err error
		if n.vrrp, err = failover.NewManager(fo); err != nil {
			return nil, err
		}
		n.loop.Failover = n.vrrp
	}
	if o.bgp {
		bo := bgp.Options{Logger: log, Registerer: n.reg}
		if n.proxy != nil {
			bo.Ready = n.proxy.Ready() // announce nothing with nothing listening
		}
		if o.up.child() {
			// The new process of an upgrade in place opens its sessions
			// (graceful restart, RFC 4724) once the old one has handed
			// its own over, which is after this one serves.
			n.takenOver = make(chan struct{})
			bo.Ready, bo.Restarting = n.takenOver, true
		}
		var err error
		if n.bgp, err = bgp.New(bo); err != nil {
			return nil, err
		}
		n.loop.BGP = n.bgp
		n.handOver = append(n.handOver, n.bgp.HandOver)
	}
	if nc.Proxmox != nil {
		cc, err := nc.ProxmoxClient()
		if err != nil {
			return nil, err
		}
		api, err := infra.NewAPI(cc)
		if err != nil {
			return nil, err
		}
		if n.infra, err = infra.New(infra.Options{API: api, Logger: log, Registerer: n.reg}); err != nil {
			return nil, err
		}
		n.loop.Infra = n.infra
	}
	if nc.Forge != nil {
		var err error
		// Reporting never keeps a node from serving: a forge section it
		// cannot use (a token file missing) is an error in the log, and the
		// node runs without commit statuses until it is restarted (forge is a
		// restart field of the node config).
		if n.forge, err = forge.New(*nc.Forge, forge.Options{Logger: log, Registerer: n.reg}); err != nil {
			log.Error("forge: commit statuses are off until the node config is fixed", "error", err)
			n.forge = nil
		}
	}
	if len(nc.Notify.Sinks) > 0 {
		var err error
		ncfg := nc.Notify
		if nc.Forge != nil {
			ncfg.StatusURL = nc.Forge.StatusURL // linked from Slack messages, Alertmanager's generatorURL
		}
		if n.notify, err = notify.New(ncfg, notify.Options{Logger: log, Registerer: n.reg}); err != nil {
			log.Error("notify: notifications are off until the node config is fixed", "error", err)
			n.notify = nil
		}
	}
	fb := &feedback{forge: n.forge, notify: n.notify}
	if o.sourceDir != "" {
		fb.forge = nil // a directory's content hash is no commit the forge knows
	}
	n.loop.Observer = fb
	if o.sourceDir == "" {
		var err error
		if n.relay, err = relay.New(relayConfig(nc), relay.Options{Peers: n.peers, Logger: log, Registerer: n.reg}); err != nil {
			return nil, err
		}
	}
	n.admin = &adminServer{status: n.status, ready: n.loop.Status, healthy: n.healthy, registry: n.reg, logger: log, pprof: o.pprof}
	// The source last: a node whose state directory cannot take the git
	// cache (a full disk) still comes up and serves its last applied
	// commit; the source reports the failure and is built again later.
	parts, err := n.buildParts(nc)
	if err != nil {
		return nil, err
	}
	n.parts = parts
	n.src = newSwitchSource(parts.src)
	n.loop.Source = sourceAdapter{src: n.src, found: n.found}
	return n, nil
}

// relayConfig is the relay's config in nc; the zero config (nothing
// sent) when it is off.
func relayConfig(nc *nodeconfig.Config) relay.Config {
	if nc.Relay == nil {
		return relay.Config{}
	}
	return *nc.Relay
}

// peers are the nodes of the live commit's spec.nodes, for the relay.
func (n *node) peers() []relay.Peer {
	live := n.loop.Live()
	if live == nil {
		return nil
	}
	out := make([]relay.Peer, 0, len(live.Edge.Nodes))
	for _, p := range live.Edge.Nodes {
		out = append(out, relay.Peer{Name: p.Name, Address: p.Address})
	}
	return out
}

// poke hands a trigger to the source; an accepted push webhook naming its
// commit is relayed to the peers at once, before this node's own fetch,
// so that they fetch alongside it.
func (n *node) poke(t gitsource.Trigger) {
	if t.Kind == gitsource.TriggerWebhook && n.relay != nil {
		n.relay.Announce(cmp.Or(t.Ref, n.cfg.Source.Ref()), t.Commit)
	}
	if n.src != nil {
		n.src.Trigger(t)
	}
}

// found hears every revision the source hands over: a new commit this
// node found itself (a webhook without a commit id, a poll, SIGHUP) is
// relayed; one a relay, the start or a retry found is not.
func (n *node) found(r gitsource.Revision) {
	if n.relay != nil && r.Stale == nil && relay.Relays(r.Trigger.Kind) {
		n.relay.Announce(r.Ref, r.Commit)
	}
}

// localChecks are the node-local checks every commit gets under gitedge
// run: the node's name (unless the config is the built-in one) and its own
// ports; and the secrets the repository names, each resolved when the
// node runs its user (VRRP's auth.password, a BGP peer's password): a
// proxy-only node never needs them.
func localChecks(nc *nodeconfig.Config, o nodeOptions) *reconcile.Local {
	loc := nc.Local()
	if !o.local {
		loc = &reconcile.Local{Secrets: loc.Secrets}
	}
	if o.defaults {
		loc.Node, loc.Config = "", ""
	}
	loc.NoVRRP, loc.NoBGP = !o.vrrp, !o.bgp
	if !o.vrrp && !o.bgp {
		loc.Secrets = nil
	}
	return loc
}

// isMaster reports whether this node is the VRRP master of an instance
// now: what infra.leader "vrrp:NAME" follows.
func (n *node) isMaster(instance string) bool {
	if n.vrrp == nil {
		return false
	}
	for _, st := range n.vrrp.Status() {
		if st.Name == instance {
			return st.State == failover.StateMaster
		}
	}
	return false
}

// healthy says whether every part this process runs works: today, that
// the proxy's listeners accept. A refused commit does not make a node
// unhealthy: it keeps serving the last good one.
func (n *node) healthy() error {
	if n.proxy != nil && !n.proxy.Healthy() {
		return errors.New("listeners not accepting")
	}
	return nil
}

// bgpWithdrawWait is how long a stop waits between BGP's withdrawal and
// the proxy closing its listeners: the routers' FIBs drop the node in tens
// of milliseconds (62 ms in the FRR lab); a second covers a router under
// load and a second hop. Nothing waits when nothing was announced.
const bgpWithdrawWait = time.Second

// run starts every part under one errgroup; one fatal error stops all.
//
// A stop goes in order: BGP withdraws every route and waits for the
// routers to act on it while the proxy still accepts, so no new
// connection lands on a closing node; then the proxy drains; then the BGP
// sessions end and the prefixes leave the node (the connections draining
// on them still need them).
func (n *node) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	// The proxy stops once the routes are withdrawn, the speaker once the
	// proxy has drained.
	proxyCtx, stopProxy := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProxy()
	bgpCtx, stopBGP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBGP()
	proxyDone := make(chan struct{})
	g.Go(func() error {
		<-ctx.Done()
		n.withdraw()
		stopProxy()
		if n.proxy != nil {
			<-proxyDone
		}
		stopBGP()
		return nil
	})
	if n.proxy != nil {
		g.Go(func() error {
			defer close(proxyDone)
			return named("dataplane", n.proxy.Run(proxyCtx))
		})
	}
	if n.bgp != nil {
		g.Go(func() error { return named("bgp", n.bgp.Run(bgpCtx)) })
	}
	if n.vrrp != nil {
		g.Go(func() error { return named("failover", n.vrrp.Run(ctx)) })
	}
	if n.proxy != nil && (n.vrrp != nil || n.bgp != nil) {
		g.Go(func() error { return n.trackProxy(ctx) })
	}
	if n.forge != nil {
		g.Go(func() error { return named("forge", n.forge.Run(ctx)) })
	}
	if n.notify != nil {
		g.Go(func() error { return named("notify", n.notify.Run(ctx)) })
	}
	if n.relay != nil {
		g.Go(func() error { return named("relay", n.relay.Run(ctx)) })
	}
	// The first pass once the admin and webhook sockets are open: the new
	// process of an upgrade reports ready after it, and closes then the
	// inherited sockets no part took (listenParts).
	listening := make(chan struct{})
	g.Go(func() error {
		select {
		case <-listening:
		case <-ctx.Done():
			return nil
		}
		return named("reconcile", n.loop.Run(ctx))
	})
	g.Go(func() error { return n.superviseParts(ctx, listening) })
	err := g.Wait()
	if n.vrrp != nil {
		_ = n.vrrp.Close() // priority 0 and VIPs removed (a clean stop)
	}
	return err
}

// withdraw withdraws BGP's routes for a stop and waits withdrawWait for
// the routers to act on it (not at all when nothing was announced).
func (n *node) withdraw() {
	if n.bgp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.withdrawWait+5*time.Second)
	defer cancel()
	if err := n.bgp.Withdraw(ctx, n.withdrawWait); err != nil {
		n.log.Warn("withdrawing the BGP routes before stopping", "subsystem", "bgp", "error", err)
	}
}

// trackProxy feeds the proxy's listener health to failover's track.proxy
// and to the BGP announcements' track.proxy: one signal for both.
func (n *node) trackProxy(ctx context.Context) error {
	// Not before the first config applies: a proxy not started yet has
	// not failed (no FAULT at start-up; failover waits for Ready).
	select {
	case <-n.proxy.Ready():
	case <-ctx.Done():
		return nil
	}
	t := time.NewTicker(n.trackGap)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			ok := n.proxy.Healthy()
			if n.vrrp != nil {
				n.vrrp.SetProxyHealthy(ok)
			}
			if n.bgp != nil {
				n.bgp.SetProxyHealthy(ok)
			}
		}
	}
}

// named prefixes a part's error with its name, once: an error that
// already starts with it ("dataplane: …") is left as it is.
func named(name string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	if strings.HasPrefix(err.Error(), name+": ") {
		return err
	}
	return fmt.Errorf("%s: %w", name, err)
}
