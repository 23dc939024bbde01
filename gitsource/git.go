package gitsource

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
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
				return Revision{}, err
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
			g.lastObserved = e.Commit
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

// auth builds the credentials for the remote from the files in Config.Auth.
// The files are read on every use so rotation needs no restart.
func (g *Git) auth() (transport.AuthMethod, error) {
	ep, err := transport.NewEndpoint(g.url)
	if err != nil {
		return nil, &Error{Step: StepFetch, Reason: ReasonNotFound, Source: g.disp, Err: fmt.Errorf("url: %v", redactErr(err, g.url))}
	}
	a := g.cfg.Auth
	authErr := func(err error) error {
		return &Error{Step: StepFetch, Reason: ReasonAuth, Source: g.disp, Err: err}
	}
	switch ep.Protocol {
	case "ssh":
		if a.SSHKeyFile == "" {
			return nil, nil // go-git falls back to the ssh agent
		}
		user := cmp.Or(ep.User, "git")
		keys, err := sshPublicKeys(user, a.SSHKeyFile, a.KnownHostsFile, net.JoinHostPort(ep.Host, fmt.Sprint(cmpPort(ep.Port, 22))))
		if err != nil {
			return nil, authErr(err)
		}
		return keys, nil
	case "http", "https":
		file := cmp.Or(a.TokenFile, a.PasswordFile)
		if file == "" {
			return nil, nil
		}
		secret, err := readSecret(file)
		if err != nil {
			return nil, authErr(err)
		}
		return basicAuth(cmp.Or(a.Username, "git"), secret), nil
	}
	return nil, nil
}

func cmpPort(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

// readSecret reads a credential file, without its trailing newline. Errors
// name the file, never its content.
func readSecret(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("credential file: %w", err)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return "", fmt.Errorf("credential file %s is empty", file)
	}
	return s, nil
}

// open opens (or creates) the bare cache repository.
func (g *Git) open() (*git.Repository, error) {
	if g.repo != nil {
		return g.repo, nil
	}
	_, statErr := os.Stat(filepath.Join(g.dir, "config"))
	if err := os.MkdirAll(g.dir, 0o750); err != nil {
		return nil, err
	}
	st := filesystem.NewStorageWithOptions(osfs.New(g.dir), cache.NewObjectLRU(objectCacheSize),
		filesystem.Options{ExclusiveAccess: true, KeepDescriptors: true})
	var repo *git.Repository
	var err error
	if os.IsNotExist(statErr) {
		repo, err = git.Init(st, nil)
		if err == nil {
			_, err = repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{g.url}})
		}
	} else {
		repo, err = git.Open(st, nil)
	}
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("cache %s: %w", g.dir, err)
	}
	if g.last == "" {
		if r, err := repo.Reference(lastRef, false); err == nil {
			g.last = r.Hash().String()
		}
	}
	g.storage, g.repo = st, repo
	return repo, nil
}

// openReadOnly opens the cache through a storage of its own, for reading
// only, while another one may be in use.
func (g *Git) openReadOnly() (*git.Repository, func(), error) {
	st := filesystem.NewStorageWithOptions(osfs.New(g.dir), cache.NewObjectLRU(objectCacheSize), filesystem.Options{})
	repo, err := git.Open(st, nil)
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("cache %s: %w", g.dir, err)
	}
	return repo, func() { st.Close() }, nil
}

