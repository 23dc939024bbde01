package main

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestUsage: what the command says when it is misused, before building
// anything. The packaging package's tests run the command for real, as
// the Makefile does.
func TestUsage(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "gitedge")
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args     []string
		code     int
		inStderr string
	}{
		{nil, 2, "usage: build deb|archive"},
		{[]string{"rpm"}, 2, `unknown command "rpm"`},
		{[]string{"sums"}, 2, "usage: build sums DIR"},
		{[]string{"sums", filepath.Join(t.TempDir(), "none")}, 1, "build: SHA256SUMS: open"},
		{[]string{"deb", "--mtime", "yesterday"}, 2, `--mtime "yesterday": expected seconds since the epoch`},
		{[]string{"deb", "--arch", "amd64", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"deb", "--version", "v1", "--arch", "mips", "--binary", bin, "--out", t.TempDir()}, 1, `build: deb: arch "mips": expected one of amd64, arm64`},
		{[]string{"archive", "--version", "v1", "--arch", runtime.GOARCH, "--binary", bin, "--out", t.TempDir()}, 1, "build: archive: binary " + bin + ": EOF"},
	} {
		var stdout, stderr strings.Builder
		code := run(tc.args, &stdout, &stderr)
		if code != tc.code || stdout.String() != "" || !strings.Contains(stderr.String(), tc.inStderr) {
			t.Errorf("build %q: exit %d, stdout %q, stderr %q; want %d and stderr with %q", tc.args, code, stdout.String(), stderr.String(), tc.code, tc.inStderr)
		}
	}
}
