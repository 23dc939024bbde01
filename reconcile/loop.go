package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/infra"
)

// Revision is one state of the routes repository: a commit's files.
type Revision struct {
	Commit  string // commit hash; a content hash for a local directory
	Files   fs.FS  // the configured sub-directory at that commit
	Signer  string // the verified signer; "" when signatures are not checked
	Author  string
	Message string // first line of the commit message
	Trigger string // why it was fetched: start, poll, webhook, fsnotify, resync
}

// Source is the loop's view of gitsource: Next blocks until there is a
// revision to look at (or a fetch failed) and returns it. Errors should
// implement Transient() bool when retrying can help; others are terminal
// for that head.
type Source interface {
	Next(ctx context.Context) (Revision, error)
}

// DataplaneApplier, FailoverApplier and InfraApplier are the subsystems as
// the loop sees them. Apply must be idempotent: it may be called any
// number of times with the same config, tries every item, and returns the
// joined errors.
type DataplaneApplier interface {
	Apply(ctx context.Context, cfg dataplane.Config) error
}

// FailoverApplier applies this node's VRRP instances.
type FailoverApplier interface {
	Apply(ctx context.Context, cfg failover.Config) error
}

// InfraApplier observes and plans the VMs on every node, and writes only
// when lead is true (the infra leader, SPEC §4.4).
type InfraApplier interface {
	Apply(ctx context.Context, cfg infra.Config, lead bool) error
}

// DataplaneFunc, FailoverFunc and InfraFunc adapt functions to the applier
// interfaces, so cmd can wire a subsystem whose method has another shape.
type (
	DataplaneFunc func(ctx context.Context, cfg dataplane.Config) error
	FailoverFunc  func(ctx context.Context, cfg failover.Config) error
	InfraFunc     func(ctx context.Context, cfg infra.Config, lead bool) error
)

func (f DataplaneFunc) Apply(ctx context.Context, c dataplane.Config) error { return f(ctx, c) }
func (f FailoverFunc) Apply(ctx context.Context, c failover.Config) error   { return f(ctx, c) }
func (f InfraFunc) Apply(ctx context.Context, c infra.Config, lead bool) error {
	return f(ctx, c, lead)
}

// Loop is the reconcile loop of one node: fetch, validate, plan, apply,
// report. Only Run's goroutine touches the desired state; Status may be
// read from anywhere.
type Loop struct {
	Node   string
	Source Source
	// Any applier may be nil: `gitedge proxy` runs only the dataplane.
	Dataplane DataplaneApplier
	Failover  FailoverApplier
	Infra     InfraApplier
	// IsLeader answers whether this node applies infra changes now; nil
	// means a node leads when the Edge names no leader or names it.
	IsLeader func(Leader) bool
	// Resync re-applies the last good state this often, so drift made by
	// hand (a VM edited in Proxmox) is set back without a new commit.
	// 0 disables it.
	Resync time.Duration
	// DryRun stops every pass after plan.
	DryRun bool
	// State keeps the last applied commit across restarts (SPEC §4.1):
	// Run applies its record before the first fetch, and every pass that
	// applies a commit not yet recorded records it, once every step took
	// it. A failure to record is reported (condition "state", metric, log)
	// and never fails the pass. nil: nothing is kept.
	State RecordStore
	// Local adds the node-local checks to every commit's validation (its
	// name in spec.nodes, its admin and webhook ports). nil: the
	// repository alone. While Run runs, change it with SetLocal only.
	Local   *Local
	Logger  *slog.Logger // nil discards
	Metrics *Metrics     // nil: no metrics

	infraQ   chan infraJob // set by Run: infra is applied by its own worker
	pokeOnce sync.Once
	poke     chan struct{} // one slot: a pending "re-apply now"

	mu       sync.Mutex
	status   Status
	live     *Desired // last desired state applied without error
	liveRev  Revision
	passes   int
	recorded string // the commit State holds; "" when unknown
}

// Result is the outcome of one pass.
type Result string