// wipe throws the cache away; the next open starts afresh.
func (g *Git) wipe(why error) {
	g.log.Warn("throwing the local cache away, fetching it again", "dir", g.dir, "why", why)
	g.m.reclones.Inc()
	if g.storage != nil {
		g.storage.Close()
	}
	// prevFiles stays: its bytes are addressed by blob hash and were read
	// before anything broke.
	g.storage, g.repo = nil, nil
	if err := os.RemoveAll(g.dir); err != nil {
		g.log.Warn("removing the cache", "dir", g.dir, "err", err)
	}
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
	g.last, g.lastObserved, g.handedOver, g.prevFiles = head, head, true, index
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

// cachedLastGood hands over the commit last handed over, from the cache,
// when the look at start failed to reach or fetch from the remote: it is
// unreachable, answers "not found" or refuses the credentials, or the
// state directory is full or read-only. The cache is only read.
func (g *Git) cachedLastGood(t Trigger, cause error) (Revision, bool) {
	var e *Error
	if !errors.As(cause, &e) || e.Step != StepFetch {
		return Revision{}, false
	}
	var repo *git.Repository
	var err error
	if g.busy == nil {
		repo, err = g.open()
	} else {
		// A stuck fetch still holds the cache's storage: read it through
		// a storage of its own.
		var release func()
		repo, release, err = g.openReadOnly()
		if err == nil {
			defer release()
			if r, rerr := repo.Reference(lastRef, false); rerr == nil && g.last == "" {
				g.last = r.Hash().String()
			}
		}
	}
	if err != nil || g.last == "" {
		return Revision{}, false
	}
	t.Detail = strings.TrimSpace(t.Detail + " from cache: " + fallbackWhy(e.Reason))
	rev, err := g.loadCached(repo, g.last, t)
	rev.Stale = cause
	if err != nil {
		g.log.Warn("cached commit not usable", "commit", short(g.last), "err", err)
		return Revision{}, false
	}
	g.lastObserved = g.last // when the remote answers, fetch only if it moved
	return rev, true
}

// checkBusy fails while a fetch left behind at its deadline still runs:
// the cache is not touched until it returns.
func (g *Git) checkBusy() error {
	if g.busy == nil {
		return nil
	}
	select {
	case <-g.busy:
		g.busy = nil
		return nil
	default:
	}
	return &Error{Step: StepFetch, Reason: ReasonUnreachable, Source: g.disp,
		Err: fmt.Errorf("a fetch started %s ago is still stuck past its deadline; the cache is left alone until it returns (check the remote, or a local source's disk)",
			time.Since(g.busySince).Round(time.Second))}
}

// fallbackWhy says in a few words why the cache was used.
func fallbackWhy(reason string) string {
	switch reason {
	case ReasonUnreachable:
		return "remote unreachable"
	case ReasonNotFound:
		return "repository or ref not found on the remote"
	case ReasonAuth:
		return "credentials refused"
	case ReasonDiskFull:
		return "disk full"
	case ReasonReadOnly:
		return "state directory read-only"
	}
	return reason
}

func (g *Git) loadCached(repo *git.Repository, commit string, t Trigger) (Revision, error) {
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return Revision{}, err
	}
	rev := Revision{Commit: commit, Ref: g.cfg.ref(), Trigger: t, Message: c.Message,
		Author:    Signature{c.Author.Name, c.Author.Email, c.Author.When},
		Committer: Signature{c.Committer.Name, c.Committer.Email, c.Committer.When}}
	if g.cfg.KeyringFile != "" {
		if rev.Signer, err = g.verify(c); err != nil {
			return Revision{}, err
		}
	}
	files, index, err := g.readTree(c)
	if err != nil {
		return Revision{}, err
	}
	rev.Files = files
	g.handedOver, g.prevFiles = true, index
	return rev, nil
}

// localHead is the commit the cache holds for the followed ref, "" if none.
func (g *Git) localHead(repo *git.Repository) (string, error) {
	if g.cfg.Commit != "" {
		if hasCommit(repo, g.cfg.Commit) {
			return g.cfg.Commit, nil
		}
		return "", nil
	}
	name := plumbing.ReferenceName(g.cfg.ref())
	if name.IsBranch() {
		name = plumbing.NewRemoteReferenceName("origin", name.Short())
	}
	r, err := repo.Reference(name, true)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("reference %s: %w", name, err)
	}
	h := r.Hash()
	if tag, err := repo.TagObject(h); err == nil { // annotated tag: peel
		c, err := tag.Commit()
		if err != nil {
			return "", fmt.Errorf("tag %s does not point at a commit: %w", g.cfg.Tag, err)
		}
		h = c.Hash
	}
	return h.String(), nil
}

