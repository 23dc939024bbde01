package gitsource

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// TreeAt reads the files under dir as they are at revision rev (a branch,
// tag, commit or any rev-parse expression go-git supports) of the git
// repository that contains dir. It is what `gitedge plan --base REF` uses.
func TreeAt(dir, rev string) (MemFS, plumbing.Hash, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, plumbing.ZeroHash, err
	}
	repo, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true})
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
// at commit c, with paths relative to sub.
func CommitFiles(c *object.Commit, sub string) (MemFS, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of commit %s: %w", c.Hash, err)
	}
	sub = strings.Trim(sub, "/")
	if sub != "" && sub != "." {
		tree, err = tree.Tree(sub)
		if errors.Is(err, object.ErrDirectoryNotFound) {
			return nil, fmt.Errorf("commit %s has no directory %q", c.Hash.String()[:12], sub)
		}
		if err != nil {
			return nil, fmt.Errorf("directory %q at commit %s: %w", sub, c.Hash.String()[:12], err)
		}
	}
	files := MemFS{}
	err = tree.Files().ForEach(func(f *object.File) error {
		if !f.Mode.IsFile() {
			return nil
		}
		r, err := f.Reader()
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		defer r.Close()
		data, err := io.ReadAll(r)
		if err != nil {
			return fmt.Errorf("%s: %w", f.Name, err)
		}
		files[f.Name] = data
		return nil
	})
	return files, err
}
