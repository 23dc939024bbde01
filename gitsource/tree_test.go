package gitsource

import (
	"path/filepath"
	"testing"
)

// TestTreeAtLinkedWorktree reads a revision from inside a linked worktree
// (git worktree add), where .git is a file pointing into the main
// repository's .git/worktrees/NAME and the refs and objects live in the
// main repository (its commondir). It used to fail with "reference not
// found", so `gitedge plan --base main` failed in every linked worktree.
func TestTreeAtLinkedWorktree(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	first := u.commit("first", map[string]string{"edge/a.yaml": "kind: A\n"})
	u.commit("second", map[string]string{"edge/a.yaml": "kind: B\n", "edge/b.yaml": "kind: C\n"})
	linked := filepath.Join(t.TempDir(), "linked")
	u.git("worktree", "add", "-q", "-b", "feature", linked, "main")

	for _, tc := range []struct {
		rev, want string
		files     int
	}{
		{"main", "kind: B\n", 2},
		{"feature", "kind: B\n", 2},
		{"HEAD~1", "kind: A\n", 1},
		{first[:10], "kind: A\n", 1},
	} {
		files, h, err := TreeAt(filepath.Join(linked, "edge"), tc.rev)
		if err != nil {
			t.Errorf("TreeAt(linked worktree, %q): %v", tc.rev, err)
			continue
		}
		if got := readFS(t, files, "a.yaml"); got != tc.want || files.Len() != tc.files {
			t.Errorf("TreeAt(linked worktree, %q) = %s: a.yaml %q, %d files; want %q, %d", tc.rev, h, got, files.Len(), tc.want, tc.files)
		}
	}
}
