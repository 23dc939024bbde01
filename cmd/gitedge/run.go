package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/nodeconfig"
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
	cfg      *nodeconfig.Config
	opts     nodeOptions
	log      *slog.Logger
	reg      *prometheus.Registry
	src      *switchSource // what the loop reads, across reloads
	parts    liveParts     // the parts a reload may replace
	proxy    *dataplane.Proxy
	vrrp     *failover.Manager
	infra    *infra.Reconciler
	loop     *reconcile.Loop
	admin    *adminServer
	trackGap time.Duration
	// hup delivers SIGHUP: re-read the node config and re-fetch. nil: no
	// reloads (the demo).
	hup <-chan os.Signal
	// readConfig re-reads the node config on SIGHUP.
	readConfig func() (*nodeconfig.Config, error)
}

type nodeOptions struct {
	sourceDir string // follow a local directory with fsnotify instead of git
	noVRRP    bool   // run without failover (no raw sockets: a laptop, the demo)
	dryRun    bool
	access    bool // access log of every request and connection
	// defaults: the node config is gitedge run's built-in one (no file):
	// there is no node name to check the repository against.
	defaults bool
}

func newNode(nc *nodeconfig.Config, o nodeOptions, log *slog.Logger) (*node, error) {
	n := &node{cfg: nc, opts: o, log: log, reg: prometheus.NewRegistry(), trackGap: 20 * time.Millisecond}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// dataplane, failover and infra name themselves in their logs.
	popts := dataplane.Options{Logger: log, Registry: n.reg}
	if o.access {
		popts.AccessLog = log.With("subsystem", "access")
	}
	n.proxy = dataplane.New(popts)

	n.loop = &reconcile.Loop{
		Node:      nc.Node,
		Dataplane: proxyApplier{n.proxy},
		// Leadership is asked before every infra write, so a node that
		// loses mastership mid-pass stops writing (one writer).
		Leadership: reconcile.Leadership{Master: n.isMaster},
		Resync:     time.Minute,
		DryRun:     o.dryRun,
		Logger:     log.With("subsystem", "reconcile"),
		Metrics:    reconcile.NewMetrics(n.reg),
		Local:      localChecks(nc, o),
	}
	if nc.StateDir != "" && !o.dryRun {
		// The last applied commit, served at start before any fetch.
		n.loop.State = reconcile.NewStateFile(nc.StateDir)
	}
	if !o.noVRRP {
		var err error
		n.vrrp, err = failover.NewManager(failover.Options{
			Logger:     log,
			Registerer: n.reg,
			TrackProxy: true,
			Ready:      n.proxy.Ready(), // never claim a VIP with nothing listening
			OnTransition: func(e failover.Event) {
				// A node that becomes master of any instance re-applies at
				// once: it may now lead infra (infra.leader: vrrp:NAME).
				if e.To == failover.StateMaster {
					n.loop.Poke()
				}
			},
		})
		if err != nil {
			return nil, err
		}
		n.loop.Failover = n.vrrp
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
		n.infra, err = infra.New(infra.Options{API: api, Logger: log, Registerer: n.reg})
		if err != nil {
			return nil, err
		}
		n.loop.Infra = n.infra
	}
	n.admin = &adminServer{status: n.loop.Status, registry: n.reg, logger: log,
		backends: func() any { return n.proxy.Status() }}
	if n.vrrp != nil {
		n.admin.vrrp = func() any { return n.vrrp.Status() }
	}
	if n.infra != nil {
		n.admin.infra = func() any {
			if r, ok := n.infra.Last(); ok {
				return infraSummary(r)
			}
			return nil
		}
	}
	// The source last: a node whose state directory cannot take the git
	// cache (a full disk) still comes up and serves its last applied
	// commit; the source reports the failure and is built again later.
	parts, err := n.buildParts(nc)
	if err != nil {
		return nil, err
	}
	n.parts = parts
	n.src = newSwitchSource(parts.src)
	n.loop.Source = sourceAdapter{n.src}
	return n, nil
}

// localChecks are the node-local checks every commit gets under gitedge
// run: the node's name (unless the config is the built-in one) and its own
// ports.
func localChecks(nc *nodeconfig.Config, o nodeOptions) *reconcile.Local {
	loc := nc.Local()
	if o.defaults {
		loc.Node, loc.Config = "", ""
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

// proxyApplier gives the proxy's Apply the loop's shape, with a context.
// The lead removes it once dataplane.Proxy.Apply takes one itself.
type proxyApplier struct{ p *dataplane.Proxy }

func (a proxyApplier) Apply(_ context.Context, cfg dataplane.Config) error { return a.p.Apply(cfg) }

var _ reconcile.DataplaneApplier = proxyApplier{}

// run starts every part under one errgroup; one fatal error stops all.
func (n *node) run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return named("dataplane", n.proxy.Run(ctx)) })
	if n.vrrp != nil {
		g.Go(func() error { return named("failover", n.vrrp.Run(ctx)) })
		g.Go(func() error { return n.trackProxy(ctx) })
	}
	g.Go(func() error { return named("reconcile", n.loop.Run(ctx)) })
	g.Go(func() error { return n.superviseParts(ctx) })
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