const (
	ResultApplied   Result = "applied"   // a new state was applied everywhere
	ResultUnchanged Result = "unchanged" // the revision plans nothing; subsystems re-checked
	ResultPlanned   Result = "planned"   // dry run: stopped after plan
	ResultInvalid   Result = "invalid"   // fetch, verify, parse or validate refused it: terminal for this head
	ResultFailed    Result = "failed"    // a subsystem failed to apply; retried on the next pass
	ResultFetchErr  Result = "fetch-error"
)

// Triggers the loop makes itself: re-applying the live revision, and
// applying the last applied record at start.
const (
	TriggerResync  = "resync"
	TriggerPoke    = "poke"
	TriggerRestart = "restart"
)

// Poke asks Run for a pass over the live revision now, as a resync does:
// a node that just became the VRRP master applies infra at once. It never
// blocks; pokes made while one is pending are merged.
func (l *Loop) Poke() {
	select {
	case l.pokes() <- struct{}{}:
	default:
	}
}

func (l *Loop) pokes() chan struct{} {
	l.pokeOnce.Do(func() { l.poke = make(chan struct{}, 1) })
	return l.poke
}

// Run drives passes until ctx ends. It returns nil on cancellation.
func (l *Loop) Run(ctx context.Context) error {
	if l.Source == nil {
		return errors.New("reconcile: no source")
	}
	type next struct {
		rev Revision
		err error
	}
	revs := make(chan next)
	l.mu.Lock()
	l.infraQ = make(chan infraJob, 1)
	l.mu.Unlock()
	var workers sync.WaitGroup
	defer workers.Wait()
	if l.Infra != nil {
		workers.Go(func() { l.infraWorker(ctx) })
	}
	// The last applied commit serves first, before any fetch: a branch
	// tip that is refused, a remote that is down or a full disk cannot
	// keep a restarted node from serving.
	l.restore(ctx)
	go func() { // the only reader of Source
		for {
			r, err := l.Source.Next(ctx)
			if ctx.Err() != nil {
				return
			}
			select {
			case revs <- next{r, err}:
			case <-ctx.Done():
				return
			}
		}
	}()
	var resync <-chan time.Time
	if l.Resync > 0 {
		t := time.NewTicker(l.Resync)
		defer t.Stop()
		resync = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-revs:
			l.Pass(ctx, n.rev, n.err)
		case <-resync:
			l.again(ctx, TriggerResync)
		case <-l.pokes():
			l.again(ctx, TriggerPoke)
		}
	}
}

type infraJob struct {
	cfg    infra.Config
	leader Leader // who leads, as the commit says; asked again when the job runs
	commit string
}

// errQueued says a step was handed to a worker.
var errQueued = errors.New("queued")

func (l *Loop) infraQueue() chan infraJob {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.infraQ
}

// infraWorker applies infra configs one at a time, always the newest.
func (l *Loop) infraWorker(ctx context.Context) {
	q := l.infraQueue()
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-q:
			// Leadership as it is now, not as it was when the pass queued
			// the job: a node that became the VRRP master meanwhile leads
			// this job, and the log says so.
			lead := l.leads(j.leader)
			err := l.Infra.Apply(ctx, j.cfg, lead)
			switch {
			case ctx.Err() != nil:
				return
			case err != nil:
				l.setCondition("infra", CondFailed, err.Error())
				l.logger().Warn("infra apply failed", "commit", short(j.commit), "leader", lead, "error", err)
			default:
				l.setCondition("infra", CondReady, "")
			}
		}
	}
}

