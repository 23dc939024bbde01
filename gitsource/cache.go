package gitsource

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

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
	} else if _, err := repo.Reference(lastRef, false); err != nil {
		// The cache was thrown away (wipe) with its record of the live
		// commit: write it again now, not only when a commit is next
		// accepted, or a restart before that would forget the live commit
		// and, with it, the force-push check (a look that compacts the
		// cache and refuses a rollback, then a restart, would apply it).
		if err := repo.Storer.SetReference(plumbing.NewHashReference(lastRef, plumbing.NewHash(g.last))); err != nil {
			st.Close()
			return nil, fmt.Errorf("cache %s: recording the live commit: %w", g.dir, err)
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
	g.setObserved(g.last) // when the remote answers, fetch only if it moved
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
