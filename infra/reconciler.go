package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Reconciler.
type Options struct {
	// API is the Proxmox API (required): NewAPI, or a fake in tests.
	API API
	// Logger receives state changes and outcomes; nil discards.
	Logger *slog.Logger
	// Registerer receives the metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Concurrency bounds how many VMs are changed at once (creates,
	// updates, deletes). Default 4, Telmate's pm_parallel.
	Concurrency int
	// ObserveConcurrency bounds the per-VM config reads. Default 16.
	ObserveConcurrency int
	// TaskTimeout bounds the wait for one task (a clone copies disks).
	// Default 10 minutes.
	TaskTimeout time.Duration
	// PollInterval is how often a task or a lock is polled. Default 1 s.
	PollInterval time.Duration
	// Retries is how many times a call refused for a lock, a lock timeout
	// or a 5xx is tried again within a pass. Default 4.
	Retries int
	// Backoff is the first retry delay, doubled each time, with jitter.
	// Default 1 s.
	Backoff time.Duration
}

// Reconciler makes the Proxmox VMs match an infra.Config. Observe and Plan
// run on every node; Apply changes anything only while the caller's leader
// function says this node leads. Methods are safe for concurrent use, but
// passes of one Reconciler are serialised.
type Reconciler struct {
	api  API
	log  *slog.Logger
	opts Options
	m    *metrics

	pass    sync.Mutex // one pass at a time
	mu      sync.Mutex
	applied map[int]map[string]string // VMID → key → value last set or seen in sync
	last    Result
	hasLast bool
}

// New makes a Reconciler.
func New(opts Options) (*Reconciler, error) {
	if opts.API == nil {
		return nil, errors.New("infra: Options.API is required")
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.ObserveConcurrency <= 0 {
		opts.ObserveConcurrency = 16
	}
	if opts.TaskTimeout <= 0 {
		opts.TaskTimeout = 10 * time.Minute
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = time.Second
	}
	if opts.Retries <= 0 {
		opts.Retries = 4
	}
	if opts.Backoff <= 0 {
		opts.Backoff = time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Reconciler{api: opts.API, log: log.With("subsystem", "infra"), opts: opts, m: m, applied: map[int]map[string]string{}}, nil
}

// Observe reads the cluster: one cluster-wide listing, the HA resources,
// then the config of every tagged VM and of every VM holding a declared
// VMID, with bounded concurrency, and the bridges of the nodes where a VM
// is to be created or a NIC written. A VM whose config cannot be read is
// kept with ConfigErr set, a node whose bridges cannot be read in
// BridgeErrs; only a failed listing fails the whole observation.
func (r *Reconciler) Observe(ctx context.Context, cfg Config) (*Observed, error) {
	var res []Resource
	if err := r.retry(ctx, VMRef{}, "observe", true, func() (err error) { res, err = r.api.Resources(ctx); return }); err != nil {
		return nil, classify("observe", VMRef{}, fmt.Errorf("listing cluster resources: %w", err))
	}
	var has []HAResource
	if err := r.retry(ctx, VMRef{}, "observe", true, func() (err error) { has, err = r.api.HAResources(ctx); return }); err != nil {
		return nil, classify("observe", VMRef{}, fmt.Errorf("listing HA resources: %w", err))
	}
	obs := &Observed{VMs: map[int]*ObservedVM{}, HA: map[string]HAResource{}}
	for _, h := range has {
		obs.HA[h.SID] = h
	}
	declared := map[int]bool{}
	for _, v := range cfg.VMs {
		declared[v.VMID] = true
	}
	var need []*ObservedVM
	for _, rs := range res {
		o := &ObservedVM{Resource: rs}
		obs.VMs[rs.VMID] = o
		if !rs.Template && (rs.Tagged() || declared[rs.VMID]) {
			need = append(need, o)
		}
	}
	var mu sync.Mutex
	r.parallel(ctx, r.opts.ObserveConcurrency, len(need), func(i int) {
		o := need[i]
		ref := VMRef{Name: o.Name, VMID: o.VMID, Node: o.Node}
		var c VMConfig
		err := r.retry(ctx, ref, "observe", true, func() (err error) { c, err = r.api.Config(ctx, o.Node, o.VMID); return })
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			if strings.Contains(err.Error(), "does not exist") {
				delete(obs.VMs, o.VMID) // deleted since the listing
				return
			}
			o.ConfigErr = err
			return
		}
		o.Config = &c
		if n := c.Values["name"]; n != "" {
			o.Name = n // the listing's name can lag (RRD)
		}
		o.Tags = splitTags(c.Values["tags"])
	})
	// The bridges, once per node, for the plan to refuse a NIC on a
	// bridge the node lacks before anything is cloned or written.
	nodes := bridgeNodes(cfg, obs)
	obs.Bridges, obs.BridgeErrs = map[string][]Bridge{}, map[string]error{}
	r.parallel(ctx, r.opts.ObserveConcurrency, len(nodes), func(i int) {
		var bs []Bridge
		err := r.retry(ctx, VMRef{Node: nodes[i]}, "observe", true, func() (err error) { bs, err = r.api.Bridges(ctx, nodes[i]); return })
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			obs.BridgeErrs[nodes[i]] = err
			return
		}
		obs.Bridges[nodes[i]] = bs
	})
	return obs, ctx.Err()
}

