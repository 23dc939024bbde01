package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
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
// VMID, with bounded concurrency. A VM whose config cannot be read is kept
// with ConfigErr set; only a failed listing fails the whole observation.
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

// execute runs the plan: deletes first (they free names), then every other
// VM's actions in order, Concurrency VMs at a time.
func (r *Reconciler) execute(ctx context.Context, p Plan, leader func() bool) ([]Action, []error) {
	var deletes, others [][]Action
	byVM := map[int][]Action{}
	var order []int
	for _, a := range p.Actions {
		if _, seen := byVM[a.VM.VMID]; !seen {
			order = append(order, a.VM.VMID)
		}
		byVM[a.VM.VMID] = append(byVM[a.VM.VMID], a)
	}
	for _, id := range order {
		if byVM[id][0].Op == OpDelete {
			deletes = append(deletes, byVM[id])
		} else {
			others = append(others, byVM[id])
		}
	}
	var mu sync.Mutex
	var done []Action
	var errs []error
	run := func(groups [][]Action) {
		r.parallel(ctx, r.opts.Concurrency, len(groups), func(i int) {
			d, err := r.execVM(ctx, groups[i], leader)
			mu.Lock()
			defer mu.Unlock()
			done = append(done, d...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	run(deletes)
	run(others)
	slices.SortStableFunc(done, func(a, b Action) int { return a.VM.VMID - b.VM.VMID })
	return done, errs
}

// execVM runs one VM's actions in order and stops at its first failure.
func (r *Reconciler) execVM(ctx context.Context, acts []Action, leader func() bool) ([]Action, error) {
	var done []Action
	for _, a := range acts {
		if !leader() {
			return done, &Error{Kind: Transient, Reason: ReasonNotLeader, Op: string(a.Op), Name: a.VM.Name, VMID: a.VM.VMID, Node: a.VM.Node,
				Err: errors.New("no longer the infra leader; leaving the rest to the new leader")}
		}
		log := r.log.With("vmid", a.VM.VMID, "name", a.VM.Name, "node", a.VM.Node, "op", string(a.Op))
		var err error
		switch a.Op {
		case OpCreate:
			err = r.create(ctx, a, leader, log)
		case OpUpdate:
			err = r.update(ctx, a, log)
		case OpResize:
			err = r.resize(ctx, a.VM, a.Disk, a.Size)
		case OpHACreate:
			err = r.retry(ctx, a.VM, "ha", false, func() error { return r.api.CreateHA(ctx, haSID(a.VM.VMID), *a.HA) })
			if err != nil && reasonOf(err) == ReasonRaced {
				err = r.retry(ctx, a.VM, "ha", false, func() error { return r.api.UpdateHA(ctx, haSID(a.VM.VMID), *a.HA) })
			}
		case OpHAUpdate:
			err = r.retry(ctx, a.VM, "ha", false, func() error { return r.api.UpdateHA(ctx, haSID(a.VM.VMID), *a.HA) })
		case OpHARemove:
			err = r.retry(ctx, a.VM, "ha", false, func() error { return r.api.DeleteHA(ctx, haSID(a.VM.VMID)) })
		case OpStart:
			err = r.start(ctx, a.VM)
		case OpDelete:
			err = r.destroy(ctx, a.VM, log)
		}
		if errors.Is(err, errNoop) {
			log.Debug("nothing to do after all", "why", "status/current already shows the declared state")
			continue
		}
		r.m.action(a.Op, err)
		if err != nil {
			e := classify(string(a.Op), a.VM, err)
			if e.Reason == ReasonRaced {
				log.Info("another writer got there first; backing off until the next pass", "err", e.Err)
			} else {
				log.Error("infra action failed", "kind", e.Kind.String(), "reason", e.Reason, "err", e.Err)
			}
			return done, e
		}
		log.Info("infra action done", "changes", len(a.Fields))
		done = append(done, a)
	}
	return done, nil
}

// errNoop: an action found on a closer look that nothing needs doing.
var errNoop = errors.New("nothing to do")

// create clones the template onto the declared VMID, waits for the clone,
// then configures, resizes and starts (or hands to HA) the new VM.
func (r *Reconciler) create(ctx context.Context, a Action, leader func() bool, log *slog.Logger) error {
	v := *a.spec
	ref := a.VM
	// The clone runs on the template's node; target moves the new VM to
	// the declared node (shared storage only, API.md 5.14).
	req := CloneRequest{Node: a.cloneNode, Template: a.cloneID, VMID: v.VMID, Name: v.Name, Description: cloneMarker(v),
		Storage: v.Disk.Storage, Format: v.Disk.Format, TargetNode: v.Node}
	log.Info("creating VM", "template", a.Clone, "templateVMID", a.cloneID)
	var upid string
	err := r.retry(ctx, ref, "clone", false, func() (err error) { upid, err = r.api.Clone(ctx, req); return })
	if err != nil {
		if strings.Contains(err.Error(), "already exists") {
			// The explicit VMID makes a racing second writer fail here,
			// before any work: nothing to undo.
			return &Error{Kind: Transient, Reason: ReasonRaced, Op: "clone", Name: v.Name, VMID: v.VMID, Node: v.Node,
				Err: fmt.Errorf("VMID %d was created by another writer meanwhile; backing off: %w", v.VMID, err)}
		}
		return err
	}
	if err := r.wait(ctx, ref, "clone", upid); err != nil {
		return err
	}
	if err := r.waitUnlocked(ctx, ref); err != nil {
		return err
	}
	if !leader() {
		return &Error{Kind: Transient, Reason: ReasonNotLeader, Op: "configure", Name: v.Name, VMID: v.VMID, Node: v.Node,
			Err: errors.New("lost infra leadership after the clone; the new leader finishes the VM")}
	}
	// Configure: every managed key, the tag, and the real description.
	var c VMConfig
	if err := r.retry(ctx, ref, "configure", true, func() (err error) { c, err = r.api.Config(ctx, ref.Node, ref.VMID); return }); err != nil {
		return err
	}
	set := map[string]string{}
	for _, f := range diff(v, c.Values, false) {
		set[f.Key] = f.New
	}
	var del []string
	if v.Description == "" {
		del = append(del, "description")
	}
	if err := r.setConfig(ctx, ref, c.Digest, set, del); err != nil {
		return err
	}
	// Every managed key now holds the declared value.
	all := map[string]string{}
	for _, w := range wants(v, c.Values) {
		all[w.key] = w.value
	}
	r.remember(v.VMID, all)
	if v.Disk.Bus != "" && v.Disk.Size > 0 {
		if cur, ok := diskSize(c.Values[v.Disk.Key()]); ok && cur < v.Disk.Size {
			if err := r.resize(ctx, ref, v.Disk.Key(), v.Disk.Size); err != nil {
				return err
			}
		} else if ok && cur > v.Disk.Size {
			return &Error{Kind: Terminal, Reason: ReasonShrink, Op: "resize", Name: v.Name, VMID: v.VMID, Node: v.Node,
				Err: fmt.Errorf("the template's disk %s is %s, larger than spec.disk.size %s: disks only grow", v.Disk.Key(), cur, v.Disk.Size)}
		}
	}
	if v.HA != nil {
		err := r.retry(ctx, ref, "ha", false, func() error { return r.api.CreateHA(ctx, haSID(v.VMID), *v.HA) })
		if err != nil && reasonOf(err) == ReasonRaced {
			err = r.retry(ctx, ref, "ha", false, func() error { return r.api.UpdateHA(ctx, haSID(v.VMID), *v.HA) })
		}
		return err
	}
	if err := r.start(ctx, ref); !errors.Is(err, errNoop) {
		return err
	}
	return nil
}

// update writes the changed keys with the observed digest. A lock or a
// digest race re-reads the config and recomputes the change.
func (r *Reconciler) update(ctx context.Context, a Action, log *slog.Logger) error {
	v, ref := *a.spec, a.VM
	digest := a.digest
	fields := a.Fields
	for attempt := 0; ; attempt++ {
		set := map[string]string{}
		var del []string
		for _, f := range fields {
			if f.New == "" {
				del = append(del, f.Key)
			} else {
				set[f.Key] = f.New
			}
			log.Info("setting config key", "key", f.Key, "from", f.Old, "to", f.New, "drift", f.Drift)
		}
		upid, err := r.api.SetConfig(ctx, ref.Node, ref.VMID, digest, set, del)
		if err == nil {
			err = r.wait(ctx, ref, "config", upid)
		}
		if err == nil {
			r.remember(ref.VMID, set)
			return r.afterConfig(ctx, ref, set, log)
		}
		reason := reasonOf(err)
		if (reason != ReasonLocked && reason != ReasonRaced && reason != ReasonAPI) || attempt >= r.opts.Retries {
			return classify("config", ref, err)
		}
		log.Info("config change refused; retrying", "reason", reason, "attempt", attempt+1, "err", err)
		if !r.sleep(ctx, r.backoff(attempt)) {
			return ctx.Err()
		}
		var c VMConfig
		if err := r.retry(ctx, ref, "config", true, func() (err error) { c, err = r.api.Config(ctx, ref.Node, ref.VMID); return }); err != nil {
			return err
		}
		if !hasTag(splitTags(c.Values["tags"]), Tag) && c.Values["description"] != cloneMarker(v) {
			return &Error{Kind: Terminal, Reason: ReasonConflict, Op: "config", Name: ref.Name, VMID: ref.VMID, Node: ref.Node,
				Err: fmt.Errorf("VM %d lost its %q tag meanwhile; leaving it alone", ref.VMID, Tag)}
		}
		digest = c.Digest
		fields = diff(v, c.Values, true)
		if len(fields) == 0 {
			return nil
		}
	}
}

// afterConfig regenerates the cloud-init drive of a running VM whose
// cloud-init keys changed (the guest reads it at its next boot).
func (r *Reconciler) afterConfig(ctx context.Context, ref VMRef, set map[string]string, log *slog.Logger) error {
	ci := false
	var pending []string
	for k := range set {
		if cloudInitKey(k) {
			ci = true
		}
		if !hotKey(k) {
			pending = append(pending, k)
		}
	}
	if !ci && len(pending) == 0 {
		return nil
	}
	var st VMStatus
	if err := r.retry(ctx, ref, "status", true, func() (err error) { st, err = r.api.Status(ctx, ref.Node, ref.VMID); return }); err != nil {
		return err
	}
	if st.Status != "running" {
		return nil
	}
	if len(pending) > 0 {
		slices.Sort(pending)
		log.Warn("changes need a restart of the VM; they are pending until then", "keys", strings.Join(pending, ","))
	}
	if ci {
		log.Info("regenerating the cloud-init drive; the guest applies it at its next boot")
		return r.retry(ctx, ref, "cloudinit", false, func() error { return r.api.RegenerateCloudInit(ctx, ref.Node, ref.VMID) })
	}
	return nil
}

func (r *Reconciler) setConfig(ctx context.Context, ref VMRef, digest string, set map[string]string, del []string) error {
	if len(set) == 0 && len(del) == 0 {
		return nil
	}
	var upid string
	if err := r.retry(ctx, ref, "config", false, func() (err error) {
		upid, err = r.api.SetConfig(ctx, ref.Node, ref.VMID, digest, set, del)
		return
	}); err != nil {
		return err
	}
	return r.wait(ctx, ref, "config", upid)
}

func (r *Reconciler) resize(ctx context.Context, ref VMRef, disk string, size Size) error {
	for attempt := 0; ; attempt++ {
		var upid string
		err := r.retry(ctx, ref, "resize", false, func() (err error) { upid, err = r.api.Resize(ctx, ref.Node, ref.VMID, disk, size.String()); return })
		if err == nil {
			err = r.wait(ctx, ref, "resize", upid)
		}
		// Resize checks the lock inside its task (API.md 4.5).
		if err == nil || reasonOf(err) != ReasonLocked || attempt >= r.opts.Retries {
			return err
		}
		if !r.sleep(ctx, r.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// start starts a VM unless status/current (authoritative; the listing can
// be stale) says it runs. "already running" counts as success.
func (r *Reconciler) start(ctx context.Context, ref VMRef) error {
	for attempt := 0; ; attempt++ {
		var st VMStatus
		if err := r.retry(ctx, ref, "start", true, func() (err error) { st, err = r.api.Status(ctx, ref.Node, ref.VMID); return }); err != nil {
			return err
		}
		if st.Status == "running" {
			if attempt == 0 {
				return errNoop // the listing was stale
			}
			return nil
		}
		var err error
		if st.Lock == "" {
			var upid string
			err = r.retry(ctx, ref, "start", false, func() (err error) { upid, err = r.api.Power(ctx, ref.Node, ref.VMID, "start"); return })
			if err == nil {
				err = r.wait(ctx, ref, "start", upid)
			}
			if err == nil || strings.Contains(err.Error(), "already running") {
				return nil
			}
		} else {
			err = &Error{Kind: Transient, Reason: ReasonLocked, Op: "start", Name: ref.Name, VMID: ref.VMID, Node: ref.Node, Err: fmt.Errorf("VM is locked (%s)", st.Lock)}
		}
		if reasonOf(err) != ReasonLocked || attempt >= r.opts.Retries {
			return err
		}
		if !r.sleep(ctx, r.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// destroy removes a tagged VM: its HA resource, then a stop (waited until
// status/current says stopped), then the delete with purge.
func (r *Reconciler) destroy(ctx context.Context, ref VMRef, log *slog.Logger) error {
	var st VMStatus
	if err := r.retry(ctx, ref, "delete", true, func() (err error) { st, err = r.api.Status(ctx, ref.Node, ref.VMID); return }); err != nil {
		return err
	}
	if st.HA {
		err := r.retry(ctx, ref, "delete", false, func() error { return r.api.DeleteHA(ctx, haSID(ref.VMID)) })
		if err != nil && !strings.Contains(err.Error(), "not HA managed") {
			return err
		}
	}
	if st.Status == "running" {
		log.Info("stopping VM before deleting it")
		var upid string
		if err := r.retry(ctx, ref, "stop", false, func() (err error) { upid, err = r.api.Power(ctx, ref.Node, ref.VMID, "stop"); return }); err != nil {
			return err
		}
		if err := r.wait(ctx, ref, "stop", upid); err != nil {
			return err
		}
		if err := r.poll(ctx, ref, "stop", func(s VMStatus) bool { return s.Status == "stopped" }); err != nil {
			return err
		}
	}
	log.Info("deleting VM (prune)")
	for attempt := 0; ; attempt++ {
		var upid string
		err := r.retry(ctx, ref, "delete", false, func() (err error) { upid, err = r.api.Delete(ctx, ref.Node, ref.VMID); return })
		if err == nil {
			err = r.wait(ctx, ref, "delete", upid)
		}
		if err == nil {
			r.mu.Lock()
			delete(r.applied, ref.VMID)
			r.mu.Unlock()
			return nil
		}
		if reasonOf(err) != ReasonLocked || attempt >= r.opts.Retries {
			return err
		}
		if !r.sleep(ctx, r.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// waitUnlocked polls status/current until the clone lock is gone (as the
// bpg provider does after a clone task).
func (r *Reconciler) waitUnlocked(ctx context.Context, ref VMRef) error {
	return r.poll(ctx, ref, "clone", func(s VMStatus) bool { return s.Lock == "" })
}

func (r *Reconciler) poll(ctx context.Context, ref VMRef, op string, ok func(VMStatus) bool) error {
	deadline := time.Now().Add(r.opts.TaskTimeout)
	for {
		st, err := r.api.Status(ctx, ref.Node, ref.VMID)
		if err == nil && ok(st) {
			return nil
		}
		if err != nil && classifyKind(err) == Terminal {
			return classify(op, ref, err)
		}
		if time.Now().After(deadline) {
			return &Error{Kind: Transient, Reason: ReasonTimeout, Op: op, Name: ref.Name, VMID: ref.VMID, Node: ref.Node,
				Err: fmt.Errorf("VM did not reach the expected state within %s (last: %+v, %v)", r.opts.TaskTimeout, st, err)}
		}
		if !r.sleep(ctx, r.opts.PollInterval) {
			return ctx.Err()
		}
	}
}

// wait polls a task until it stops, tolerating transient poll failures
// (a busy node may not know a fresh UPID yet), and turns a failed exit
// status into an error. WARNINGS counts as success. (go-proxmox's
// Task.Wait returns nil for a failed task, flags WARNINGS as failed and
// sleeps without watching the context, so gitedge polls Task itself.)
func (r *Reconciler) wait(ctx context.Context, ref VMRef, op, upid string) error {
	deadline := time.Now().Add(r.opts.TaskTimeout)
	for first := true; ; first = false {
		if !first && !r.sleep(ctx, r.opts.PollInterval) {
			return ctx.Err()
		}
		st, err := r.api.Task(ctx, upid)
		switch {
		case err != nil && classifyKind(err) == Terminal && !strings.Contains(err.Error(), "no such task"):
			return classify(op, ref, err)
		case err == nil && !st.Running:
			if st.Succeeded() {
				return nil
			}
			e := classify(op, ref, errors.New(st.ExitStatus))
			if e.Reason == ReasonAPI {
				e.Reason = ReasonTaskFailed
			}
			e.Err = fmt.Errorf("task %s failed: %s", upid, st.ExitStatus)
			return e
		}
		if time.Now().After(deadline) {
			return &Error{Kind: Transient, Reason: ReasonTimeout, Op: op, Name: ref.Name, VMID: ref.VMID, Node: ref.Node,
				Err: fmt.Errorf("task %s still running after %s", upid, r.opts.TaskTimeout)}
		}
	}
}

// retry runs f, retrying refusals that did no work: a lock or a lock
// timeout (PVE answers both before doing anything), a 502/503/504 or an
// unreachable node (595/596). Reads (idempotent) also retry any other 5xx,
// timeouts and network errors; writes do not, since the request may have
// done its work.
func (r *Reconciler) retry(ctx context.Context, ref VMRef, op string, idempotent bool, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		reason := reasonOf(err)
		msg := err.Error()
		gateway := reason == ReasonAPI && (strings.HasPrefix(msg, "502") || strings.HasPrefix(msg, "503") || strings.HasPrefix(msg, "504") ||
			strings.Contains(msg, "unexpected end of JSON input")) // a 595/596 has an empty body
		retryable := reason == ReasonLocked || gateway || (idempotent && (reason == ReasonAPI || reason == ReasonTimeout))
		if !retryable || attempt >= r.opts.Retries || ctx.Err() != nil {
			return classify(op, ref, err)
		}
		r.log.Debug("proxmox call failed; retrying", "op", op, "vmid", ref.VMID, "attempt", attempt+1, "err", err)
		if !r.sleep(ctx, r.backoff(attempt)) {
			return classify(op, ref, err)
		}
	}
}

func (r *Reconciler) backoff(attempt int) time.Duration {
	d := r.opts.Backoff << min(attempt, 6)
	return d/2 + rand.N(d/2+1)
}

func (r *Reconciler) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// parallel runs f(0..n-1) with at most limit at once and waits for all.
func (r *Reconciler) parallel(ctx context.Context, limit, n int, f func(int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
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
