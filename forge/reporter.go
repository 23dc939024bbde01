package forge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitedge/gitedge/internal/deliver"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the Reporter's collaborators.
type Options struct {
	// Logger gets a line for every status given up (Warn) and every
	// failed attempt (first one Warn, later ones Debug). Nil discards.
	Logger *slog.Logger
	// Registerer gets the metrics (MetricStatuses, MetricQueueLength).
	// Nil registers nothing.
	Registerer prometheus.Registerer
	// Client sends the requests. Nil uses http.DefaultTransport. Either way
	// the Reporter uses a copy that never follows redirects, so the token is
	// never sent anywhere but forge.api.
	Client *http.Client
	// Jitter returns a number in [0, 1) that spreads retries. Nil uses
	// math/rand/v2; tests fix it.
	Jitter func() float64
}

// Reporter posts this node's commit statuses to the forge. Report never
// blocks and never fails: statuses wait in a bounded queue (the latest
// state per commit wins) and Run posts them one at a time, retrying what
// may succeed later. It is a Task: Run until the node stops.
type Reporter struct {
	cfg    Config
	log    *slog.Logger
	client *http.Client
	m      *metrics
	jitter func() float64
	tok    atomic.Pointer[token] // replaced when a 401 finds a rotated token file

	notBefore time.Time // no request before: the forge asked to wait (Run's goroutine only)

	started atomic.Bool
	wake    chan struct{} // one slot: "the queue changed"

	mu        sync.Mutex
	queue     []*item          // oldest first
	byCommit  map[string]*item // the queued item of each commit
	posted    map[string]Posted
	order     []string // commits in posted, oldest first
	lastErr   string
	lastErrAt time.Time
	dropped   uint64
}

// item is one status waiting to be posted.
type item struct {
	commit string
	state  State
	desc   string // one line, cut to the forge's limit
}

// keepPosted is how many commits' last status the snapshot remembers.
const keepPosted = 32

// New checks cfg, reads the token file and returns a Reporter that posts
// once Run is called. Statuses reported before Run wait in the queue.
func New(cfg Config, opts Options) (*Reporter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	tok, err := readToken(cfg.TokenFile)
	if err != nil {
		return nil, err
	}
	r := &Reporter{
		cfg:      cfg,
		log:      opts.Logger,
		m:        newMetrics(opts.Registerer),
		jitter:   opts.Jitter,
		wake:     make(chan struct{}, 1),
		byCommit: make(map[string]*item),
		posted:   make(map[string]Posted),
	}
	r.tok.Store(&tok)
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("subsystem", "forge", "forge", string(cfg.Kind), "repository", cfg.Repository)
	if r.jitter == nil {
		r.jitter = rand.Float64
	}
	var c http.Client
	if opts.Client != nil {
		c = *opts.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	r.client = &c
	return r, nil
}

// String names the Reporter in errors and task lists; it holds no secret.
func (r *Reporter) String() string {
	if r == nil {
		return "forge (none)"
	}
	return fmt.Sprintf("forge %s %s (%s)", r.cfg.Kind, r.cfg.Repository, r.cfg.Context())
}

// Report queues the status of commit (its full hex id) and returns at once;
// a nil Reporter does nothing, so callers need no check when no forge is
// configured. description is the human text (Summarize makes one from an
// error); "" sends a default for the state. It is made one line and cut to
// the forge's limit at a character boundary.
//
// Report is idempotent: the state and description last posted for a commit
// are not posted again. A newer state of a commit replaces one still
// queued (pending then success in a burst posts success only). When the
// queue is full the oldest commit's status is dropped and counted.
func (r *Reporter) Report(commit string, state State, description string) {
	if r == nil {
		return
	}
	if !isCommitID(commit) || !state.valid() {
		r.log.Error("forge status not queued: bad commit id or state (a bug in the caller)", "commit", commit, "state", string(state))
		return
	}
	if description == "" {
		description = state.defaultDescription()
	}
	it := &item{commit: commit, state: state, desc: deliver.Cut(r.tok.Load().scrub(description), r.cfg.DescriptionLimit())}

	r.mu.Lock()
	if q, ok := r.byCommit[commit]; ok {
		q.state, q.desc = it.state, it.desc
		r.m.statuses.WithLabelValues(string(r.cfg.Kind), ResultCoalesced).Inc()
		r.mu.Unlock()
		return
	}
	if p, ok := r.posted[commit]; ok && p.State == state && p.Description == it.desc {
		r.mu.Unlock()
		return
	}
	if len(r.queue) >= r.cfg.QueueSize {
		old := r.queue[0]
		r.queue = slices.Delete(r.queue, 0, 1)
		delete(r.byCommit, old.commit)
		r.m.statuses.WithLabelValues(string(r.cfg.Kind), ResultDropped).Inc()
		r.dropped++
		if d := r.dropped; d&(d-1) == 0 { // 1st, 2nd, 4th, 8th…: a flood logs a few lines
			r.log.Warn("forge status dropped: queue full", "commit", old.commit, "state", string(old.state),
				"queueSize", r.cfg.QueueSize, "droppedSinceStart", d)
		}
	}
	r.queue = append(r.queue, it)
	r.byCommit[commit] = it
	r.m.queue.Set(float64(len(r.queue)))
	r.mu.Unlock()

	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// Run posts queued statuses until ctx ends, then returns nil; statuses
// still queued are abandoned. Posting never returns an error: failures are
// logged, counted and shown in Snapshot. Run may be called once.
func (r *Reporter) Run(ctx context.Context) error {
	if r == nil {
		return nil
	}
	if !r.started.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: Run called twice", r)
	}
	for {
		it, ok := r.pop()
		if !ok {
			select {
			case <-ctx.Done():
				return nil
			case <-r.wake:
				continue
			}
		}
		r.deliver(ctx, it)
		if ctx.Err() != nil {
			return nil
		}
	}
}

// pop takes the oldest queued status.
func (r *Reporter) pop() (*item, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) == 0 {
		return nil, false
	}
	it := r.queue[0]
	r.queue = slices.Delete(r.queue, 0, 1)
	delete(r.byCommit, it.commit)
	r.m.queue.Set(float64(len(r.queue)))
	return it, true
}