func hasCommit(repo *git.Repository, h string) bool {
	_, err := repo.CommitObject(plumbing.NewHash(h))
	return err == nil
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

// stateDirError types a failure to write the cache because the state
// directory's filesystem is full or read-only; nil for any other error.
// It is retryable: freeing space or remounting needs no new commit.
func (g *Git) stateDirError(err error, doing string) *Error {
	reason, advice := diskReason(err)
	if reason == "" {
		return nil
	}
	return &Error{Step: StepFetch, Reason: reason, Source: g.disp,
		Err: fmt.Errorf("%s: state directory %s %s: %w", doing, g.cfg.StateDir, advice, err)}
}

// diskReason tells a full or read-only filesystem from other failures, by
// errno where go-git keeps the chain and by message where it does not.
func diskReason(err error) (reason, advice string) {
	const (
		full     = "is full: free space there (or raise the quota)"
		readOnly = "is on a read-only filesystem: remount it read-write"
	)
	switch {
	case err == nil:
		return "", ""
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return ReasonDiskFull, full
	case errors.Is(err, syscall.EROFS):
		return ReasonReadOnly, readOnly
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, syscall.ENOSPC.Error()), strings.Contains(msg, syscall.EDQUOT.Error()):
		return ReasonDiskFull, full
	case strings.Contains(msg, syscall.EROFS.Error()):
		return ReasonReadOnly, readOnly
	}
	return "", ""
}

// removeTempPacks deletes the partial pack files a failed fetch can leave
// (go-git does not always), so retries on a nearly full disk do not pile
// them up. The cache is ours alone (ExclusiveAccess).
func (g *Git) removeTempPacks() {
	tmp, _ := filepath.Glob(filepath.Join(g.dir, "objects", "pack", "tmp_*"))
	for _, p := range tmp {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			g.log.Warn("removing a partial pack", "file", p, "err", err)
		}
	}
}

// stuckGrace is how long past its deadline a remote operation may take to
// give up by itself before it is left behind.
const stuckGrace = 3 * time.Second

// errStuck is the error of a remote operation left behind at its deadline.
var errStuck = errors.New("no answer before the deadline, and the transport did not give up (a git-upload-pack stuck on its repository's disk?)")

// bounded runs op, which must honour ctx, and waits for it until ctx ends
// plus stuckGrace. go-git honours ctx while it reads from the remote, but a
// transport can still block past it: the file transport waits for its
// git-upload-pack child on close, and a child stuck in the kernel (a hung
// NFS mount) or a grandchild holding its stderr keeps that wait going.
// Then op is left running, and bounded returns a channel closed when op
// returns at last (until then nothing op uses may be touched) and errStuck.
func bounded(ctx context.Context, op func() error) (<-chan struct{}, error) {
	result := make(chan error, 1)
	done := make(chan struct{})
	go boundedOp(op, result, done)
	select {
	case err := <-result:
		return nil, err
	case <-ctx.Done():
	}
	t := time.NewTimer(stuckGrace)
	defer t.Stop()
	select {
	case err := <-result:
		return nil, err
	case <-t.C:
		return done, fmt.Errorf("%w: %w", errStuck, ctx.Err())
	}
}

func boundedOp(op func() error, result chan<- error, done chan<- struct{}) {
	result <- op()
	close(done)
}

// isNetErr tells talking-to-the-remote failures from local cache failures.
func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	var errno syscall.Errno
	switch {
	case errors.As(err, &ne) && !errors.As(err, &errno), // an errno looks like a net.Error but is local
		errors.As(err, &oe),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrEmptyRemoteRepository):
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "unexpected client error", "unexpected requesting",
		"ssh:", "handshake", "unable to authenticate", "knownhosts", "remote error", "status code"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// packCount is the number of pack files in the open cache.
func (g *Git) packCount() int {
	if g.repo == nil {
		return 0
	}
	entries, err := os.ReadDir(filepath.Join(g.dir, "objects", "pack"))
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".pack") {
			n++
		}
	}
	return n
}

// cacheHealthy checks the cache's files, its remote, and that the live
// and cached head commits and their root trees can be read: when all of
// that works, a failed fetch is blamed on the remote, not on the cache.
func (g *Git) cacheHealthy(repo *git.Repository) bool {
	for _, name := range []string{"config", "HEAD", "objects"} {
		if _, err := os.Stat(filepath.Join(g.dir, name)); err != nil {
			return false
		}
	}
	if _, err := repo.Remote("origin"); err != nil {
		return false
	}
	head, err := g.localHead(repo)
	if err != nil {
		return false
	}
	for _, h := range []string{head, g.last} {
		if h == "" {
			continue
		}
		c, err := repo.CommitObject(plumbing.NewHash(h))
		if err != nil {
			return false
		}
		if _, err = c.Tree(); err != nil {
			return false
		}
	}
	return true
}

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
