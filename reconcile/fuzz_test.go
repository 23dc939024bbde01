package reconcile

import (
	"errors"
	"fmt"
	"testing"
	"testing/fstest"

	"github.com/gitedge/gitedge/internal/testkit"
)

// FuzzLoad feeds arbitrary bytes as one YAML file. Load must never panic,
// must return either a Desired or located Errors (never both), and a
// Desired it returns must plan consistently.
func FuzzLoad(f *testing.F) {
	testkit.SeedFiles(f, "../examples/homelab/*.yaml", "testdata/invalid/*/*.yaml", "testdata/valid/*/*.y*ml")
	testkit.Seeds(f, "---\n---\n", "kind: Edge\n--- {kind: Route}\n...\n", "a: &x [*x]\n")
	// The forms of a secret (secrets.Value decodes them itself).
	edge := "apiVersion: gitedge/v1\nkind: Edge\nmetadata: {name: e}\nspec:\n  nodes: [{name: a, address: 192.0.2.1}]\n" +
		"  failover: [{name: V, interface: eth0, virtualRouterID: 1, version: 2, priority: {a: 1}, vips: [192.0.2.9/24], auth: {type: pass, password: %s}}]\n"
	for _, pw := range []string{`{secret: vrrp-v}`, `{secret: "../x", file: y}`, `{age: "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"}`, `{secret: [1]}`, `7`, `{}`} {
		f.Add([]byte(fmt.Sprintf(edge, pw)))
	}
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
