package gitsource

import (
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// TreeAt reads the files under dir as they are at revision rev (a branch,
// tag, commit or any rev-parse expression go-git supports) of the git
// repository that contains dir. It is what `gitedge plan --base REF` uses.
func TreeAt(dir, rev string) (*MemFS, plumbing.Hash, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, plumbing.ZeroHash, err
	}
	// A linked worktree (git worktree add) keeps its refs and objects in
	// the main repository's .git, its commondir.
	repo, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("%s is not inside a git repository: %w", dir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("repository of %s: %w", dir, err)
	}
	rel, err := filepath.Rel(wt.Filesystem.Root(), abs)
	if err != nil {
		return nil, plumbing.ZeroHash, err
	}
	h, err := repo.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("revision %q in %s: %w", rev, wt.Filesystem.Root(), err)
	}
	c, err := repo.CommitObject(*h)
	if err != nil {
		return nil, plumbing.ZeroHash, fmt.Errorf("commit %s: %w", h, err)
	}
	files, err := CommitFiles(c, filepath.ToSlash(rel))
	return files, *h, err
}

// CommitFiles returns the files under sub ("" or "." for the whole tree)
// at commit c, with paths relative to sub. Like the loader, it leaves out
// names starting with "."; submodules are left out too. Symbolic links are
// kept as links: MemFS follows them inside the tree it holds (sub, not the
// whole repository) and refuses the others.
func CommitFiles(c *object.Commit, sub string) (*MemFS, error) {
	files, _, err := readCommitFiles(c, sub, nil, 0)
	var e *Error
	if errors.As(err, &e) {
		return nil, e.Err
	}
	return files, err
}

// readCommitFiles reads the files under sub at c. Blobs whose hash is in
// prev are not read again: their bytes are shared (MemFS never hands out
// its slices). limit > 0 bounds the total bytes. It also returns the blob
// index to pass as prev next time. A missing sub-directory or a tree over
// the limit is a terminal *Error; other errors come from the object store.
func readCommitFiles(c *object.Commit, sub string, prev map[string]blobData, limit int64) (*MemFS, map[string]blobData, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, nil, fmt.Errorf("tree of commit %s: %w", short(c.Hash.String()), err)
	}
	sub = strings.Trim(sub, "/")
	if sub != "" && sub != "." {
		tree, err = tree.Tree(sub)
		if errors.Is(err, object.ErrDirectoryNotFound) {
			return nil, nil, &Error{Step: StepRead, Reason: ReasonPath, Commit: c.Hash.String(),
				Err: noDirectoryError{commit: short(c.Hash.String()), dir: sub}}
		}
		if err != nil {
			return nil, nil, fmt.Errorf("directory %q at commit %s: %w", sub, short(c.Hash.String()), err)
		}
	}
	r := treeReader{c: c, prev: prev, next: map[string]blobData{}, files: map[string][]byte{}, links: map[string]string{}, limit: limit}
	if err := r.walk(tree, ""); err != nil {
		return nil, nil, err
	}
	return NewMemFS(r.files, r.links), r.next, nil
}

type treeReader struct {
	c            *object.Commit
	prev, next   map[string]blobData
	files        map[string][]byte
	links        map[string]string // path → target text
	limit, total int64
}

func (r *treeReader) walk(t *object.Tree, dir string) error {
	for _, e := range t.Entries {
		if strings.HasPrefix(e.Name, ".") {
			continue
		}
		p := path.Join(dir, e.Name)
		switch e.Mode {
		case filemode.Dir:
			sub, err := t.Tree(e.Name)
			if err != nil {
				return fmt.Errorf("directory %s: %w", p, err)
			}
			if err := r.walk(sub, p); err != nil {
				return err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			data, err := r.blob(t, &e, p)
			if err != nil {
				return err
			}
			r.files[p] = data
		case filemode.Symlink:
			// The blob is the target text. It is never followed here:
			// MemFS resolves it inside the tree, or refuses it.
			data, err := r.blob(t, &e, p)
			if err != nil {
				return err
			}
			r.links[p] = string(data)
		}
	}
	return nil
}

// blob reads the blob of entry e at path p, or takes it from prev.
func (r *treeReader) blob(t *object.Tree, e *object.TreeEntry, p string) ([]byte, error) {
	if b, ok := r.prev[p]; ok && b.hash == e.Hash {
		r.total += int64(len(b.data))
		r.next[p] = b
		return b.data, nil
	}
	blob, err := t.TreeEntryFile(e)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	r.total += blob.Size
	if r.limit > 0 && r.total > r.limit {
		return nil, &Error{Step: StepRead, Reason: ReasonTooLarge, Commit: r.c.Hash.String(),
			Err: fmt.Errorf("the files at commit %s pass %d MiB (at %s); raise the limit or trim the directory", short(r.c.Hash.String()), r.limit>>20, p)}
	}
	rd, err := blob.Reader()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	data := make([]byte, blob.Size) // exact: 10,000 small files add up
	_, err = io.ReadFull(rd, data)
	rd.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	r.next[p] = blobData{hash: e.Hash, data: data}
	return data, nil
}

// readTree reads the configured sub-directory of c for a revision.
func (g *Git) readTree(c *object.Commit) (*MemFS, map[string]blobData, error) {
	files, next, err := readCommitFiles(c, g.cfg.Path, g.prevFiles, g.cfg.MaxTreeBytes)
	var e *Error
	if errors.As(err, &e) {
		e.Source = g.disp
	}
	return files, next, err
}

// ErrNoDirectory is matched (errors.Is) by the error of a commit that has
// no directory at the path asked for: `plan --base REF` on the pull request
// that adds the routes directory plans everything as added.
var ErrNoDirectory = errors.New("no such directory at this commit")

type noDirectoryError struct{ commit, dir string }

func (e noDirectoryError) Error() string {
	return fmt.Sprintf("commit %s has no directory %q (check source.path)", e.commit, e.dir)
}

func (e noDirectoryError) Is(target error) bool { return target == ErrNoDirectory }
