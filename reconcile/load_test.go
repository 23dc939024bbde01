package reconcile

import (
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestInvalidRepositories loads every repository under testdata/invalid and
// compares the full error list, one error per line with file, line,
// document and field, against the want.txt beside it.
func TestInvalidRepositories(t *testing.T) {
	dirs, err := filepath.Glob("testdata/invalid/*")
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 30 {
		t.Fatalf("only %d invalid repositories in testdata/invalid; the foundation issue asks for at least 30", len(dirs))
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Parallel()
			d, err := LoadDir(dir)
			if err == nil {
				t.Fatalf("loaded without error: %+v", d)
			}
			if d != nil {
				t.Errorf("Load returned a Desired with errors; validation must be all-or-nothing")
			}
			errs, ok := errors.AsType[Errors](err)
			if !ok {
				t.Fatalf("error is %T, want reconcile.Errors: %v", err, err)
			}
			var got strings.Builder
			for _, e := range errs {
				got.WriteString(e.Error())
				got.WriteString("\n")
			}
			testkit.Golden(t, filepath.Join(dir, "want.txt"), got.String())
		})
	}
}

func TestValidRepositories(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/valid/*")
	dirs = append(dirs, "../examples/homelab", "../examples/homelab-v3")
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			if _, err := LoadDir(dir); err != nil {
				t.Fatalf("%s: %v", dir, err)
			}
		})
	}
}

// TestHomelabV3IsHomelab keeps the v3 variant a copy of the homelab
// repository that differs only in its failover instances.
func TestHomelabV3IsHomelab(t *testing.T) {
	v2, err := LoadDir("../examples/homelab")
	if err != nil {
		t.Fatal(err)
	}
	v3, err := LoadDir("../examples/homelab-v3")
	if err != nil {
		t.Fatal(err)
	}
	if !v2.Dataplane.Equal(v3.Dataplane) {
		t.Errorf("dataplane differs")
	}
	if diff := cmp.Diff(v2.Infra, v3.Infra, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
		t.Errorf("infra differs (-v2 +v3):\n%s", diff)
	}
	if !slices.Equal(v2.Edge.Nodes, v3.Edge.Nodes) || v2.Edge.InfraLeader != v3.Edge.InfraLeader {
		t.Errorf("nodes or infra leader differ")
	}
	for _, in := range v3.Edge.Failover {
		if in.Version != 3 || in.AuthPass != "" {
			t.Errorf("instance %s: version %d auth %q, want v3 without auth", in.Name, in.Version, in.AuthPass)
		}
	}
	if v2.Edge.Failover[0].Version != 2 || v2.Edge.Failover[0].AuthPass != "9999" {
		t.Errorf("homelab VI_1 must be v2 with PASS 9999 as the seed keepalived")
	}
}
