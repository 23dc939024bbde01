package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"time"

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
// revision to look at (or a fetch failed) and returns it. An error's kind
// (IsTransient) says whether the source retries by itself (transient) or
// the head is refused until it moves (terminal).
type Source interface {
	Next(ctx context.Context) (Revision, error)
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
	BGP       BGPApplier
	// Leadership decides whether this node applies infra changes, asked
	// before every write. Its zero value leads when the Edge names no
	// leader or names this node.
	Leadership Leadership
	// Resync re-applies what the node runs this often (the live commit, or
	// a newer one still being retried), so drift made by hand (a VM edited
	// in Proxmox) is set back without a new commit. 0 disables it.
	Resync time.Duration
	// Retry paces the retries of a step that failed transiently (a pass,
	// or an infra apply); a terminal failure is not retried.
	Retry Backoff
	// DryRun stops every pass after plan.
	DryRun bool
	// State keeps the last applied commit across restarts (guarantee 1):
	// Run applies its record before the first fetch, and every pass that
	// applies a commit not yet recorded records it, once every step took
	// it. A failure to record is reported (condition "state", metric, log)
	// and never fails the pass. nil: nothing is kept.
	State RecordStore
	// Local adds the node-local checks to every commit's validation (its
	// name in spec.nodes, its admin and webhook ports). nil: the
	// repository alone. While Run runs, change it with SetLocal only.
	Local   *Local
	Logger  *slog.Logger // nil discards; the loop adds subsystem=reconcile
	Metrics *Metrics     // nil: no metrics
	// Observer hears what happens to each commit (fetched, applied,
	// refused, apply failed) and each infra pass: the forge's commit
	// statuses and the notifications hang here. nil: nobody.
	Observer Observer

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
	ResultApplied   Result = "applied"     // a new state was applied everywhere
	ResultUnchanged Result = "unchanged"   // the revision plans nothing; subsystems re-checked
	ResultPlanned   Result = "planned"     // dry run: stopped after plan
	ResultInvalid   Result = "invalid"     // refused (verify, parse, validate, or a terminal fetch error): waits for a new head
	ResultFailed    Result = "failed"      // a subsystem failed to apply: retried with backoff when transient
	ResultFetchErr  Result = "fetch-error" // the source failed transiently and retries by itself
)

// Triggers the loop makes itself: re-applying what the node runs
// (resync, poke), retrying a pass that failed transiently (or a commit
// refused for want of a secret on this node, at a resync or poke), and
// applying the last applied record at start.
const (
	TriggerResync  = "resync"
	TriggerPoke    = "poke"
	TriggerRetry   = "retry"
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
	var r retrier
	defer r.stop()
	// The last applied commit serves first, before any fetch: a branch
	// tip that is refused, a remote that is down or a full disk cannot
	// keep a restarted node from serving.
	if rev, res, err := l.restore(ctx); res != "" {
		l.after(&r, rev, res, err)
	}
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
	// refused is the newest revision, refused for a problem of the node
	// (a secret it could not resolve): once the node is fixed it applies,
	// so resyncs and pokes (a reload) try it again before the live one.
	var refused *Revision
	// failed is the newest revision whose apply failed for good (a missing
	// interface, a capability): not retried by itself, but a poke (SIGHUP,
	// after the operator fixed the node) tries it again.
	var failed *Revision
	notice := func(rev Revision, res Result, err error) {
		refused, failed = nil, nil
		switch errs, ok := errors.AsType[Errors](err); {
		case ok && res == ResultInvalid && errs.NodeLocal():
			refused = &rev
		case res == ResultFailed && !IsTransient(err):
			failed = &rev
		}
	}
	again := func(trigger string) {
		if failed != nil && trigger == TriggerPoke {
			rev := *failed
			rev.Trigger = TriggerRetry
			res, err := l.Pass(ctx, rev, nil)
			l.after(&r, rev, res, err)
			notice(rev, res, err)
			return
		}
		if refused != nil {
			// A new attempt of the newest head, reported as one (not as a
			// resync of the live commit).
			rev := *refused
			rev.Trigger = TriggerRetry
			res, err := l.Pass(ctx, rev, nil)
			l.after(&r, rev, res, err)
			if notice(rev, res, err); refused == nil {
				return
			}
		}
		// What the node should run: the revision still being retried, or
		// the live one.
		rev, ok := r.pending()
		if ok {
			// Tried now rather than at its backoff, and reported as the
			// retry it is: a newer commit that applies becomes live, not
			// a resync of the old one.
			rev.Trigger = TriggerRetry
		} else {
			l.mu.Lock()
			rev = l.liveRev
			l.mu.Unlock()
			rev.Trigger = trigger
		}
		if rev.Files == nil {
			return
		}
		res, err := l.Pass(ctx, rev, nil)
		l.after(&r, rev, res, err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case n := <-revs:
			res, err := l.Pass(ctx, n.rev, n.err)
			l.after(&r, n.rev, res, err)
			if n.err == nil {
				notice(n.rev, res, err)
			}
		case <-resync:
			again(TriggerResync)
		case <-l.pokes():
			again(TriggerPoke)
		case <-r.c:
			again(TriggerRetry)
		}
	}
}

