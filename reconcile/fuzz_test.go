package reconcile

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
)

// FuzzLoad feeds arbitrary bytes as one YAML file. Load must never panic,
// must return either a Desired or located Errors (never both), and a
// Desired it returns must plan consistently.
func FuzzLoad(f *testing.F) {
	seeds, _ := filepath.Glob("../examples/homelab/*.yaml")
	more, _ := filepath.Glob("testdata/invalid/*/*.yaml")
	valid, _ := filepath.Glob("testdata/valid/*/*.y*ml")
	for _, p := range append(append(seeds, more...), valid...) {
		if data, err := os.ReadFile(p); err == nil {
			f.Add(data)
		}
	}
	f.Add([]byte("---\n---\n"))
	f.Add([]byte("kind: Edge\n--- {kind: Route}\n...\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Load(fstest.MapFS{"a.yaml": {Data: data}})
		if (d == nil) == (err == nil) {
			t.Fatalf("Load returned d=%v err=%v: exactly one must be set", d != nil, err)
		}
		if err != nil {
			errs, ok := errors.AsType[Errors](err)
			if !ok || len(errs) == 0 {
				t.Fatalf("error %T %v is not a non-empty reconcile.Errors", err, err)
			}
			for _, e := range errs {
				if e.Msg == "" || (e.File != "" && e.File != "a.yaml") {
					t.Fatalf("badly located error %+v", e)
				}
			}
			return
		}
		if !Diff(d, d).Empty() {
			t.Fatalf("a state diffed with itself is not empty")
		}
		_ = Diff(nil, d)
	})
}
