package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/secrets"
)

func TestReconcileOnce(t *testing.T) {
	code, out, errOut := gitedge(t, "reconcile", "--once", "--config", "/nonexistent", "--source", "../../examples/homelab")
	if code != 0 || !strings.Contains(out, ": applied") || !strings.Contains(out, "desired: 2 node(s), 2 listener(s), 3 route(s)") {
		t.Errorf("valid: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = gitedge(t, "reconcile", "--once", "--dry-run", "--config", "/nonexistent", "--source", "../../examples/homelab")
	if code != 0 || !strings.Contains(out, ": planned") {
		t.Errorf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = gitedge(t, "reconcile", "--once", "--config", "/nonexistent", "--source", "../../reconcile/testdata/invalid/bad-size")
	if code != 1 || !strings.Contains(out, ": invalid") || !strings.Contains(errOut, `spec.disk.size: bad size "8GB"`) {
		t.Errorf("invalid: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := gitedge(t, "reconcile", "--source", "x"); code != 2 {
		t.Errorf("without --once: exit %d, want 2", code)
	}
}

// TestReconcileOnceResolvesSecrets: --once resolves the repository's
// secrets as gitedge run does (a node running VRRP): a secret missing on
// the node, or an age value not encrypted to it, is refused with the
// located error validate --node-config prints, never planned or applied;
// --no-vrrp (a proxy-only node) does not need them.
func TestReconcileOnceResolvesSecrets(t *testing.T) {
	root := t.TempDir()
	t.Setenv(secrets.CredentialsEnv, "")
	named := filepath.Join(root, "named")
	copyDir(t, "../../examples/homelab", named, "edge.yaml", `password: "9999"`, "password: {secret: vrrp-VI_1}")
	other, _, err := secrets.Keygen()
	if err != nil {
		t.Fatal(err)
	}
	_, rcpt, err := secrets.Keygen()
	if err != nil {
		t.Fatal(err)
	}
	rs, err := secrets.ParseRecipients([]string{rcpt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	armored, err := secrets.Encrypt([]byte("9999"), rs)
	if err != nil {
		t.Fatal(err)
	}
	aged := filepath.Join(root, "aged")
	copyDir(t, "../../examples/homelab", aged, "edge.yaml", `password: "9999"`, "password: {age: "+strconv.Quote(armored)+"}")
	key := filepath.Join(root, "age.key")
	if err := os.WriteFile(key, []byte(other), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(root, "empty")
	if err := os.MkdirAll(empty, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(root, "node.yaml")
	y := "node: lb-0\nsource: {url: /srv/edge}\nadmin: {listen: '127.0.0.1:19100'}\nstateDir: " + filepath.Join(root, "state") +
		"\nsecrets: {dir: " + empty + ", ageIdentity: " + key + "}\n"
	if err := os.WriteFile(cfg, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, repo := range []string{named, aged} {
		_, _, want := gitedge(t, "validate", repo, "--node-config", cfg)
		if want == "" {
			t.Fatalf("validate --node-config %s says nothing", repo)
		}
		for _, dry := range []bool{false, true} {
			args := []string{"reconcile", "--once", "--config", cfg, "--source", repo}
			if dry {
				args = append(args, "--dry-run")
			}
			code, out, errs := gitedge(t, args...)
			if code != 1 || !strings.Contains(out, ": invalid") || !strings.Contains(errs, strings.SplitN(want, "\n", 2)[0]) {
				t.Errorf("%v: exit %d\nstdout:\n%s\nstderr:\n%s\nwant the error of validate:\n%s", args, code, out, errs, want)
			}
		}
		args := []string{"reconcile", "--once", "--dry-run", "--no-vrrp", "--config", cfg, "--source", repo}
		if code, out, errs := gitedge(t, args...); code != 0 || !strings.Contains(out, ": planned") {
			t.Errorf("%v: exit %d\nstdout:\n%s\nstderr:\n%s", args, code, out, errs)
		}
	}
}