// takeNewer takes the queued status of commit, reported while an earlier
// one was being retried: the latest state wins.
func (r *Reporter) takeNewer(commit string) (*item, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	it, ok := r.byCommit[commit]
	if !ok {
		return nil, false
	}
	r.queue = slices.DeleteFunc(r.queue, func(q *item) bool { return q == it })
	delete(r.byCommit, commit)
	r.m.queue.Set(float64(len(r.queue)))
	r.m.statuses.WithLabelValues(string(r.cfg.Kind), ResultCoalesced).Inc()
	return it, true
}

// deliver posts one status, retrying while it may succeed later.
func (r *Reporter) deliver(ctx context.Context, it *item) {
	start := time.Now()
	attempt := 0
	reread := false
	for {
		if r.alreadyPosted(it) {
			return
		}
		// The forge asked every client to wait (rate limit): no request
		// before then, whichever status is next; GitHub may ban
		// integrations that keep going.
		if d := time.Until(r.notBefore); d > 0 && !sleep(ctx, d) {
			return
		}
		o := r.attempt(ctx, it)
		if ctx.Err() != nil {
			return // the node is stopping; not a forge failure
		}
		switch o.v {
		case posted, noop:
			r.record(it, o)
			return
		case reauth:
			// The token may have been rotated: read the file again and,
			// if it changed, try once more at once.
			if !reread && r.reloadToken() {
				reread = true
				continue
			}
			r.giveUp(it, o)
			return
		case fail:
			r.giveUp(it, o)
			return
		}
		// retry
		r.m.statuses.WithLabelValues(string(r.cfg.Kind), ResultRetry).Inc()
		wait := o.wait
		if wait > 0 {
			r.notBefore = time.Now().Add(wait)
		} else {
			wait = deliver.Backoff(attempt, r.cfg.RetryMin, r.cfg.RetryMax, r.jitter)
		}
		attempt++
		if time.Since(start)+wait > r.cfg.GiveUpAfter {
			o.err = fmt.Errorf("%w; giving up after %d attempts in %s", o.err, attempt, time.Since(start).Round(time.Second))
			r.giveUp(it, o)
			return
		}
		r.setLastError(it, o.err)
		level := slog.LevelDebug
		if attempt == 1 {
			level = slog.LevelWarn
		}
		r.log.Log(ctx, level, "forge status not posted; retrying", "commit", it.commit, "state", string(it.state),
			"attempt", attempt, "retryIn", wait.Round(time.Millisecond), "err", o.err)
		if !sleep(ctx, wait) {
			return
		}
		if newer, ok := r.takeNewer(it.commit); ok {
			it = newer
		}
	}
}

// sleep waits d unless ctx ends first; it reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// attempt sends one request and classifies the answer.
func (r *Reporter) attempt(ctx context.Context, it *item) outcome {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	tok := r.tok.Load()
	req, err := newRequest(ctx, r.cfg, *tok, *it)
	if err != nil {
		return outcome{v: fail, err: fmt.Errorf("building the request: %v", tok.scrub(err.Error()))}
	}
	resp, err := r.client.Do(req)
	if err != nil {
		// *url.Error repeats the URL; keep only the cause, without the token.
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap()
		}
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			msg = fmt.Sprintf("no answer within %s", r.cfg.Timeout)
		}
		return outcome{v: retry, err: errors.New(tok.scrub(msg))}
	}
	defer resp.Body.Close()
	body := readBody(resp)
	o := classify(r.cfg.Kind, resp, body, time.Now())
	if o.err != nil {
		o.err = errors.New(tok.scrub(o.err.Error()))
	}
	return o
}

