package reconcile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// A secret-looking file outside the repository: its content must never
// appear in any message.
const outsideSecret = "password: hunter2-OUTSIDE-SECRET\n"

// entry is a file (data) or a symbolic link (link) of a test repository.
type entry struct {
	data string
	link string
}

// buildRepo makes the same repository as a directory on disk (with a
// secret file beside it, outside) and as an fstest.MapFS. "$OUTSIDE" in a
// link is the absolute path of the directory outside: on disk a real one,
// in the MapFS "/outside".
func buildRepo(t *testing.T, entries map[string]entry) (disk fs.FS, mem fstest.MapFS, outside string) {
	t.Helper()
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	outside = filepath.Join(root, "outside")
	if err := os.MkdirAll(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte(outsideSecret), 0o644); err != nil {
		t.Fatal(err)
	}
	mem = fstest.MapFS{}
	for name, e := range entries {
		p := filepath.Join(repo, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if e.link != "" {
			if err := os.Symlink(strings.ReplaceAll(e.link, "$OUTSIDE", outside), p); err != nil {
				t.Fatal(err)
			}
			mem[name] = &fstest.MapFile{Data: []byte(strings.ReplaceAll(e.link, "$OUTSIDE", "/outside")), Mode: fs.ModeSymlink}
			continue
		}
		if err := os.WriteFile(p, []byte(e.data), 0o644); err != nil {
			t.Fatal(err)
		}
		mem[name] = &fstest.MapFile{Data: []byte(e.data)}
	}
	return os.DirFS(repo), mem, outside
}

const linkEdge = `apiVersion: gitedge/v1
kind: Edge
metadata: {name: links}
spec:
  listeners:
    - {name: http, bind: ":80", mode: http, defaultBackend: web}
`

const linkBackend = `apiVersion: gitedge/v1
kind: Backend
metadata: {name: web}
spec:
  servers: [{name: s1, address: "192.0.2.10:80"}]
`

const linkRoute = `apiVersion: gitedge/v1
kind: Route
metadata: {name: blog}
spec:
  hosts: [blog.example.org]
  http: {backend: web}
`

// TestLoadFollowsLinksInside: links that stay inside the repository are
// followed, to files and to directories, through chains, and read under
// the link's name; the repository on disk and in a MapFS loads the same.
func TestLoadFollowsLinksInside(t *testing.T) {
	api := strings.ReplaceAll(strings.ReplaceAll(linkRoute, "blog", "api"), "api.example.org", "api.example.org")
	disk, mem, _ := buildRepo(t, map[string]entry{
		"edge.yaml":             {data: linkEdge},
		"shared/backend.txt":    {data: linkBackend}, // not *.yaml: read only through the link
		"backends.yaml":         {link: "shared/backend.txt"},
		".hidden/blog.yaml":     {data: linkRoute}, // hidden: read only through the link
		"routes":                {link: ".hidden"},
		".more/api.txt":         {data: api},
		"chain.yml":             {link: "chain2.txt"},
		"chain2.txt":            {link: "notes/../routes/../.more/api.txt"},
		"notes/readme.txt":      {data: "not yaml"},
		"notes/link-to-dir.txt": {link: "../shared"}, // a directory link: walked, holds no YAML
	})
	for name, fsys := range map[string]fs.FS{"os.DirFS": disk, "fstest.MapFS": mem} {
		t.Run(name, func(t *testing.T) {
			d, files, err := LoadWith(fsys, LoadOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(d.Dataplane.Routes) != 2 || len(d.Dataplane.Backends) != 1 {
				t.Fatalf("loaded %+v", d.Dataplane)
			}
			want := Files{"edge.yaml": []byte(linkEdge), "backends.yaml": []byte(linkBackend),
				"routes/blog.yaml": []byte(linkRoute), "chain.yml": []byte(api)}
			if diff := cmp.Diff(want, files); diff != "" {
				t.Errorf("files read (-want +got):\n%s", diff)
			}
			// What was read loads again to the same state: the record's promise.
			again, err := Load(files)
			if err != nil || !Diff(d, again).Empty() {
				t.Errorf("the files read load again to another state: %v", err)
			}
		})
	}
}

// TestLoadRefusesLinksOutside: a link that leaves the repository, is
// absolute, dangles or loops is an error naming the link, on disk and in
// a MapFS alike, and the content of the file outside is never read.
func TestLoadRefusesLinksOutside(t *testing.T) {
	entries := map[string]entry{
		"edge.yaml":          {data: linkEdge},
		"backends.yaml":      {data: linkBackend},
		"routes/evil.yaml":   {link: "../../outside/secret.yaml"},
		"abs.yaml":           {link: "$OUTSIDE/secret.yaml"},
		"gone.yaml":          {link: "routes/nothing.yaml"},
		"loop-a.yaml":        {link: "loop-b.yaml"},
		"loop-b.yaml":        {link: "loop-a.yaml"},
		"routes/self":        {link: ".."},
		"out":                {link: "../outside"},
		"through-out.yaml":   {link: "out/secret.yaml"},
		"notes.txt":          {link: "../outside/secret.yaml"},
		"not-a-dir.yaml":     {link: "edge.yaml/x.yaml"},
		"routes/inside.yaml": {link: "../routes/../backends.yaml"},
	}
	disk, mem, outside := buildRepo(t, entries)
	want := strings.Join([]string{
		`abs.yaml: symbolic link to "/outside/secret.yaml" is absolute: a link must stay inside the repository (use a relative path to a file inside it)`,
		`gone.yaml: symbolic link to "routes/nothing.yaml" is dangling: routes/nothing.yaml does not exist in the repository`,
		`loop-a.yaml: symbolic link to "loop-b.yaml" goes through more than 40 links: a loop`,
		`loop-b.yaml: symbolic link to "loop-a.yaml" goes through more than 40 links: a loop`,
		`not-a-dir.yaml: symbolic link to "edge.yaml/x.yaml" is dangling: edge.yaml is not a directory`,
		`notes.txt: symbolic link to "../outside/secret.yaml" points outside the repository: a link must stay inside it (copy the file in, or link to one inside)`,
		`out: symbolic link to "../outside" points outside the repository: a link must stay inside it (copy the file in, or link to one inside)`,
		`routes/evil.yaml: symbolic link to "../../outside/secret.yaml" points outside the repository: a link must stay inside it (copy the file in, or link to one inside)`,
		`routes/inside.yaml:3: Backend "web": metadata.name: a Backend named "web" is already defined at backends.yaml:1`,
		`routes/self: symbolic link to ".." leads back into a directory it is in: a loop`,
		`through-out.yaml: symbolic link to "out/secret.yaml": through out → "../outside", points outside the repository: a link must stay inside it (copy the file in, or link to one inside)`,
	}, "\n")
	for name, fsys := range map[string]fs.FS{"os.DirFS": disk, "fstest.MapFS": mem} {
		t.Run(name, func(t *testing.T) {
			_, err := Load(fsys)
			errs, ok := errors.AsType[Errors](err)
			if !ok {
				t.Fatalf("error %T %v", err, err)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.Error())
			}
			text := strings.Join(got, "\n")
			// The absolute target differs between the two.
			text = strings.ReplaceAll(text, outside, "/outside")
			if diff := cmp.Diff(want, text); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if strings.Contains(text, "hunter2") {
				t.Fatalf("the content of a file outside the repository leaked:\n%s", text)
			}
		})
	}
}

// FuzzResolveLink: whatever a link says, resolve never panics, and what it
// returns is a path inside the tree, free of links, that exists.
func FuzzResolveLink(f *testing.F) {
	for _, s := range []string{"a.yaml", "../a.yaml", "/etc/passwd", "d/../a.yaml", "d", "loop", "d/l2/b.yaml", "", ".", "./", "d//b.yaml", "a.yaml/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		m := fstest.MapFS{
			"a.yaml":     {Data: []byte("x")},
			"d/b.yaml":   {Data: []byte("y")},
			"d/l2":       {Data: []byte("."), Mode: fs.ModeSymlink},
			"loop":       {Data: []byte("loop"), Mode: fs.ModeSymlink},
			"d/out":      {Data: []byte("../../x"), Mode: fs.ModeSymlink},
			"the/link":   {Data: []byte(target), Mode: fs.ModeSymlink},
			"the/x.yaml": {Data: []byte("z")},
		}
		r := repoReader{fsys: m, l: &loader{lim: defaultLimits}, files: Files{}}
		p, err := r.resolve("the/link")
		if err != nil {
			return
		}
		if !fs.ValidPath(p) || strings.Contains(p, "..") {
			t.Fatalf("resolve(%q) = %q: not a clean path inside", target, p)
		}
		info, err := fs.Lstat(m, p)
		if err != nil || info.Mode()&fs.ModeSymlink != 0 {
			t.Fatalf("resolve(%q) = %q: %v, mode %v", target, p, err, info)
		}
	})
}