// retrier holds the revision whose pass failed transiently, and the timer
// of its next try. Only Run's goroutine touches it.
type retrier struct {
	rev   *Revision
	n     int // failures in a row
	timer *time.Timer
	c     <-chan time.Time // nil while nothing is to retry
}

func (r *retrier) pending() (Revision, bool) {
	if r.rev == nil {
		return Revision{}, false
	}
	return *r.rev, true
}

func (r *retrier) stop() {
	if r.timer != nil {
		r.timer.Stop()
	}
	r.rev, r.n, r.c = nil, 0, nil
}

// after decides what follows a pass: a transient failure is tried again
// after a backoff (a newer revision supersedes it); anything else ends the
// retries. A fetch error is retried by the source itself.
func (l *Loop) after(r *retrier, rev Revision, res Result, err error) {
	if res != ResultFailed || !IsTransient(err) {
		if res != ResultFetchErr {
			r.stop()
		}
		return
	}
	r.n++
	rev.Trigger = ""
	r.rev = &rev
	d := l.Retry.Delay(r.n)
	if r.timer == nil {
		r.timer = time.NewTimer(d)
	} else {
		r.timer.Reset(d)
	}
	r.c = r.timer.C
	l.logger().Info("retrying the pass", "commit", short(rev.Commit), "in", d.Round(time.Millisecond), "failures", r.n)
}

type infraJob struct {
	cfg    infra.Config
	leader Leader // who leads, as the commit says
	commit string
}

// errQueued says a step was handed to a worker.
var errQueued = errors.New("queued")

func (l *Loop) infraQueue() chan infraJob {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.infraQ
}

// infraWorker applies infra configs one at a time, always the newest. A
// transient failure is retried with backoff until a newer job comes; a
// terminal one waits for the next job (a new commit, a resync, a poke).
func (l *Loop) infraWorker(ctx context.Context) {
	q := l.infraQueue()
	var (
		retry    <-chan time.Time
		timer    *time.Timer
		failures int
		last     infraJob
	)
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		var j infraJob
		select {
		case <-ctx.Done():
			return
		case j = <-q:
			failures = 0
		case <-retry:
			j = last
		}
		retry, last = nil, j
		res, err := l.Infra.Apply(ctx, j.cfg, l.leads(j.leader))
		if ctx.Err() != nil {
			return
		}
		l.observe(Event{Kind: EventInfra, Rev: Revision{Commit: j.commit}, Err: err, Infra: &res})
		switch {
		case err == nil:
			l.setCondition("infra", CondReady, "")
			continue
		}
		// res.Leader is the leadership the pass ran with, asked when it
		// ran: a node that became the VRRP master while the job waited
		// leads it, and the log says so.
		log := l.logger().With("commit", short(j.commit), "leader", res.Leader)
		if !IsTransient(err) {
			l.setCondition("infra", CondStalled, condMessage("infra", err)+" (needs a change; not retried before the next commit or resync)")
			log.Warn("infra apply failed", "error", err)
			continue
		}
		failures++
		d := l.Retry.Delay(failures)
		if timer == nil {
			timer = time.NewTimer(d)
		} else {
			timer.Reset(d)
		}
		retry = timer.C
		l.setCondition("infra", CondFailed, condMessage("infra", err)+" (retrying)")
		log.Warn("infra apply failed", "error", err, "retryIn", d.Round(time.Millisecond))
	}
}

