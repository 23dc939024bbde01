package gitsource

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the collaborators of a source; all optional.
type Options struct {
	// Logger receives state changes at Info and failures at Warn; nil
	// discards.
	Logger *slog.Logger
	// Registry receives the metrics; nil keeps them unregistered.
	Registry prometheus.Registerer
}

// lastRef records, inside the cache, the commit last handed over, so the
// force-push policy holds across restarts.
const lastRef = plumbing.ReferenceName("refs/gitedge/last")

// objectCacheSize bounds go-git's decoded-object cache (its default is 96
// MiB, which alone would break the node's memory budget). Blobs are read
// once per change and kept by the source itself; the cache only needs to
// hold the trees walked for one revision.
const objectCacheSize = 4 * cache.MiByte

// maxPacks is how many pack files the cache may collect (one per
// incremental fetch, each an open descriptor and an index) before it is
// fetched afresh into one. go-git's own repack needs far more memory than a
// fresh fetch (measured: 145 MiB peak for the 10,000-file benchmark
// repository), so the cache is rebuilt instead, at a moment when the remote
// has just answered. Under ForcePushFollow the rebuild fetches depth 1: a
// full-history fetch costs memory in proportion to history (go-git caches
// delta bases while indexing), and following needs only the head; under
// ForcePushRefuse the whole history is fetched again, as it is needed to
// prove fast-forwards.
const maxPacks = 50

// Git follows a git remote. Next is meant for one caller (the reconcile
// loop) and must not be called concurrently; Trigger and Queue are safe
// from any goroutine.
type Git struct {
	cfg   Config
	url   string // as given to go-git: absolute for a plain path
	disp  string // for logs and errors: no credentials
	dir   string // the bare cache repository
	log   *slog.Logger
	m     *sourceMetrics
	queue *Queue

	// Owned by the Next caller.
	started      bool
	handedOver   bool
	storage      *filesystem.Storage
	repo         *git.Repository
	last         string // commit last handed over (persisted in lastRef)
	lastObserved string // head last handed over or refused: skip until it moves
	prevFiles    map[string]blobData
	failures     int
	maxPacks     int
	compacting   bool            // the next fetch rebuilds the cache after compaction
	suspect      bool            // the last fetch failed for no network reason
	busy         <-chan struct{} // a fetch left behind at its deadline still uses the cache
	busySince    time.Time

	retryMu sync.Mutex
	retry   *time.Timer

	// observed mirrors lastObserved for other goroutines (Observed).
	observed atomic.Pointer[string]
}

// Observed reports whether commit is the head this source last handed
// over or refused: a relay naming it has nothing new to say. Safe for
// concurrent use (the webhook's relay endpoint asks it).
func (g *Git) Observed(commit string) bool {
	p := g.observed.Load()
	return p != nil && *p == commit && commit != ""
}

// setObserved records the head last handed over or refused.
func (g *Git) setObserved(head string) {
	g.lastObserved = head
	g.observed.Store(&head)
}

type blobData struct {
	hash plumbing.Hash
	data []byte
}

// New returns a source following cfg's remote. It does no I/O beyond
// creating cfg.StateDir (a full or read-only one is left to the first
// look to report); the first Next fetches.
func New(cfg Config, opts Options) (*Git, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("gitsource: %w", err)
	}
	cfg = cfg.WithDefaults()
	u, err := normalizeURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("gitsource: source.url: %w", err)
	}
	key := sha256.Sum256([]byte(u + "\x00" + cfg.ref() + "\x00" + cfg.Commit))
	dir := filepath.Join(cfg.StateDir, "gitsource", hex.EncodeToString(key[:8]))
	// A full or read-only state directory must not keep the node from
	// starting: the first look reports it (and serves what the cache
	// holds). Anything else (permissions, a file in the way) is a
	// configuration error, told at once.
	mkErr := os.MkdirAll(filepath.Dir(dir), 0o750)
	if reason, _ := diskReason(mkErr); mkErr != nil && reason == "" {
		return nil, fmt.Errorf("gitsource: state directory: %w", mkErr)
	}
	g := &Git{
		cfg:      cfg,
		url:      u,
		disp:     displayURL(u),
		dir:      dir,
		log:      opts.Logger,
		m:        newSourceMetrics(opts.Registry),
		queue:    NewQueue(opts.Registry),
		maxPacks: maxPacks,
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.log = g.log.With("subsystem", "gitsource", "source", g.disp, "ref", cmp.Or(cfg.ref(), cfg.Commit))
	return g, nil
}