// restore applies the record of State, if there is one it can trust.
func (l *Loop) restore(ctx context.Context) {
	if l.State == nil {
		return
	}
	log := l.logger()
	rec, err := l.State.Load()
	switch {
	case err != nil:
		l.recordError("load")
		l.setCondition("state", CondFailed, err.Error()+": ignored, the node fetches instead")
		log.Error("the last applied record cannot be used; fetching instead", "error", err)
		return
	case rec == nil:
		log.Info("no last applied commit recorded (first start): fetching")
		return
	}
	log.Info("applying the last applied commit before any fetch", "commit", short(rec.Commit), "appliedAt", rec.AppliedAt,
		"files", len(rec.Files))
	l.mu.Lock()
	l.recorded = rec.Commit
	l.mu.Unlock()
	rev := Revision{Commit: rec.Commit, Files: rec.Files, Signer: rec.Signer, Author: rec.Author, Message: rec.Message, Trigger: TriggerRestart}
	if res, err := l.Pass(ctx, rev, nil); res != ResultApplied && res != ResultUnchanged {
		l.setCondition("state", CondFailed, fmt.Sprintf("the recorded commit %s did not apply: %v", short(rec.Commit), err))
		return
	}
	l.setCondition("state", CondReady, fmt.Sprintf("restored commit %s, recorded %s", short(rec.Commit), rec.AppliedAt.UTC().Format(time.RFC3339)))
}

// record makes State hold rev, once every step applied it. It never fails
// the pass: a node serves its last applied commit whatever the state
// directory's condition, and a failed write is retried on the next pass.
func (l *Loop) record(rev Revision, files Files, log *slog.Logger) {
	if l.State == nil || l.DryRun || files == nil {
		return
	}
	l.mu.Lock()
	prev := l.recorded
	l.mu.Unlock()
	if rev.Commit == prev {
		return
	}
	err := l.State.Save(&Record{Commit: rev.Commit, Signer: rev.Signer, Author: rev.Author, Message: rev.Message,
		AppliedAt: time.Now().UTC(), Files: files})
	if err != nil {
		l.recordError("save")
		then := "a restart would apply the last commit fetched and valid instead"
		if prev != "" {
			then = "a restart would apply commit " + short(prev) + ", the last recorded"
		}
		l.setCondition("state", CondFailed, fmt.Sprintf("cannot record commit %s: %v: %s; retried on the next pass", short(rev.Commit), err, then))
		log.Warn("recording the last applied commit failed; serving it anyway", "error", err)
		return
	}
	l.mu.Lock()
	l.recorded = rev.Commit
	l.mu.Unlock()
	l.setCondition("state", CondReady, "commit "+short(rev.Commit)+" recorded")
}

func (l *Loop) recordError(op string) {
	if l.Metrics != nil {
		l.Metrics.stateErrors.WithLabelValues(op).Inc()
	}
}

// again re-runs a pass over the live revision, if there is one.
func (l *Loop) again(ctx context.Context, trigger string) {
	l.mu.Lock()
	rev := l.liveRev
	l.mu.Unlock()
	if rev.Files != nil {
		rev.Trigger = trigger
		l.Pass(ctx, rev, nil)
	}
}