// infraSummary is the last infra pass as /status shows it: each applied
// change as one readable line.
func infraSummary(r infra.Result) any {
	out := struct {
		Leader    bool     `json:"leader"`
		Converged bool     `json:"converged"`
		Applied   []string `json:"applied,omitempty"`
		Error     string   `json:"error,omitempty"`
		Took      string   `json:"took"`
	}{Leader: r.Leader, Converged: r.Converged(), Took: r.Duration.Round(time.Millisecond).String()}
	for _, a := range r.Applied {
		out.Applied = append(out.Applied, actionText(a))
	}
	if r.Err != nil {
		out.Error = r.Err.Error()
	}
	return out
}

// actionText renders one infra change: `create VM 150 "lb-0" on proxmox1
// from debian-12`, `update VM 151 "lb-1": memory 1024 → 4096`.
func actionText(a infra.Action) string {
	ref := fmt.Sprintf("VM %d %q", a.VM.VMID, a.VM.Name)
	switch a.Op {
	case infra.OpCreate:
		return fmt.Sprintf("create %s on %s from %s", ref, a.VM.Node, a.Clone)
	case infra.OpUpdate:
		fields := make([]string, len(a.Fields))
		for i, f := range a.Fields {
			fields[i] = fmt.Sprintf("%s %s → %s", f.Key, orNone(f.Old), orNone(f.New))
		}
		return fmt.Sprintf("update %s: %s", ref, strings.Join(fields, ", "))
	case infra.OpResize:
		return fmt.Sprintf("resize %s %s: %s → %s", ref, a.Disk, a.From, a.Size)
	case infra.OpHACreate, infra.OpHAUpdate:
		if a.HA != nil {
			return fmt.Sprintf("%s %s group=%s state=%s", a.Op, ref, a.HA.Group, a.HA.State)
		}
	}
	return fmt.Sprintf("%s %s", a.Op, ref)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func newLogger(w *os.File, level string) *slog.Logger {
	var lv slog.Level
	_ = lv.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv}))
}

// runRun is `gitedge run`: the daemon. SIGTERM and SIGINT (the context)
// stop it cleanly; SIGHUP re-reads the node config and re-fetches.
func runRun(ctx context.Context, env *cliEnv, args []string) int {
	// Ask for SIGHUP first: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	fs := newFlags(env, "run", "[--config FILE] [--source DIR]")
	config := fs.String("config", nodeconfig.DefaultPath, "node config; re-read on SIGHUP")
	dir := fs.String("source", "", "follow a local directory with fsnotify instead of the configured git remote (development)")
	noVRRP := fs.Bool("no-vrrp", false, "run without failover, even if the repository declares it")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	access := fs.Bool("access-log", false, "log every request and connection")
	if _, code, ok := parseFlags(fs, args); !ok {
		return code
	}
	log := newLogger(os.Stderr, *level)
	nc, defaults, err := readRunConfig(*config, *dir)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge run: %v\n", err)
		return 1
	}
	n, err := newNode(nc, nodeOptions{sourceDir: *dir, noVRRP: *noVRRP, access: *access, defaults: defaults}, log)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge run: %v\n", err)
		return 1
	}
	n.hup = hup
	n.readConfig = func() (*nodeconfig.Config, error) {
		nc, _, err := readRunConfig(*config, *dir)
		return nc, err
	}
	log.Info("gitedge starting", "node", nc.Node, "version", version, "source", sourceName(nc, *dir), "admin", nc.AdminListen,
		"stateDir", nc.StateDir)
	if err := n.run(ctx); err != nil {
		fmt.Fprintf(env.stderr, "gitedge run: %v\n", err)
		return 1
	}
	log.Info("gitedge stopped")
	return 0
}

// readRunConfig reads the node config; with --source and no config file,
// the built-in one (defaults true).
func readRunConfig(path, dir string) (nc *nodeconfig.Config, defaults bool, err error) {
	nc, err = nodeconfig.Load(path)
	if err != nil && dir != "" && errors.Is(err, os.ErrNotExist) {
		nc, err = builtinConfig(dir)
		return nc, true, err
	}
	return nc, false, err
}

// builtinConfig is the node config of a command given a routes directory
// and no config file: node "local", the admin server on its default
// address, and the state in the user's cache directory, never in a
// production node's /var/lib/gitedge.
func builtinConfig(dir string) (*nodeconfig.Config, error) {
	state := filepath.Join(os.TempDir(), "gitedge-state")
	if cache, err := os.UserCacheDir(); err == nil {
		state = filepath.Join(cache, "gitedge")
	}
	return nodeconfig.Build(nodeconfig.File{Node: "local", Source: nodeconfig.Source{URL: dir}, StateDir: state}, "")
}

func sourceName(nc *nodeconfig.Config, dir string) string {
	if dir != "" {
		return dir
	}
	return nc.Source.URL
}
