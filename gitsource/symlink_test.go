package gitsource

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

// The secret that sits next to the repository: no link may ever bring it
// into a revision.
const outsideSecret = "SECRET-OUTSIDE-THE-REPOSITORY"

// linkTree lays out, under root, a repository whose routes live in edge/
// (source.path), with links of every kind. It returns the root.
func linkTree(t *testing.T, root string) {
	t.Helper()
	write(t, filepath.Join(root, "edge", "routes", "blog.yaml"), "kind: Route # blog\n")
	write(t, filepath.Join(root, "README.md"), "in the repository, outside edge/: "+outsideSecret+"\n")
	for link, target := range map[string]string{
		"edge/routes/alias.yaml": "blog.yaml",                  // inside, same directory
		"edge/shared":            "routes",                     // inside, a directory
		"edge/passwd.yaml":       "/etc/passwd",                // absolute
		"edge/routes/out.yaml":   "../../outside",              // climbs out of the repository
		"edge/readme.yaml":       "../README.md",               // in the repository, outside edge/
		"edge/dangling.yaml":     "missing.yaml",               // nothing there
		"edge/loop.yaml":         "loop.yaml",                  // itself
		"edge/back.yaml":         "routes/../shared/blog.yaml", // inside, the long way
	} {
		if err := os.Symlink(target, filepath.Join(root, filepath.FromSlash(link))); err != nil {
			t.Fatal(err)
		}
	}
}

// checkLinks asserts what every reader of fsys sees of linkTree's edge/.
func checkLinks(t *testing.T, fsys fs.FS) {
	t.Helper()
	blog := "kind: Route # blog\n"
	type kind int
	const (
		file kind = iota
		link
		dir
	)
	// WalkDir lists the links as links and does not descend into them.
	want := map[string]kind{
		"routes": dir, "routes/blog.yaml": file, "routes/alias.yaml": link, "routes/out.yaml": link,
		"shared": link, "passwd.yaml": link, "readme.yaml": link, "dangling.yaml": link, "loop.yaml": link, "back.yaml": link,
	}
	got := map[string]kind{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == "." {
			return nil
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			got[p] = link
		case d.IsDir():
			got[p] = dir
		default:
			got[p] = file
		}
		return nil
	})
	if err != nil {
		t.Fatalf("WalkDir: %v", err)
	}
	if len(got) != len(want) {
		t.Errorf("WalkDir saw %v, want %v", got, want)
	}
	for p, k := range want {
		if got[p] != k {
			t.Errorf("WalkDir: %s is %v, want %v", p, got[p], k)
		}
	}

	// Lstat and ReadLink show the link itself, target text verbatim.
	for name, target := range map[string]string{
		"routes/alias.yaml": "blog.yaml", "shared": "routes", "passwd.yaml": "/etc/passwd",
		"routes/out.yaml": "../../outside", "readme.yaml": "../README.md", "dangling.yaml": "missing.yaml",
	} {
		st, err := fs.Lstat(fsys, name)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 || st.Name() != filepath.Base(name) {
			t.Errorf("Lstat(%s) = %v, %v; want a symlink", name, st, err)
		}
		if got, err := fs.ReadLink(fsys, name); got != target || err != nil {
			t.Errorf("ReadLink(%s) = %q, %v; want %q", name, got, err, target)
		}
	}
	if _, err := fs.ReadLink(fsys, "routes/blog.yaml"); err == nil {
		t.Error("ReadLink of a file succeeded")
	}

	// Links inside are followed by ReadFile, Open, Stat and ReadDir.
	for _, name := range []string{"routes/alias.yaml", "shared/blog.yaml", "shared/alias.yaml", "back.yaml"} {
		if b, err := fs.ReadFile(fsys, name); string(b) != blog || err != nil {
			t.Errorf("ReadFile(%s) = %q, %v", name, b, err)
		}
		f, err := fsys.Open(name)
		if err != nil {
			t.Errorf("Open(%s): %v", name, err)
			continue
		}
		b, err := io.ReadAll(f)
		f.Close()
		if string(b) != blog || err != nil {
			t.Errorf("Open(%s) read %q, %v", name, b, err)
		}
	}
	if st, err := fs.Stat(fsys, "shared"); err != nil || !st.IsDir() {
		t.Errorf("Stat(shared) = %v, %v; want the directory it points at", st, err)
	}
	if entries, err := fs.ReadDir(fsys, "shared"); err != nil || len(entries) != 3 {
		t.Errorf("ReadDir(shared) = %v, %v", entries, err)
	}

	// Links leaving the tree (edge/, not the repository) are refused,
	// naming the link, whatever the call; their target is never read.
	refused := map[string]error{
		"passwd.yaml":     ErrLinkOutside,
		"routes/out.yaml": ErrLinkOutside,
		"readme.yaml":     ErrLinkOutside,
		"loop.yaml":       ErrLinkLoop,
		"dangling.yaml":   fs.ErrNotExist,
	}
	for name, want := range refused {
		calls := map[string]func() (string, error){
			"ReadFile": func() (string, error) { b, err := fs.ReadFile(fsys, name); return string(b), err },
			"Open": func() (string, error) {
				f, err := fsys.Open(name)
				if err != nil {
					return "", err
				}
				defer f.Close()
				b, err := io.ReadAll(f)
				return string(b), err
			},
			"Stat": func() (string, error) { _, err := fs.Stat(fsys, name); return "", err },
		}
		for call, fn := range calls {
			content, err := fn()
			if !errors.Is(err, want) || !strings.Contains(err.Error(), name) || content != "" {
				t.Errorf("%s(%s) = %q, %v; want an error naming the link, %v", call, name, content, err, want)
			}
			if err != nil && (strings.Contains(err.Error(), "root:") || strings.Contains(err.Error(), outsideSecret)) {
				t.Errorf("%s(%s) error shows outside content: %v", call, name, err)
			}
		}
	}
	if _, err := fs.ReadFile(fsys, "dangling.yaml"); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("dangling link: %v; want its target named", err)
	}

	// Nothing any walk can read holds outside content.
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if b, err := fs.ReadFile(fsys, p); err == nil && (strings.Contains(string(b), outsideSecret) || strings.Contains(string(b), "root:")) {
			t.Errorf("%s reads outside content", p)
		}
		return nil
	})
}