// Trigger asks for a look at the remote; see Queue.Poke.
func (g *Git) Trigger(t Trigger) { g.queue.Poke(t) }

// CacheDir is the bare repository holding the local cache.
func (g *Git) CacheDir() string { return g.dir }

// Next blocks until a trigger finds a head not yet handed over (or
// refused), and returns it as a Revision. The first call looks at once.
// Triggers that find the head unchanged are absorbed (counted in
// MetricFetchSkipped). A failed look returns an *Error; after a transient
// one a retry is scheduled with jittered backoff, after a terminal one the
// same head is not looked at again. When ctx ends, Next returns ctx.Err().
//
// At start, if the remote cannot be reached but the cache holds the commit
// last handed over, that commit is verified and handed over again (the
// last known good survives a restart); the retry is already scheduled.
func (g *Git) Next(ctx context.Context) (Revision, error) {
	for {
		t, err := g.wait(ctx)
		if err != nil {
			return Revision{}, err
		}
		start := time.Now()
		rev, changed, err := g.look(ctx, t)
		if err != nil {
			if ctx.Err() != nil {
				return Revision{}, ctx.Err()
			}
			g.failed(err)
			if rev.Commit == "" {
				// What was looked at and why, for the loop's log and
				// status: the refused commit when one was seen.
				failed := Revision{Trigger: t}
				if e, ok := errors.AsType[*Error](err); ok {
					failed.Commit = e.Commit
				}
				return failed, err
			}
			// The cached last good commit, handed over despite err.
			changed = true
		} else {
			g.succeeded()
		}
		if !changed {
			continue
		}
		g.m.revisions.Inc()
		g.log.Info("revision ready", "commit", short(rev.Commit), "trigger", string(rev.Trigger.Kind),
			"detail", rev.Trigger.Detail, "signer", signerName(rev.Signer), "forcePushed", rev.ForcePushed,
			"duration", time.Since(start).Round(time.Millisecond))
		return rev, nil
	}
}

func signerName(s *Signer) string {
	if s == nil {
		return ""
	}
	return s.KeyID + " " + s.Identity
}

func (g *Git) wait(ctx context.Context) (Trigger, error) {
	if !g.started {
		g.started = true
		return Trigger{Kind: TriggerStart, At: time.Now()}, nil
	}
	select {
	case <-ctx.Done():
		return Trigger{}, ctx.Err()
	case t := <-g.queue.C():
		return t, nil
	}
}

// failed records err and, when retrying can help, schedules a retry.
func (g *Git) failed(err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Step: StepFetch, Reason: ReasonUnreachable, Source: g.disp, Err: err}
	}
	g.m.errors.WithLabelValues(string(e.Step), e.Reason).Inc()
	if !e.Transient() {
		if e.Commit != "" {
			g.setObserved(e.Commit)
			g.log.Warn("revision refused", "commit", short(e.Commit), "step", string(e.Step), "reason", e.Reason, "err", err)
			return
		}
		g.log.Warn("look failed; not retried before the next trigger", "step", string(e.Step), "reason", e.Reason, "err", err)
		return
	}
	g.failures++
	d := g.cfg.RetryMin << min(g.failures-1, 20)
	d = min(d, g.cfg.RetryMax)
	d = d/2 + rand.N(d/2+1) // jitter, so nodes do not retry in lockstep
	g.log.Warn("look failed, will retry", "step", string(e.Step), "reason", e.Reason, "retryIn", d.Round(time.Millisecond), "err", err)
	attempt := g.failures
	g.retryMu.Lock()
	defer g.retryMu.Unlock()
	if g.retry != nil {
		g.retry.Stop()
	}
	g.retry = time.AfterFunc(d, func() {
		g.queue.Poke(Trigger{Kind: TriggerRetry, Detail: fmt.Sprintf("attempt %d", attempt+1)})
	})
}

