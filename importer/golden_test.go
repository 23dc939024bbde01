package importer

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/reconcile"
	"github.com/google/go-cmp/cmp"
)

// goldenDir compares files with the tree under testdata/golden/name, or
// rewrites it with -update. The tree holds exactly the imported files.
func goldenDir(t *testing.T, name string, files map[string][]byte) {
	t.Helper()
	root := filepath.Join("testdata", "golden", name)
	if testkit.Updating() {
		if err := os.RemoveAll(root); err != nil {
			t.Fatal(err)
		}
		for n, data := range files {
			p := filepath.Join(root, filepath.FromSlash(n))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return
	}
	got := map[string]string{}
	for n, d := range files {
		got[n] = string(d)
	}
	want := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(root, p)
		want[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("import differs from %s (-want +got; go test -update rewrites it after review):\n%s", root, d)
	}
}

// goldenFile compares text with testdata/golden/name, or rewrites it.
func goldenFile(t *testing.T, name, got string) {
	t.Helper()
	testkit.Golden(t, filepath.Join("testdata", "golden", name), got)
}

func reportText(t *testing.T, res *Result) string {
	t.Helper()
	var b bytes.Buffer
	if err := res.Report.Write(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestSeedImport imports the seed deployment and compares the repository
// and the report with the reviewed golden copies.
func TestSeedImport(t *testing.T) {
	dir := seedDir(t)
	t.Chdir(dir)
	res, err := Import(seedOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := res.Summary; got != "2 node(s), 2 listener(s), 3 route(s), 4 backend(s), 1 VRRP instance(s), 2 VM(s)" {
		t.Errorf("summary: %s", got)
	}
	t.Chdir(pkgDir)
	goldenDir(t, "seed", res.Files)
	goldenFile(t, "seed.report", reportText(t, res))
}

// pkgDir is the package directory (tests change the working directory).
var pkgDir = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return wd
}()

// TestSeedDeterministic: the same input gives the same bytes, report included.
func TestSeedDeterministic(t *testing.T) {
	dir := seedDir(t)
	t.Chdir(dir)
	first, err := Import(seedOptions())
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		again, err := Import(seedOptions())
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(first.Files, again.Files); d != "" {
			t.Fatalf("a second import differs:\n%s", d)
		}
		if reportText(t, first) != reportText(t, again) {
			t.Fatal("a second import's report differs")
		}
	}
}

// TestSeedPlanAgainstHomelab: gitedge plan between the seed's import and
// examples/homelab, which was written by hand from the same seed, shows
// no difference in listeners, routes, backends and VRRP.
func TestSeedPlanAgainstHomelab(t *testing.T) {
	example, err := reconcile.LoadDir(filepath.Join("..", "examples", "homelab"))
	if err != nil {
		t.Fatal(err)
	}
	dir := seedDir(t)
	t.Chdir(dir)
	res, err := Import(seedOptions())
	if err != nil {
		t.Fatal(err)
	}
	imported, err := reconcile.Load(mapFS(res.Files))
	if err != nil {
		t.Fatal(err)
	}
	p := reconcile.Diff(example, imported)
	p.Changes = slices.DeleteFunc(p.Changes, func(c reconcile.ItemChange) bool {
		return !slices.Contains([]string{"Listener", "Route", "Backend", "VRRPInstance"}, c.Kind)
	})
	var b strings.Builder
	if err := p.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if len(p.Changes) != 0 {
		t.Errorf("plan from examples/homelab to the import, listeners, routes, backends and VRRP only, is not empty:\n%s", b.String())
	}
}
