package reconcile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

// TestLimits: an oversized repository is refused with a clear, located
// error, and a file over the limit is refused by its size, before it is
// read.
func TestLimits(t *testing.T) {
	small := &limitSet{fileBytes: 4096, totalBytes: 8192, files: 5, docsPerFile: 3, hostsPerRoute: 3, routes: 2}
	route := func(name string, hosts int) string {
		h := make([]string, hosts)
		for i := range h {
			h[i] = fmt.Sprintf("h%d.%s.example.org", i, name)
		}
		return fmt.Sprintf("---\napiVersion: gitedge/v1\nkind: Route\nmetadata: {name: %s}\nspec:\n  hosts: [%s]\n  http: {backend: web}\n", name, strings.Join(h, ", "))
	}
	base := func() fstest.MapFS {
		return fstest.MapFS{
			"edge.yaml":     {Data: []byte(linkEdge)},
			"backends.yaml": {Data: []byte(linkBackend)},
		}
	}
	tests := []struct {
		name  string
		edit  func(m fstest.MapFS)
		limit *limitSet
		want  string
	}{
		{"within every limit", func(m fstest.MapFS) { m["routes.yaml"] = &fstest.MapFile{Data: []byte(route("a", 3) + route("b", 3))} }, small, ""},
		{"a file too large", func(m fstest.MapFS) { m["big.yaml"] = &fstest.MapFile{Data: []byte(strings.Repeat("#", 4097))} }, small,
			"big.yaml: 4097 bytes: a file may hold at most 4096 bytes (split it)"},
		{"too many documents in a file", func(m fstest.MapFS) {
			m["routes.yaml"] = &fstest.MapFile{Data: []byte(route("a", 1) + route("b", 1) + route("c", 1) + route("d", 1))}
		}, small, "routes.yaml:23: more than 3 documents in one file (split it)"},
		{"too many hosts in a route", func(m fstest.MapFS) { m["routes.yaml"] = &fstest.MapFile{Data: []byte(route("a", 4))} }, small,
			`routes.yaml:6: Route "a": spec.hosts: 4 hosts: a route may hold at most 3 (use a wildcard, or split the route)`},
		{"too many routes", func(m fstest.MapFS) {
			m["r1.yaml"] = &fstest.MapFile{Data: []byte(route("a", 1) + route("b", 1))}
			m["r2.yaml"] = &fstest.MapFile{Data: []byte(route("c", 1))}
		}, small, `r2.yaml:4: Route "c": metadata.name: route 3: a repository may hold at most 2 routes`},
		{"too many files", func(m fstest.MapFS) {
			for i := range 4 {
				m[fmt.Sprintf("r%d.yaml", i)] = &fstest.MapFile{Data: []byte(route(fmt.Sprintf("r%d", i), 1))}
			}
		}, small, "r3.yaml: more than 5 YAML files: the repository is refused"},
		{"too many bytes together", func(m fstest.MapFS) {
			for i := range 3 {
				m[fmt.Sprintf("pad%d.yaml", i)] = &fstest.MapFile{Data: []byte(strings.Repeat("#", 3000))}
			}
		}, small, "pad2.yaml: the YAML files pass 8192 bytes together: the repository is refused"},
		{"3,300 hosts in a route, at the real limit", func(m fstest.MapFS) { m["routes.yaml"] = &fstest.MapFile{Data: []byte(route("a", 3300))} }, nil,
			`routes.yaml:6: Route "a": spec.hosts: 3300 hosts: a route may hold at most 1000 (use a wildcard, or split the route)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := base()
			tt.edit(m)
			_, _, err := LoadWith(m, LoadOptions{limits: tt.limit})
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestLimitFileSizeBeforeRead: a 1 GiB file (sparse: it takes no disk) is
// refused by its size; reading it first would take a gigabyte, and the
// message would be another.
func TestLimitFileSizeBeforeRead(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "edge.yaml"), []byte(linkEdge), 0o644)
	os.WriteFile(filepath.Join(dir, "backends.yaml"), []byte(linkBackend), 0o644)
	f, err := os.Create(filepath.Join(dir, "huge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 30); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = LoadDir(dir)
	if want := "huge.yaml: 1073741824 bytes: a file may hold at most 8 MiB (split it)"; err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
}

// TestLimitsAboveTheBenchmark: the benchmark's repository (10,000 routes,
// 2,000 backends, 500 VMs; BenchmarkLoad loads it) is a tenth of every
// limit or less.
func TestLimitsAboveTheBenchmark(t *testing.T) {
	fsys := bigRepository(10000, 2000, 500)
	var size, biggest int
	for _, f := range fsys {
		size += len(f.Data)
		biggest = max(biggest, len(f.Data))
	}
	for _, c := range []struct {
		what       string
		got, limit int
	}{
		{"files", len(fsys), MaxFiles},
		{"bytes", size, MaxTotalBytes},
		{"bytes in a file", biggest, MaxFileBytes},
		{"routes", 10000, MaxRoutes},
		{"documents in a file", 100, MaxDocumentsPerFile},
	} {
		if c.got*10 > c.limit {
			t.Errorf("the benchmark repository's %s (%d) are more than a tenth of the limit (%d)", c.what, c.got, c.limit)
		}
	}
}
