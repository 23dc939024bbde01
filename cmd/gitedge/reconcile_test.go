package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/testkit"
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
	testkit.CopyTree(t, "../../examples/homelab", named, map[string][][2]string{"edge.yaml": {{`password: "9999"`, "password: {secret: vrrp-VI_1}"}}})
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
	testkit.CopyTree(t, "../../examples/homelab", aged, map[string][][2]string{"edge.yaml": {{`password: "9999"`, "password: {age: " + strconv.Quote(armored) + "}"}}})
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

// TestReconcileOnceExitCodes: a one-shot that applies the VM changes
// exits 0 (it used to exit 1 whenever the VM pass made changes), a second
// one with nothing to do exits 0, one that may not lead and finds changes
// exits 1 saying why, and --dry-run prints the plan and writes nothing.
func TestReconcileOnceExitCodes(t *testing.T) {
	pve := testkit.StartPvesim(t, pvesim.Options{Tokens: map[string]string{testTokenID: testSecret}, TaskDuration: time.Millisecond, BootDelay: time.Millisecond})
	cfg := writeNodeConfig(t, pve.URL, pve.CAPEM)
	base := []string{"reconcile", "--once", "--config", cfg, "--source", "../../examples/homelab"}

	code, out, errOut := gitedge(t, append(base, "--dry-run")...)
	for _, want := range []string{": planned", "plan (nothing applied on this node yet: everything is added):", `+ Route "whoami"`,
		"infra (dry run: planned only):", "create VM 150"} {
		if !strings.Contains(out, want) {
			t.Errorf("--dry-run: stdout lacks %q", want)
		}
	}
	if code != 0 || len(pve.Sim.Writes()) != 0 {
		t.Fatalf("--dry-run: exit %d, writes %v\n%s\n%s", code, pve.Sim.Writes(), out, errOut)
	}

	code, out, errOut = gitedge(t, base...)
	if code != 1 || !strings.Contains(errOut, "not converged: 2 VM change(s) left to the infra leader") {
		t.Errorf("not the leader: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = gitedge(t, append(base, "--lead")...)
	if code != 0 || !strings.Contains(out, "done: create VM 150") {
		t.Errorf("applied: exit %d, want 0\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = gitedge(t, append(base, "--lead")...)
	if code != 0 || strings.Contains(out, "done:") {
		t.Errorf("nothing to do: exit %d, want 0\n%s\n%s", code, out, errOut)
	}
}

// TestReconcileSourceWithoutSourceURL: with --source DIR the node config
// needs no source section (it used to say "source.url: missing").
func TestReconcileSourceWithoutSourceURL(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "gitedge.yaml")
	if err := os.WriteFile(cfg, []byte("node: lb-0\nstateDir: "+t.TempDir()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := gitedge(t, "reconcile", "--once", "--config", cfg, "--source", "../../examples/homelab")
	if code != 0 || !strings.Contains(out, ": applied") {
		t.Errorf("exit %d\n%s\n%s", code, out, errOut)
	}
}