func (g *Git) succeeded() {
	g.failures = 0
	g.retryMu.Lock()
	defer g.retryMu.Unlock()
	if g.retry != nil {
		g.retry.Stop()
		g.retry = nil
	}
}

// look performs one level-based look: list the remote head, and only when
// it moved fetch, check and read it.
func (g *Git) look(ctx context.Context, t Trigger) (Revision, bool, error) {
	if g.cfg.Commit != "" {
		if g.lastObserved == g.cfg.Commit {
			g.m.skipped.Inc()
			return Revision{}, false, nil
		}
		rev, err := g.load(ctx, g.cfg.Commit, t)
		if err != nil {
			return g.fallback(t, err)
		}
		return rev, true, nil
	}
	head, err := g.lsRemote(ctx)
	if err != nil {
		return g.fallback(t, err)
	}
	if head == g.lastObserved {
		g.m.skipped.Inc()
		g.log.Debug("head unchanged, nothing fetched", "commit", short(head), "trigger", string(t.Kind))
		return Revision{}, false, nil
	}
	rev, err := g.load(ctx, head, t)
	if err != nil {
		return g.fallback(t, err)
	}
	return rev, true, nil
}

// fallback is what a look that failed with err yields: nothing, except
// before anything was handed over since start, when the cache's last good
// commit is handed over with err as its Stale cause.
func (g *Git) fallback(t Trigger, err error) (Revision, bool, error) {
	if !g.handedOver {
		if rev, ok := g.cachedLastGood(t, err); ok {
			return rev, true, err
		}
	}
	return Revision{}, false, err
}

// lsRemote asks the remote for the followed ref: one ref advertisement,
// independent of the cache.
func (g *Git) lsRemote(ctx context.Context) (string, error) {
	auth, err := g.auth()
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{g.url}})
	var refs []*plumbing.Reference
	_, err = bounded(ctx, func() error { // nothing shared: a stuck listing may be left behind
		var err error
		refs, err = rem.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
		return err
	})
	if err != nil {
		g.m.refAds.WithLabelValues("error").Inc()
		return "", g.netError(err, "listing refs")
	}
	g.m.refAds.WithLabelValues("ok").Inc()
	want := g.cfg.ref()
	var direct, peeled string
	for _, r := range refs {
		switch r.Name().String() {
		case want:
			direct = r.Hash().String()
		case want + "^{}":
			peeled = r.Hash().String()
		}
	}
	if head := cmp.Or(peeled, direct); head != "" {
		return head, nil
	}
	return "", &Error{Step: StepFetch, Reason: ReasonNotFound, Source: g.disp,
		Err: fmt.Errorf("the remote has no %s (check source.branch / source.tag)", want)}
}

// netError types an error from talking to the remote.
func (g *Git) netError(err error, doing string) error {
	e := &Error{Step: StepFetch, Source: g.disp, Err: fmt.Errorf("%s: %w", doing, err)}
	msg := err.Error()
	switch {
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		strings.Contains(msg, "unable to authenticate"), strings.Contains(msg, "knownhosts"),
		strings.Contains(msg, "known_hosts"), strings.Contains(msg, "host key"):
		e.Reason = ReasonAuth
		e.Err = fmt.Errorf("%s: %w (check source.auth)", doing, err)
	case errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrEmptyRemoteRepository):
		e.Reason = ReasonNotFound
	default:
		e.Reason = ReasonUnreachable
	}
	return e
}