// reloadToken reads the token file again and reports whether the token
// changed. A file that became unreadable keeps the old token.
func (r *Reporter) reloadToken() bool {
	t, err := readToken(r.cfg.TokenFile)
	if err != nil {
		r.log.Warn("forge token not re-read; keeping the previous one", "err", err)
		return false
	}
	if t.equal(*r.tok.Load()) {
		return false
	}
	r.tok.Store(&t)
	r.log.Info("forge token re-read from forge.tokenFile after a 401", "file", r.cfg.TokenFile)
	return true
}

// alreadyPosted reports whether the forge already shows exactly it.
func (r *Reporter) alreadyPosted(it *item) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.posted[it.commit]
	return ok && p.State == it.state && p.Description == it.desc
}

// record remembers a posted status for the snapshot, counts and logs it
// (the log line last: whoever sees it sees the rest).
func (r *Reporter) record(it *item, o outcome) {
	result := ResultPosted
	if o.v == noop {
		result = ResultNoop
	}
	r.mu.Lock()
	if _, ok := r.posted[it.commit]; ok {
		r.order = slices.DeleteFunc(r.order, func(c string) bool { return c == it.commit })
	}
	r.posted[it.commit] = Posted{
		Commit: it.commit, State: it.state, ForgeState: forgeState(r.cfg.Kind, it.state),
		Description: it.desc, At: time.Now(),
	}
	r.order = append(r.order, it.commit)
	// The forge takes statuses again: an earlier failure is history (the
	// log and gitedge_forge_statuses_total{result="failed"} keep it), not
	// a problem to show on the status page.
	r.lastErr, r.lastErrAt = "", time.Time{}
	if len(r.order) > keepPosted {
		delete(r.posted, r.order[0])
		r.order = slices.Delete(r.order, 0, 1)
	}
	r.mu.Unlock()
	r.m.statuses.WithLabelValues(string(r.cfg.Kind), result).Inc()
	r.log.Debug("forge status posted", "commit", it.commit, "state", string(it.state), "result", result)
}

// giveUp drops a status that will not be posted, with a metric and a log
// line (last).
func (r *Reporter) giveUp(it *item, o outcome) {
	r.setLastError(it, o.err)
	r.m.statuses.WithLabelValues(string(r.cfg.Kind), ResultFailed).Inc()
	r.log.Warn("forge status given up", "commit", it.commit, "state", string(it.state), "code", o.code, "err", o.err)
}

func (r *Reporter) setLastError(it *item, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastErr = fmt.Sprintf("%s for %s: %v", it.state, shortID(it.commit), err)
	r.lastErrAt = time.Now()
}

// Snapshot is the Reporter's state for the node's /status.
type Snapshot struct {
	Forge      Kind   `json:"forge"`
	Repository string `json:"repository"`
	Context    string `json:"context"`
	// QueueLength is the number of commits whose status waits to be posted.
	QueueLength int `json:"queueLength"`
	// Statuses is the last status posted for each recent commit, newest
	// first (at most 32).
	Statuses []Posted `json:"statuses"`
	// LastError is the last failed attempt and LastErrorAt when it
	// failed; both are cleared when a later status is posted, so a
	// LastError means the forge is failing now. It never holds the token.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Posted is a status the forge accepted.
type Posted struct {
	Commit string `json:"commit"`
	State  State  `json:"state"`
	// ForgeState is the state as sent (GitLab: running, failed).
	ForgeState  string    `json:"forgeState"`
	Description string    `json:"description"`
	At          time.Time `json:"at"`
}

// Snapshot returns the current state; a nil Reporter gives the zero value.
func (r *Reporter) Snapshot() Snapshot {
	if r == nil {
		return Snapshot{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Snapshot{
		Forge: r.cfg.Kind, Repository: r.cfg.Repository, Context: r.cfg.Context(),
		QueueLength: len(r.queue), Statuses: make([]Posted, 0, len(r.order)),
		LastError: r.lastErr, LastErrorAt: r.lastErrAt,
	}
	for i := len(r.order) - 1; i >= 0; i-- {
		s.Statuses = append(s.Statuses, r.posted[r.order[i]])
	}
	return s
}

// isCommitID accepts a full SHA-1 (40) or SHA-256 (64) object id in lower
// case hex, as git prints it.
func isCommitID(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

func shortID(s string) string { return s[:min(len(s), 12)] }
