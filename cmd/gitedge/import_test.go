package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestImportCommand(t *testing.T) {
	cfg := "../../importer/testdata/roundtrip/multi.cfg"
	out := filepath.Join(t.TempDir(), "edge")

	code, stdout, stderr := gitedge(t, "import", "--haproxy", cfg, "--out", out)
	if code != 0 {
		t.Fatalf("import: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"Not carried over (", "Carried over with a difference (", "Notes (",
		"wrote " + out + ": 17 file(s): 0 node(s), 2 listener(s), 8 route(s), 8 backend(s), 0 VRRP instance(s), 0 VM(s)",
		"check with gitedge validate " + out,
		`multi.cfg:33: backend "web-main": server w3 192.0.2.12:80 check inter 1s rise 2 fall 3 backup: backup server: gitedge has no backup servers`,
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if code, vout, verr := gitedge(t, "validate", out); code != 0 {
		t.Fatalf("validate of the import: exit %d\n%s%s", code, vout, verr)
	}
	if _, err := os.Stat(filepath.Join(out, "backends", "web-main.yaml")); err != nil {
		t.Error(err)
	}

	// A non-empty --out is refused, and left alone.
	code, _, stderr = gitedge(t, "import", "--haproxy", cfg, "--out", out)
	if code != 1 || !strings.Contains(stderr, "not empty: refusing to overwrite it (use --force") {
		t.Errorf("second import: exit %d\n%s", code, stderr)
	}
	// --force replaces the YAML files (a stale one goes) and keeps the rest.
	stale := filepath.Join(out, "routes", "old.yaml")
	keep := filepath.Join(out, ".git", "config")
	for _, p := range []string{stale, keep} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x: 1\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, stdout, stderr = gitedge(t, "import", "--haproxy", cfg, "--out", out, "--force")
	if code != 0 || !strings.Contains(stdout, "removed routes/old.yaml") {
		t.Errorf("import --force: exit %d\n%s%s", code, stdout, stderr)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale file still there: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Errorf("non-YAML file removed: %v", err)
	}

	// --strict fails on what is not carried over, and writes nothing.
	strictOut := filepath.Join(t.TempDir(), "strict")
	code, stdout, stderr = gitedge(t, "import", "--haproxy", cfg, "--out", strictOut, "--strict")
	if code != 1 || !strings.Contains(stderr, "--strict:") || !strings.Contains(stderr, "nothing written") || !strings.Contains(stdout, "Not carried over") {
		t.Errorf("import --strict: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(strictOut); !os.IsNotExist(err) {
		t.Errorf("--strict wrote %s: %v", strictOut, err)
	}
}

func TestImportCommandErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.cfg")
	if err := os.WriteFile(bad, []byte("frontend f\n  bind :80\n  use_backend nope if missing\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no --out", []string{"--haproxy", bad}, 2, "--out DIR is required"},
		{"no input", []string{"--out", out}, 2, "nothing to import"},
		{"positional", []string{"--out", out, bad}, 2, "unexpected argument"},
		{"bad --keepalived", []string{"--keepalived", "lb-0", "--out", out}, 2, "expected NODE=FILE"},
		{"missing file", []string{"--haproxy", filepath.Join(dir, "none.cfg"), "--out", out}, 1, "none.cfg: no such file"},
		{"located errors", []string{"--haproxy", bad, "--out", out}, 1, bad + `:3: use_backend: ACL "missing" is used but never defined`},
		{"both errors", []string{"--haproxy", bad, "--out", out}, 1, bad + `:3: use_backend: no backend named "nope"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := gitedge(t, append([]string{"import"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant %q", code, tc.code, stderr, tc.want)
			}
		})
	}
	// An error that points at the report ("each server line is in the
	// report") comes with the report.
	sslOnly := filepath.Join(dir, "ssl.cfg")
	if err := os.WriteFile(sslOnly, []byte("defaults\n  mode http\n  timeout client 5s\n  timeout connect 1s\n  timeout server 1s\n"+
		"frontend f\n  bind :80\n  default_backend web\nbackend web\n  server w1 192.0.2.10:443 ssl verify none\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := gitedge(t, "import", "--haproxy", sslOnly, "--out", out)
	if code != 1 || !strings.Contains(stderr, "(each server line is in the report)") || !strings.Contains(stderr, "nothing written") ||
		!strings.Contains(stdout, sslOnly+`:10: backend "web": server w1 192.0.2.10:443 ssl verify none: ssl: gitedge does not open TLS to servers`) {
		t.Errorf("an error pointing at the report: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a failed import wrote %s", out)
	}
	// keepalived alone (multicast: no unicast_src_ip): --address gives the
	// nodes their addresses.
	ka := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(ka, []byte("vrrp_instance VI_1 {\n  interface eth0\n  virtual_router_id 33\n  priority 100\n  virtual_ipaddress {\n    192.0.2.254/24\n  }\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := gitedge(t, "import", "--keepalived", "lb-0="+ka, "--out", out); code != 1 || !strings.Contains(stderr, "give it with --address lb-0=ADDRESS") {
		t.Errorf("keepalived without addresses: exit %d, stderr:\n%s", code, stderr)
	}
	if code, _, stderr := gitedge(t, "import", "--keepalived", "lb-0="+ka, "--address", "lb-0=192.0.2.250", "--out", out); code != 0 {
		t.Errorf("keepalived with --address: exit %d, stderr:\n%s", code, stderr)
	}
	if code, vout, verr := gitedge(t, "validate", out); code != 0 {
		t.Errorf("the keepalived import is not valid: %s%s", vout, verr)
	}
	if code, _, stderr := gitedge(t, "import", "--address", "lb-0", "--out", out); code != 2 || !strings.Contains(stderr, "expected NODE=ADDRESS") {
		t.Errorf("bad --address: exit %d, stderr:\n%s", code, stderr)
	}
	if _, _, stderr := gitedge(t, "help"); !strings.Contains(stderr, "import ") {
		t.Errorf("help does not list import:\n%s", stderr)
	}
}