// load makes head available locally (fetching if needed), checks it and
// reads its files. An error that is not an *Error comes from the cache
// (a missing object, a corrupt pack): the cache is thrown away and the
// load tried once more from scratch.
func (g *Git) load(ctx context.Context, head string, t Trigger) (Revision, error) {
	if err := g.checkBusy(); err != nil {
		return Revision{}, err
	}
	if n := g.packCount(); n > g.maxPacks {
		g.wipe(fmt.Errorf("compacting: %d pack files", n))
		g.compacting = true
	}
	var err error
	for attempt := 0; attempt < 2; attempt++ {
		var repo *git.Repository
		repo, err = g.open()
		if err == nil {
			var rev Revision
			rev, err = g.loadFrom(ctx, repo, head, t, true)
			var typed *Error
			if err == nil || errors.As(err, &typed) {
				return rev, err
			}
		}
		// A full or read-only state directory is not a broken cache:
		// throwing the cache away would lose the commit served meanwhile.
		if e := g.stateDirError(err, "updating the cache"); e != nil {
			return Revision{}, e
		}
		g.wipe(err)
	}
	return Revision{}, &Error{Step: StepFetch, Reason: ReasonCache, Source: g.disp, Commit: head,
		Err: fmt.Errorf("cache %s is unusable even after fetching it again: %w", g.dir, err)}
}

// loadFrom is one attempt of load. With mayFetch false it only uses what
// the cache holds.
func (g *Git) loadFrom(ctx context.Context, repo *git.Repository, head string, t Trigger, mayFetch bool) (Revision, error) {
	have, err := g.localHead(repo)
	if err != nil {
		return Revision{}, err
	}
	if have != head || !hasCommit(repo, head) {
		if !mayFetch {
			return Revision{}, fmt.Errorf("commit %s is not in the cache", short(head))
		}
		fresh := have == "" && g.cfg.Commit == ""
		if err := g.fetch(ctx, repo); err != nil {
			return Revision{}, err
		}
		if fresh {
			// A whole clone leaves tens of MiB of garbage (go-git's
			// delta-base caches) and a GC goal twice the clone's peak;
			// hand it back now rather than let the heap grow to it.
			defer debug.FreeOSMemory()
		}
		if have, err = g.localHead(repo); err != nil {
			return Revision{}, err
		}
		if have == "" {
			what := cmp.Or(g.cfg.ref(), "commit "+g.cfg.Commit)
			return Revision{}, &Error{Step: StepFetch, Reason: ReasonNotFound, Source: g.disp, Commit: g.cfg.Commit,
				Err: fmt.Errorf("the remote has no %s reachable from its branches", what)}
		}
		head = have // the branch may have moved again since it was listed
	}
	c, err := repo.CommitObject(plumbing.NewHash(head))
	if err != nil {
		return Revision{}, fmt.Errorf("commit %s: %w", short(head), err)
	}
	rev := Revision{
		Commit:    head,
		Ref:       g.cfg.ref(),
		Author:    Signature{c.Author.Name, c.Author.Email, c.Author.When},
		Committer: Signature{c.Committer.Name, c.Committer.Email, c.Committer.When},
		Message:   c.Message,
		Trigger:   t,
		Previous:  g.last,
	}
	if g.last != "" && g.last != head {
		ff, known := g.fastForward(repo, g.last, c)
		if known && !ff {
			if g.cfg.ForcePush == ForcePushRefuse {
				return Revision{}, &Error{Step: StepVerify, Reason: ReasonForcePush, Source: g.disp, Commit: head,
					Err: fmt.Errorf("%s moved to %s, which does not descend from the live commit %s (a force-push); refused by forcePush: refuse: restore the branch or set forcePush: follow",
						g.cfg.ref(), short(head), short(g.last))}
			}
			rev.ForcePushed = true
		}
	}
	if g.cfg.KeyringFile != "" {
		signer, err := g.verify(c)
		if err != nil {
			return Revision{}, err
		}
		rev.Signer = signer
	}
	files, index, err := g.readTree(c)
	if err != nil {
		return Revision{}, err
	}
	rev.Files = files
	if g.last != head { // rewriting an unchanged record would only risk it on a full disk
		if err := repo.Storer.SetReference(plumbing.NewHashReference(lastRef, c.Hash)); err != nil {
			return Revision{}, fmt.Errorf("recording the live commit: %w", err)
		}
	}
	g.last, g.handedOver, g.prevFiles = head, true, index
	g.setObserved(head)
	return rev, nil
}