// Plan computes what Apply would do. It never calls the API.
func (r *Reconciler) Plan(cfg Config, obs *Observed) Plan {
	r.mu.Lock()
	applied := make(map[int]map[string]string, len(r.applied))
	for k, v := range r.applied {
		applied[k] = maps.Clone(v)
	}
	r.mu.Unlock()
	return plan(cfg, obs, applied)
}

// Result is the outcome of one pass, for status pages and logs. It holds
// no secret.
type Result struct {
	Plan     Plan
	Leader   bool     // this node leads; false: observe and plan only, nothing was changed
	Applied  []Action // actions that completed
	Duration time.Duration
	Err      error // every failure, joined (also returned by Apply)
}

// Converged reports whether the pass left nothing to do.
func (r Result) Converged() bool {
	return r.Err == nil && len(r.Applied) == 0 && r.Plan.Empty()
}

// Apply observes, plans and — while leader() is true — applies cfg. It is
// idempotent and convergent: it tries every VM even after one fails and
// returns the failures joined; the next call retries only what is left.
// With leader nil or false it only reports (split brain safety comes from
// the explicit VMIDs: a second clone onto the same VMID fails harmlessly).
// leader is called before every write, from several goroutines: it must be
// safe for concurrent use and fast (an atomic load).
func (r *Reconciler) Apply(ctx context.Context, cfg Config, leader func() bool) (res Result, err error) {
	r.pass.Lock()
	defer r.pass.Unlock()
	start := time.Now()
	defer func() {
		res.Duration = time.Since(start)
		res.Err = err
		r.mu.Lock()
		r.last, r.hasLast = res, true
		r.mu.Unlock()
		r.m.observePass(res, err)
		r.logOutcome(res, err)
	}()
	obs, err := r.Observe(ctx, cfg)
	if err != nil {
		// Nothing observed, nothing written; still say whether this node
		// leads, so the log and status of a failure on the leader are true.
		res.Leader = leader != nil && leader()
		return res, err
	}
	res.Plan = r.Plan(cfg, obs)
	r.m.setPlan(res.Plan, obs)
	r.rememberInSync(cfg, obs, res.Plan)
	problems := make([]error, 0, len(res.Plan.Problems))
	for _, p := range res.Plan.Problems {
		problems = append(problems, p)
	}
	if leader == nil || !leader() {
		if len(res.Plan.Actions) > 0 {
			r.log.Info("infra changes planned; not the infra leader, leaving them to it", "actions", len(res.Plan.Actions))
		}
		return res, join(problems)
	}
	res.Leader = true
	for _, d := range res.Plan.Drift() {
		r.log.Warn("drift: a field was changed outside gitedge; setting it back", "key", d.Key, "observed", d.Old, "declared", d.New)
	}
	applied, errs := r.execute(ctx, res.Plan, leader)
	res.Applied = applied
	return res, join(append(problems, errs...))
}

// Last returns the result of the last finished pass, for status pages.
func (r *Reconciler) Last() (Result, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.hasLast
}

// rememberInSync records the keys already matching the spec, so a later
// hand change of one of them is reported as drift.
func (r *Reconciler) rememberInSync(cfg Config, obs *Observed, p Plan) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, v := range cfg.VMs {
		o := obs.VMs[v.VMID]
		if o == nil || o.Config == nil || !hasTag(splitTags(o.Config.Values["tags"]), Tag) {
			continue
		}
		m := r.applied[v.VMID]
		if m == nil {
			m = map[string]string{}
			r.applied[v.VMID] = m
		}
		for _, w := range wants(v, o.Config.Values) {
			if cur, ok := o.Config.Values[w.key]; w.same(cur, ok) {
				m[w.key] = w.value
			}
		}
	}
}

func (r *Reconciler) remember(vmid int, set map[string]string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.applied[vmid]
	if m == nil {
		m = map[string]string{}
		r.applied[vmid] = m
	}
	maps.Copy(m, set)
}

func (r *Reconciler) logOutcome(res Result, err error) {
	attrs := []any{"leader", res.Leader, "planned", len(res.Plan.Actions), "applied", len(res.Applied),
		"conflicts", len(res.Plan.Conflicts), "pendingReboot", len(res.Plan.PendingReboot), "duration", res.Duration.Round(time.Millisecond)}
	switch {
	case err != nil:
		r.log.Warn("infra pass finished with errors", append(attrs, "transient", isTransient(err), "err", err)...)
	case len(res.Applied) > 0:
		r.log.Info("infra pass applied changes", attrs...)
	default:
		r.log.Debug("infra pass: nothing to do", attrs...)
	}
}