// restore applies the record of State, if there is one it can trust, and
// returns that pass (res "" when it made none).
func (l *Loop) restore(ctx context.Context) (rev Revision, res Result, err error) {
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
		return rev, "", nil
	case rec == nil:
		log.Info("no last applied commit recorded (first start): fetching")
		return
	}
	log.Info("applying the last applied commit before any fetch", "commit", short(rec.Commit), "appliedAt", rec.AppliedAt,
		"files", len(rec.Files))
	l.mu.Lock()
	l.recorded = rec.Commit
	l.mu.Unlock()
	rev = Revision{Commit: rec.Commit, Files: rec.Files, Signer: rec.Signer, Author: rec.Author, Message: rec.Message, Trigger: TriggerRestart}
	if res, err = l.Pass(ctx, rev, nil); res != ResultApplied && res != ResultUnchanged {
		l.setCondition("state", CondFailed, fmt.Sprintf("the recorded commit %s did not apply: %v", short(rec.Commit), err))
		return rev, res, err
	}
	l.setCondition("state", CondReady, fmt.Sprintf("restored commit %s, recorded %s", short(rec.Commit), rec.AppliedAt.UTC().Format(time.RFC3339)))
	return rev, res, err
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
	var queued *infraJob // the infra step's job for the worker
	defer func() {
		if p := recover(); p != nil {
			res, err = ResultFailed, fmt.Errorf("reconcile pass panicked: %v", p)
		}
		l.report(rev, start, res, err, plan, log)
		if e, ok := passEvent(rev, res, err, plan); ok {
			l.observe(e)
		}
		if queued != nil {
			q := l.infraQueue()
			select {
			case <-q: // a stale pending job: this one supersedes it
			default:
			}
			q <- *queued
		}
	}()

	// 1. fetch and verify happened in the source; its error decides.
	if fetchErr != nil {
		if IsTransient(fetchErr) {
			return ResultFetchErr, fetchErr
		}
		return ResultInvalid, fetchErr
	}
	if fetched(rev) {
		l.observe(Event{Kind: EventFetched, Rev: rev})
	}
	// 2. load and validate: all-or-nothing.
	l.mu.Lock()
	local := l.Local
	l.mu.Unlock()
	desired, files, err := LoadWith(rev.Files, LoadOptions{Local: local})
	l.noteSecrets(rev, local, desired, err)
	if err != nil {
		return ResultInvalid, err
	}
	fcfg, err := desired.FailoverFor(l.Node)
	if err != nil && l.Failover != nil {
		return ResultInvalid, err
	}
	bcfg, err := desired.BGPFor(l.Node)
	if err != nil && l.BGP != nil {
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
	// 4. apply: routes first, then VRRP, then BGP, then VMs. BGP comes
	// after the proxy: a commit adding a listener on a new prefix has the
	// listener open (the proxy binds with IP_FREEBIND, so it needs no
	// local address first) before the prefix is made local and announced,
	// and the speaker holds every announcement until the proxy is ready.
	// A VM clone can take
	// minutes and must never hold back routing (nor a node's start); a
	// route to a VM not yet up is covered by health checks, and a removed
	// VM (prune) is no longer routed to before it goes. Every step is tried
	// even after one fails.
	// A subsystem this process does not run has no step and no condition.
	steps := []struct {
		name string
		on   bool
		run  func() error
	}{
		{"dataplane", l.Dataplane != nil, func() error {
			if live != nil && live.Dataplane.Equal(desired.Dataplane) {
				return nil
			}
			return l.Dataplane.Apply(ctx, desired.Dataplane)
		}},
		{"failover", l.Failover != nil, func() error {
			if live != nil {
				if old, err := live.FailoverFor(l.Node); err == nil && old.Equal(fcfg) {
					return nil
				}
			}
			return l.Failover.Apply(ctx, fcfg)
		}},
		{"bgp", l.BGP != nil, func() error {
			// Applied on every pass, unchanged or not: Apply is
			// convergent, so a resync puts back a local route or a
			// session removed by hand.
			return l.BGP.Apply(ctx, bcfg)
		}},
		{"infra", l.Infra != nil, func() error {
			if q := l.infraQueue(); q != nil {
				// Run's worker applies it: a clone taking minutes must not
				// hold back the next commit's routes.
				// Said before the job is handed over: the worker's outcome
				// must not be overwritten by it.
				l.setCondition("infra", CondProgressing, "applying commit "+short(rev.Commit))
				// Handed over once the pass is reported, so the Observer
				// hears the pass before the worker's outcome.
				queued = &infraJob{cfg: desired.Infra, leader: desired.Edge.InfraLeader, commit: rev.Commit}
				return errQueued
			}
			_, err := l.Infra.Apply(ctx, desired.Infra, l.leads(desired.Edge.InfraLeader))
			return err
		}},
	}
	// A pass over the live commit again (resync, poke) must not say Ready
	// over the failure of a newer commit that did not apply.
	l.mu.Lock()
	la := l.status.LastAttempt
	keepFailure := (rev.Trigger == TriggerResync || rev.Trigger == TriggerPoke) &&
		la != nil && la.Result == ResultFailed && la.Commit != rev.Commit
	l.mu.Unlock()
	var errs stepErrors
	for _, s := range steps {
		if !s.on {
			continue
		}
		switch err := s.run(); {
		case errors.Is(err, errQueued):
			// Progressing, said by the step itself.
		case err != nil:
			errs = append(errs, &StepError{Step: s.name, Err: err})
			l.setCondition(s.name, condition(err), condMessage(s.name, err))
		case keepFailure:
		default:
			l.setCondition(s.name, CondReady, "")
		}
	}
	if len(errs) > 0 {
		return ResultFailed, errs
	}
	l.mu.Lock()
	l.live, l.liveRev = desired, rev
	l.status.Secrets = desired.Secrets
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

// leads answers, whenever asked, whether this node applies infra changes
// for the leader ld names.
func (l *Loop) leads(ld Leader) func() bool {
	return func() bool { return l.Leadership.Leads(l.Node, ld) }
}

// Live returns the last desired state applied without error, or nil.
func (l *Loop) Live() *Desired {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live
}

// logger is Logger, naming the loop as the subsystems name themselves.
func (l *Loop) logger() *slog.Logger {
	if l.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Logger.With("subsystem", "reconcile")
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