// Pass runs one pass over a revision (or the error fetching it) and
// returns its result. Status and metrics are updated on every exit path.
func (l *Loop) Pass(ctx context.Context, rev Revision, fetchErr error) (res Result, err error) {
	l.mu.Lock()
	l.passes++
	id := l.passes
	l.mu.Unlock()
	log := l.logger().With("pass", id, "commit", short(rev.Commit), "trigger", rev.Trigger)
	start := time.Now()
	var plan Plan
	defer func() {
		if p := recover(); p != nil {
			res, err = ResultFailed, fmt.Errorf("reconcile pass panicked: %v", p)
		}
		l.report(rev, start, res, err, plan, log)
	}()

	// 1. fetch and verify happened in the source; its error decides.
	if fetchErr != nil {
		if IsTransient(fetchErr) {
			return ResultFetchErr, fetchErr
		}
		return ResultInvalid, fetchErr
	}
	// 2. load and validate: all-or-nothing.
	l.mu.Lock()
	local := l.Local
	l.mu.Unlock()
	desired, files, err := LoadWith(rev.Files, LoadOptions{Local: local})
	if err != nil {
		return ResultInvalid, err
	}
	fcfg, err := desired.FailoverFor(l.Node)
	if err != nil && l.Failover != nil {
		return ResultInvalid, err
	}
	// 3. plan against what is live.
	l.mu.Lock()
	live := l.live
	l.mu.Unlock()
	plan = Diff(live, desired)
	if l.DryRun {
		return ResultPlanned, nil
	}
	// 4. apply: routes first, then VRRP, then VMs. A VM clone can take
	// minutes and must never hold back routing (nor a node's start); a
	// route to a VM not yet up is covered by health checks, and a removed
	// VM (prune) is no longer routed to before it goes. Every step is tried
	// even after one fails.
	steps := []struct {
		name string
		run  func() error
	}{
		{"dataplane", func() error {
			if l.Dataplane == nil || (live != nil && live.Dataplane.Equal(desired.Dataplane)) {
				return nil
			}
			return l.Dataplane.Apply(ctx, desired.Dataplane)
		}},
		{"failover", func() error {
			if l.Failover == nil {
				return nil
			}
			if live != nil {
				if old, err := live.FailoverFor(l.Node); err == nil && old.Equal(fcfg) {
					return nil
				}
			}
			return l.Failover.Apply(ctx, fcfg)
		}},
		{"infra", func() error {
			if l.Infra == nil {
				return nil
			}
			if q := l.infraQueue(); q != nil {
				// Run's worker applies it: a clone taking minutes must not
				// hold back the next commit's routes.
				select {
				case <-q: // a stale pending job: this one supersedes it
				default:
				}
				q <- infraJob{cfg: desired.Infra, leader: desired.Edge.InfraLeader, commit: rev.Commit}
				return errQueued
			}
			return l.Infra.Apply(ctx, desired.Infra, l.leads(desired.Edge.InfraLeader))
		}},
	}
	var errs []error
	for _, s := range steps {
		switch err := s.run(); {
		case errors.Is(err, errQueued):
			l.setCondition(s.name, CondProgressing, "applying commit "+short(rev.Commit))
		case err != nil:
			errs = append(errs, &StepError{Step: s.name, Err: err})
			l.setCondition(s.name, CondFailed, err.Error())
		default:
			l.setCondition(s.name, CondReady, "")
		}
	}
	if len(errs) > 0 {
		return ResultFailed, errors.Join(errs...)
	}
	l.mu.Lock()
	l.live, l.liveRev = desired, rev
	l.mu.Unlock()
	l.record(rev, files, log)
	if plan.Empty() {
		return ResultUnchanged, nil
	}
	return ResultApplied, nil
}

// SetLocal replaces the node-local checks from the next pass on (a node
// config reloaded on SIGHUP). Safe while Run runs.
func (l *Loop) SetLocal(loc *Local) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.Local = loc
}

func (l *Loop) leads(ld Leader) bool {
	if l.IsLeader != nil {
		return l.IsLeader(ld)
	}
	return ld == (Leader{}) || ld.Node == l.Node
}

// Live returns the last desired state applied without error, or nil.
func (l *Loop) Live() *Desired {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live
}

func (l *Loop) logger() *slog.Logger {
	if l.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Logger
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// StepError says which step of a pass failed.
type StepError struct {
	Step string // fetch, verify, load, infra, dataplane, failover
	Err  error
}

// Error prefixes the step, unless the subsystem's error already says it
// ("dataplane: listener …"): one prefix, never "dataplane: dataplane:".
func (e *StepError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, e.Step+": ") {
		return msg
	}
	return e.Step + ": " + msg
}
func (e *StepError) Unwrap() error { return e.Err }

// IsTransient reports whether retrying may help: an error anywhere in the
// chain with Transient() true (a remote unreachable, a Proxmox 5xx). A
// validation error is never transient.
func IsTransient(err error) bool {
	if _, ok := errors.AsType[Errors](err); ok {
		return false
	}
	if t, ok := errors.AsType[interface {
		error
		Transient() bool
	}](err); ok {
		return t.Transient()
	}
	return false
}