func (g *Git) verify(c *object.Commit) (*Signer, error) {
	keyring, err := loadKeyring(g.cfg.KeyringFile)
	if err == nil {
		var s *Signer
		if s, err = verifyCommit(c, keyring, g.cfg.KeyringFile); err == nil {
			return s, nil
		}
	}
	reason := ReasonBadSignature
	var ve *verifyError
	if errors.As(err, &ve) {
		reason = ve.reason
	}
	return nil, &Error{Step: StepVerify, Reason: reason, Source: g.disp, Commit: c.Hash.String(), Err: err}
}

// fastForward says whether c descends from old. known is false when the
// history needed to tell is not in the cache (a shallow fetch).
func (g *Git) fastForward(repo *git.Repository, old string, c *object.Commit) (ff, known bool) {
	shallow, _ := repo.Storer.Shallow()
	oc, err := repo.CommitObject(plumbing.NewHash(old))
	if err != nil {
		// With the whole history fetched, a live commit that the new head
		// does not bring along is not its ancestor.
		return false, len(shallow) == 0
	}
	ok, err := oc.IsAncestor(c)
	if err != nil || (!ok && len(shallow) > 0) {
		return false, false // the walk may have stopped at the shallow edge
	}
	return ok, true
}

// fetch brings the followed ref's objects into the cache.
func (g *Git) fetch(ctx context.Context, repo *git.Repository) error {
	auth, err := g.auth()
	if err != nil {
		return err
	}
	var spec config.RefSpec
	switch ref := g.cfg.ref(); {
	case g.cfg.Commit != "":
		spec = "+refs/heads/*:refs/remotes/origin/*"
	case strings.HasPrefix(ref, "refs/heads/"):
		spec = config.RefSpec("+" + ref + ":refs/remotes/origin/" + strings.TrimPrefix(ref, "refs/heads/"))
	default:
		spec = config.RefSpec("+" + ref + ":" + ref)
	}
	depth := g.cfg.Depth
	if g.compacting && g.cfg.ForcePush == ForcePushFollow && g.cfg.Commit == "" {
		depth = 1
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	start := time.Now()
	stuck, err := bounded(ctx, func() error {
		return repo.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin",
			RemoteURL:  g.url,
			RefSpecs:   []config.RefSpec{spec},
			Depth:      depth,
			Auth:       auth,
			Tags:       git.NoTags,
			Force:      true, // the force-push policy is ours to apply, after the fetch
		})
	})
	g.m.fetchTime.Observe(time.Since(start).Seconds())
	if stuck != nil {
		g.busy, g.busySince = stuck, start
		g.m.fetches.WithLabelValues("error").Inc()
		return g.netError(err, "fetching")
	}
	switch {
	case errors.Is(err, git.NoErrAlreadyUpToDate):
		g.m.fetches.WithLabelValues("uptodate").Inc()
		g.compacting, g.suspect = false, false
		return nil
	case err != nil:
		g.m.fetches.WithLabelValues("error").Inc()
		if e := g.stateDirError(err, "fetching"); e != nil {
			g.removeTempPacks()
			return e
		}
		// A failure that is not the network's is blamed on the remote once
		// if the cache looks sound, and on the cache if it happens again
		// (a shallow cache can miss an object the server assumes it has).
		if isNetErr(err) || (!g.suspect && g.cacheHealthy(repo)) {
			g.suspect = !isNetErr(err)
			return g.netError(err, "fetching")
		}
		g.suspect = false
		return fmt.Errorf("fetching into the cache: %w", err) // untyped: the cache is broken
	}
	g.m.fetches.WithLabelValues("ok").Inc()
	g.compacting, g.suspect = false, false
	return nil
}

// stuckGrace is how long past its deadline a remote operation may take to
// give up by itself before it is left behind.
const stuckGrace = 3 * time.Second

// scpLike matches "user@host:path" and "host:path" (not "C:\…", not "/a:b").
var scpLike = regexp.MustCompile(`^(?:[^@/\s]+@)?[^@/\s:]{2,}:`)

// normalizeURL turns a plain relative path into an absolute one; other
// URLs are kept as they are.
func normalizeURL(u string) (string, error) {
	if strings.Contains(u, "://") || scpLike.MatchString(u) {
		return u, nil
	}
	return filepath.Abs(u)
}
