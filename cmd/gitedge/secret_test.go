package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/secrets"
)

const secretValue = "Zq7-s3cr" // must never show in an output

// gitedgeIn is gitedge with standard input.
func gitedgeIn(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), &cliEnv{stdout: &out, stderr: &errb, stdin: strings.NewReader(stdin)}, args)
	return code, out.String(), errb.String()
}

// TestSecretCommand: keygen, recipient and encrypt make a value the node
// decrypts; the value itself is never printed.
func TestSecretCommand(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "age.key")
	code, out, errs := gitedge(t, "secret", "keygen", "--out", key)
	rcpt := strings.TrimSpace(out)
	if code != 0 || !strings.HasPrefix(rcpt, "age1") || !strings.Contains(errs, "wrote "+key) {
		t.Fatalf("keygen: %d %q %q", code, out, errs)
	}
	if st, err := os.Stat(key); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v %v", st.Mode(), err)
	}
	if code, _, errs := gitedge(t, "secret", "keygen", "--out", key); code != 1 || !strings.Contains(errs, "exists: an identity is never overwritten") {
		t.Errorf("keygen over an identity: %d %q", code, errs)
	}
	if code, out, _ := gitedge(t, "secret", "recipient", "--identity", key); code != 0 || strings.TrimSpace(out) != rcpt {
		t.Errorf("recipient: %d %q, want %s", code, out, rcpt)
	}
	cfg := filepath.Join(dir, "gitedge.yaml")
	if err := os.WriteFile(cfg, []byte("node: lb-0\nsource: {url: /srv/edge}\nsecrets: {ageIdentity: "+key+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := gitedge(t, "secret", "recipient", "--config", cfg); code != 0 || strings.TrimSpace(out) != rcpt {
		t.Errorf("recipient of the node config: %d %q, want %s", code, out, rcpt)
	}
	rfile := filepath.Join(dir, ".age-recipients")
	if err := os.WriteFile(rfile, []byte("# lb-0\n"+rcpt+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = gitedgeIn(t, secretValue+"\n", "secret", "encrypt", "--recipients-file", rfile)
	if code != 0 || !strings.HasPrefix(out, "age: |\n  -----BEGIN AGE ENCRYPTED FILE-----\n") || strings.Contains(out+errs, secretValue) {
		t.Fatalf("encrypt: %d\n%s\n%s", code, out, errs)
	}
	armored := strings.ReplaceAll(strings.TrimPrefix(out, "age: |\n"), "\n  ", "\n")
	got, err := (&secrets.Store{AgeIdentity: key}).Resolve(secrets.Value{Age: strings.TrimPrefix(armored, "  ")})
	if err != nil || got != secretValue {
		t.Errorf("the node decrypts %q, %v; want the value without its newline", got, err)
	}
	if code, out, _ := gitedgeIn(t, secretValue, "secret", "encrypt", "--recipient", rcpt, "--armor"); code != 0 || !strings.HasPrefix(out, "-----BEGIN AGE ENCRYPTED FILE-----") {
		t.Errorf("--armor: %d %q", code, out)
	}

	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string
	}{
		{"no action", "", []string{"secret"}, 2, "usage: gitedge secret"},
		{"unknown action", "", []string{"secret", "decrypt"}, 2, `unknown action "decrypt"`},
		{"flag of another action", "", []string{"secret", "encrypt", "--out", "x"}, 2, "--out does not apply to it"},
		{"no recipient", "x", []string{"secret", "encrypt"}, 1, "no recipient"},
		{"a private key as recipient", "x", []string{"secret", "encrypt", "--recipient", "AGE-SECRET-KEY-1QQQQ"}, 1, "--recipient #1 is not an age recipient"},
		{"nothing to encrypt", "\n", []string{"secret", "encrypt", "--recipient", rcpt}, 1, "nothing to encrypt"},
		{"both identity and config", "", []string{"secret", "recipient", "--identity", key, "--config", cfg}, 2, "not both"},
	}
	for _, tt := range tests {
		code, out, errs := gitedgeIn(t, tt.stdin, tt.args...)
		if code != tt.code || !strings.Contains(errs, tt.want) || strings.Contains(out+errs, "QQQQ") {
			t.Errorf("%s: exit %d (want %d), stderr %q, want %q", tt.name, code, tt.code, errs, tt.want)
		}
	}
}

// TestValidateAndPlanWithSecrets: validate checks a reference's form
// without the node, resolves it with --node-config (or says, located,
// what is missing), warns about a password in git; plan names where a
// password comes from. No output holds the value.
func TestValidateAndPlanWithSecrets(t *testing.T) {
	root := t.TempDir()
	plain := filepath.Join(root, "plain")
	testkit.CopyTree(t, "../../examples/homelab", plain, map[string][][2]string{"edge.yaml": {{`password: "9999"`, `password: "` + secretValue[:8] + `"`}}})
	named := filepath.Join(root, "named")
	testkit.CopyTree(t, "../../examples/homelab", named, map[string][][2]string{"edge.yaml": {{`password: "9999"`, "password: {secret: vrrp-vi1}"}}})
	sdir := filepath.Join(root, "secrets")
	if err := os.MkdirAll(sdir, 0o700); err != nil {
		t.Fatal(err)
	}
	node := func(name, dir string) string {
		p := filepath.Join(root, name+".yaml")
		y := "node: lb-0\nsource: {url: /srv/edge}\nadmin: {listen: '127.0.0.1:19100'}\nsecrets: {dir: " + dir + "}\n"
		if err := os.WriteFile(p, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withSecret, without := node("with", sdir), node("without", filepath.Join(root, "empty"))
	if err := os.WriteFile(filepath.Join(sdir, "vrrp-vi1"), []byte(secretValue[:8]+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv(secrets.CredentialsEnv, "")

	tests := []struct {
		name    string
		args    []string
		code    int
		out, er string // substrings of stdout and stderr
	}{
		{"plain: a warning", []string{"validate", plain}, 0, "valid:", "warning: edge.yaml:21: Edge \"home\": spec.failover[0].auth.password: the value is in the repository"},
		{"named, no node", []string{"validate", named}, 0, "1 secret reference(s), resolved on each node (validate --node-config FILE resolves them as that node does):\n  Edge \"home\": spec.failover[0].auth.password: secret \"vrrp-vi1\"", ""},
		{"named, resolved", []string{"validate", named, "--node-config", withSecret}, 0, "1 secret(s) resolved with node config " + withSecret, ""},
		{"named, missing", []string{"validate", named, "--node-config", without}, 1, "",
			"edge.yaml:21: Edge \"home\": spec.failover[0].auth.password: secret \"vrrp-vi1\" is not on this node: no file " + filepath.Join(root, "empty", "vrrp-vi1")},
		{"json", []string{"validate", plain, "--output", "json"}, 0, `"warnings": [`, ""},
		{"plan", []string{"plan", named, "--base", plain}, 0, "auth: pass (password: in the repository) → pass (password: secret \"vrrp-vi1\")", ""},
		{"plan json", []string{"plan", named, "--base", plain, "--output", "json"}, 0, `"new": "pass (password: secret \"vrrp-vi1\")"`, ""},
	}
	for _, tt := range tests {
		code, out, errs := gitedge(t, tt.args...)
		if code != tt.code || !strings.Contains(out, tt.out) || !strings.Contains(errs, tt.er) {
			t.Errorf("%s: exit %d (want %d)\nstdout:\n%s\nstderr:\n%s\nwant %q / %q", tt.name, code, tt.code, out, errs, tt.out, tt.er)
		}
		if strings.Contains(out+errs, secretValue[:8]) {
			t.Errorf("%s: the output shows the password:\n%s%s", tt.name, out, errs)
		}
	}
	_, out, _ := gitedge(t, "validate", named, "--node-config", withSecret, "--output", "json")
	var v struct {
		Secrets []struct {
			From     string
			Resolved bool
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || len(v.Secrets) != 1 || !v.Secrets[0].Resolved || v.Secrets[0].From != `secret "vrrp-vi1"` {
		t.Errorf("json secrets %v: %s", err, out)
	}
}

// TestSecretsReachTheirUsers: the node resolves the repository's secrets
// for the subsystems it runs: VRRP's when it runs VRRP (also gitedge
// vrrp, which has no node-local checks), a BGP peer's when it runs BGP
// (gitedge run, also with --no-vrrp), never for a proxy-only node, which
// does not need them; a reload that changes the secrets section applies
// it live.
func TestSecretsReachTheirUsers(t *testing.T) {
	nc, err := nodeconfig.Parse("/etc/gitedge/gitedge.yaml", []byte("node: lb-0\nsource: {url: /srv/edge}\nsecrets: {dir: /srv/secrets}\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name          string
		o             nodeOptions
		secrets       bool
		noVRRP, noBGP bool
		node          string
	}{
		{"run", nodeOptions{proxy: true, vrrp: true, bgp: true, local: true}, true, false, false, "lb-0"},
		{"run --no-vrrp", nodeOptions{proxy: true, bgp: true, local: true}, true, true, false, "lb-0"},
		{"vrrp", nodeOptions{vrrp: true}, true, false, true, ""},
		{"proxy", nodeOptions{proxy: true, local: true}, false, true, true, "lb-0"},
	}
	for _, tt := range tests {
		loc := localChecks(nc, tt.o)
		if (loc.Secrets != nil) != tt.secrets || loc.Node != tt.node || tt.secrets && loc.Secrets.Dir != "/srv/secrets" ||
			loc.NoVRRP != tt.noVRRP || loc.NoBGP != tt.noBGP {
			t.Errorf("%s: Local %+v", tt.name, loc)
		}
	}
	changed, err := nodeconfig.Parse("/etc/gitedge/gitedge.yaml", []byte("node: lb-0\nsource: {url: /srv/edge}\nsecrets: {dir: /srv/other}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if live, restart := configChanges(nc, changed); !slices.Equal(live, []string{"secrets"}) || len(restart) != 0 {
		t.Errorf("a new secrets section: live %v, restart %v", live, restart)
	}
}
