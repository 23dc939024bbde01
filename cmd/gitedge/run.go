package main

import (
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

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/reconcile"
)

// sourceAdapter turns gitsource's revisions into the loop's.
type sourceAdapter struct{ src revisionSource }

func (a sourceAdapter) Next(ctx context.Context) (reconcile.Revision, error) {
	r, err := a.src.Next(ctx)
	if err != nil {
		return reconcile.Revision{Trigger: string(r.Trigger.Kind)}, err
	}
	return loopRevision(r), nil
}

func loopRevision(r gitsource.Revision) reconcile.Revision {
	rev := reconcile.Revision{
		Commit:  r.Commit,
		Files:   r.Files,
		Message: firstLine(r.Message),
		Trigger: string(r.Trigger.Kind),
	}
	if r.Signer != nil {
		rev.Signer = r.Signer.Identity + " (" + r.Signer.KeyID + ")"
	}
	if r.Author.Name != "" {
		rev.Author = r.Author.Name + " <" + r.Author.Email + ">"
	}
	if r.Trigger.Detail != "" {
		rev.Trigger += ": " + r.Trigger.Detail
	}
	return rev
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

// node is one running gitedge: every subsystem the node config enables,
// wired together the way SPEC §4 describes.
type node struct {
	cfg      *reconcile.NodeConfig
	log      *slog.Logger
	reg      *prometheus.Registry
	src      revisionSource
	tasks    []task
	proxy    *dataplane.Proxy
	vrrp     *failover.Manager
	infra    *infra.Reconciler
	loop     *reconcile.Loop
	adminLn  string
	trackGap time.Duration
}

type nodeOptions struct {
	sourceDir string // follow a local directory with fsnotify instead of git
	noVRRP    bool   // run without failover (no raw sockets: a laptop, the demo)
	dryRun    bool
	access    bool // access log of every request and connection
}

func newNode(nc *reconcile.NodeConfig, o nodeOptions, log *slog.Logger) (*node, error) {
	n := &node{cfg: nc, log: log, reg: prometheus.NewRegistry(), adminLn: nc.Admin.Listen, trackGap: 20 * time.Millisecond}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	src, tasks, err := openSource(nc, o.sourceDir, true, log.With("subsystem", "gitsource"), n.reg)
	if err != nil {
		return nil, err
	}
	n.src, n.tasks = src, tasks

	popts := dataplane.Options{Logger: log.With("subsystem", "dataplane"), Registry: n.reg}
	if o.access {
		popts.AccessLog = log.With("subsystem", "access")
	}
	n.proxy = dataplane.New(popts)

	n.loop = &reconcile.Loop{
		Node:      nc.Node,
		Source:    sourceAdapter{src},
		Dataplane: reconcile.DataplaneFunc(func(_ context.Context, c dataplane.Config) error { return n.proxy.Apply(c) }),
		Resync:    time.Minute,
		DryRun:    o.dryRun,
		Logger:    log.With("subsystem", "reconcile"),
		Metrics:   reconcile.NewMetrics(n.reg),
	}
	if !o.noVRRP {
		n.vrrp, err = failover.NewManager(failover.Options{
			Logger:     log.With("subsystem", "failover"),
			Registerer: n.reg,
			TrackProxy: true,
			Ready:      n.proxy.Ready(), // never claim a VIP with nothing listening
			OnTransition: func(e failover.Event) {
				// A new master of the infra leader's instance applies at once.
				if e.To == failover.StateMaster {
					n.loop.Poke()
				}
			},
		})
		if err != nil {
			return nil, err
		}
		n.loop.Failover = reconcile.FailoverFunc(func(_ context.Context, c failover.Config) error { return n.vrrp.Apply(c) })
	}
	// The Edge's leader as of the pass being applied; infra re-reads it
	// from its own goroutines before every write.
	var leader atomic.Pointer[reconcile.Leader]
	leader.Store(&reconcile.Leader{})
	n.loop.IsLeader = func(ld reconcile.Leader) bool {
		leader.Store(&ld)
		return n.leads(ld)
	}
	if nc.Proxmox != nil {
		cc, err := proxmoxClientConfig(nc)
		if err != nil {
			return nil, err
		}
		api, err := infra.NewAPI(cc)
		if err != nil {
			return nil, err
		}
		n.infra, err = infra.New(infra.Options{API: api, Logger: log.With("subsystem", "infra"), Registerer: n.reg})
		if err != nil {
			return nil, err
		}
		// Leadership is re-checked before every write, so a node that loses
		// mastership mid-pass stops writing (SPEC §4.4).
		n.loop.Infra = reconcile.InfraFunc(n.infra.LoopApply(func() bool { return n.leads(*leader.Load()) }))
	}
	return n, nil
}

// leads answers whether this node applies infra changes now.
func (n *node) leads(ld reconcile.Leader) bool {
	switch {
	case ld.VRRP != "":
		return n.vrrp != nil && n.vrrp.States()[ld.VRRP] == failover.StateMaster
	case ld.Node != "":
		return ld.Node == n.cfg.Node
	}
	return true // no leader named: a single node leads itself
}

// run starts every part under one errgroup; one fatal error stops all.
func (n *node) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	for _, t := range n.tasks {
		g.Go(func() error { return named(t.name, t.run(ctx)) })
	}
	g.Go(func() error { return named("dataplane", n.proxy.Run(ctx)) })
	if n.vrrp != nil {
		g.Go(func() error { return named("failover", n.vrrp.Run(ctx)) })
		g.Go(func() error { return n.trackProxy(ctx) })
	}
	g.Go(func() error { return named("reconcile", n.loop.Run(ctx)) })
	if n.adminLn != "off" && n.adminLn != "" {
		a := &adminServer{status: n.loop.Status, registry: n.reg, logger: n.log,
			backends: func() any { return n.proxy.Status() }}
		if n.vrrp != nil {
			a.vrrp = func() any { return n.vrrp.Status() }
		}
		if n.infra != nil {
			a.infra = func() any {
				if r, ok := n.infra.Last(); ok {
					return infraSummary(r)
				}
				return nil
			}
		}
		g.Go(func() error { return named("admin "+n.adminLn, a.serve(ctx, n.adminLn)) })
	}
	err := g.Wait()
	if n.vrrp != nil {
		_ = n.vrrp.Close() // priority 0 and VIPs removed (SPEC §4.6)
	}
	return err
}