// outsideFile writes the secret where ../../outside of edge/routes points.
func outsideFile(t *testing.T, root string) {
	t.Helper()
	write(t, filepath.Join(root, "outside"), outsideSecret+"\n")
}

// TestSymlinksGit commits links of every kind with the git CLI and reads
// them back through the source (a revision's Files) and CommitFiles.
func TestSymlinksGit(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	linkTree(t, u.work)
	outsideFile(t, filepath.Dir(u.work)) // next to the working clone
	c := u.commit("links", nil)
	if mode := strings.Fields(u.git("ls-tree", "HEAD", "edge/passwd.yaml"))[0]; mode != "120000" {
		t.Fatalf("the link was committed with mode %s", mode)
	}
	u.push("main")
	g, _ := newSource(t, Config{URL: u.bare, Path: "edge"})
	rev := next(t, g)
	if rev.Commit != c {
		t.Fatal(rev.Commit)
	}
	t.Run("revision", func(t *testing.T) { checkLinks(t, rev.Files) })
	t.Run("TreeAt", func(t *testing.T) {
		files, _, err := TreeAt(filepath.Join(u.work, "edge"), "HEAD")
		if err != nil {
			t.Fatal(err)
		}
		checkLinks(t, files)
	})
}

// TestSymlinksDir reads the same tree from a directory source: links are
// snapshotted as links, never followed on disk.
func TestSymlinksDir(t *testing.T) {
	t.Parallel()
	root := filepath.Join(t.TempDir(), "repo")
	linkTree(t, root)
	outsideFile(t, filepath.Dir(root))
	d := startDir(t, filepath.Join(root, "edge"))
	rev := next(t, d)
	checkLinks(t, rev.Files)

	// Retargeting a link is a change of the snapshot.
	if err := os.Remove(filepath.Join(root, "edge", "routes", "alias.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../passwd.yaml", filepath.Join(root, "edge", "routes", "alias.yaml")); err != nil {
		t.Fatal(err)
	}
	rev2 := next(t, d)
	if rev2.Commit == rev.Commit {
		t.Fatal("retargeted link, same snapshot hash")
	}
	if _, err := fs.ReadFile(rev2.Files, "routes/alias.yaml"); !errors.Is(err, ErrLinkOutside) {
		t.Fatalf("link to a link leaving the tree: %v", err)
	}
}

// TestSymlinkDirRoot: a directory source reached through a link is read.
func TestSymlinkDirRoot(t *testing.T) {
	t.Parallel()
	real := t.TempDir()
	write(t, filepath.Join(real, "a.yaml"), "a\n")
	via := filepath.Join(t.TempDir(), "current")
	if err := os.Symlink(real, via); err != nil {
		t.Fatal(err)
	}
	d := startDir(t, via)
	if rev := next(t, d); readFS(t, rev.Files, "a.yaml") != "a\n" {
		t.Fatal("directory behind a link not read")
	}
}

// TestMemFSResolve pins link resolution on in-memory trees: ".." after a
// link goes to the parent of what the link points at, as the kernel does.
func TestMemFSResolve(t *testing.T) {
	t.Parallel()
	m := NewMemFS(map[string][]byte{"f": []byte("top"), "d/f": []byte("in d"), "d/e/f": []byte("in e")}, map[string]string{
		"l1": "d/../f", "l2": "de/../f", "de": "d/e", "l3": "./f", "d/l4": "../f", "d/l5": "../../f",
		"l6": "", "a": "b", "b": "a", "d/e/l7": "../../d/e/f", "l8": "de/f", "l9": "l1",
	})
	for _, tc := range []struct {
		name, want string
		err        error
	}{
		{"l1", "top", nil},
		{"l2", "in d", nil},
		{"l3", "top", nil},
		{"d/l4", "top", nil},
		{"d/l5", "", ErrLinkOutside},
		{"l6", "", ErrLinkOutside},
		{"a", "", ErrLinkLoop},
		{"d/e/l7", "in e", nil},
		{"l8", "in e", nil},
		{"de/l7", "in e", nil},
		{"l9", "top", nil},
		{"de/../f", "", fs.ErrInvalid},
		{"nothing", "", fs.ErrNotExist},
	} {
		b, err := m.ReadFile(tc.name)
		if string(b) != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("ReadFile(%s) = %q, %v; want %q, %v", tc.name, b, err, tc.want, tc.err)
		}
	}
	if m.Len() != 3 || m.Links() != 12 {
		t.Errorf("Len %d, Links %d", m.Len(), m.Links())
	}
}

// TestMemFSConforms runs testing/fstest's checks on a tree whose links all
// stay inside.
func TestMemFSConforms(t *testing.T) {
	t.Parallel()
	m := NewMemFS(map[string][]byte{"a/b.yaml": []byte("b"), "c.yaml": []byte("c"), "a/d/e.yaml": []byte("e")},
		map[string]string{"a/l.yaml": "b.yaml", "ld": "a/d"})
	if err := fstest.TestFS(m, "a/b.yaml", "c.yaml", "a/d/e.yaml", "a/l.yaml", "ld"); err != nil {
		t.Fatal(err)
	}
	names, err := fs.Glob(m, "*")
	if err != nil || !slices.Equal(names, []string{"a", "c.yaml", "ld"}) {
		t.Fatalf("Glob: %v, %v", names, err)
	}
}