// trackProxy feeds the proxy's listener health to failover's track.proxy.
func (n *node) trackProxy(ctx context.Context) error {
	t := time.NewTicker(n.trackGap)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			n.vrrp.SetProxyHealthy(n.proxy.Healthy())
		}
	}
}

func named(name string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return nil
	}
	return fmt.Errorf("%s: %w", name, err)
}

func infraSummary(r infra.Result) any {
	out := struct {
		Leader    bool     `json:"leader"`
		Converged bool     `json:"converged"`
		Applied   []string `json:"applied,omitempty"`
		Error     string   `json:"error,omitempty"`
		Took      string   `json:"took"`
	}{Leader: r.Leader, Converged: r.Converged(), Took: r.Duration.Round(time.Millisecond).String()}
	for _, a := range r.Applied {
		out.Applied = append(out.Applied, fmt.Sprint(a))
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	return out
}

func newLogger(w *os.File, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
}

// runRun is `gitedge run`: the daemon.
func runRun(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "run", "[--config FILE] [--source DIR]")
	config := fs.String("config", reconcile.DefaultNodeConfigPath, "node config (SPEC §2)")
	dir := fs.String("source", "", "follow a local directory with fsnotify instead of the configured git remote (development)")
	noVRRP := fs.Bool("no-vrrp", false, "run without failover, even if the repository declares it")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	access := fs.Bool("access-log", false, "log every request and connection")
	if _, code, ok := parseFlags(fs, args); !ok {
		return code
	}
	log := newLogger(os.Stderr, *level)
	nc, err := reconcile.LoadNodeConfig(*config)
	if err != nil && *dir != "" && errors.Is(err, os.ErrNotExist) {
		nc, err = reconcile.ParseNodeConfig("(defaults)", []byte("node: local\nsource: {url: "+*dir+"}\nadmin: {listen: '127.0.0.1:9100'}\n"))
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge run: %v\n", err)
		return 1
	}
	n, err := newNode(nc, nodeOptions{sourceDir: *dir, noVRRP: *noVRRP, access: *access}, log)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge run: %v\n", err)
		return 1
	}
	log.Info("gitedge starting", "node", nc.Node, "version", version, "source", sourceName(nc, *dir), "admin", nc.Admin.Listen)
	if err := n.run(ctx); err != nil {
		fmt.Fprintf(env.stderr, "gitedge run: %v\n", err)
		return 1
	}
	return 0
}

func sourceName(nc *reconcile.NodeConfig, dir string) string {
	if dir != "" {
		return dir
	}
	return nc.Source.URL
}
