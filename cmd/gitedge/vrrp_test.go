package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

// The command refuses what it cannot run, before touching the network.
func TestVrrpCommandErrors(t *testing.T) {
	noFailover := t.TempDir()
	os.WriteFile(filepath.Join(noFailover, "edge.yaml"), []byte(
		"apiVersion: gitedge/v1\nkind: Edge\nmetadata: {name: x}\nspec:\n  nodes: [{name: a, address: 192.0.2.1}]\n"), 0o644)
	named := filepath.Join(t.TempDir(), "named")
	testkit.CopyTree(t, "../../examples/homelab", named, map[string][][2]string{"edge.yaml": {{`password: "9999"`, "password: {secret: vrrp-VI_1}"}}})
	t.Setenv("CREDENTIALS_DIRECTORY", "")
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no node", []string{"vrrp", "../../examples/homelab"}, 2, "usage: gitedge vrrp DIR --node NAME"},
		{"no dir", []string{"vrrp", "--node", "lb-0"}, 2, "usage"},
		{"unknown node", []string{"vrrp", "../../examples/homelab", "--node", "lb-9"}, 1, `node "lb-9" is not in the Edge's spec.nodes [lb-0 lb-1]`},
		{"bad dir", []string{"vrrp", filepath.Join(t.TempDir(), "missing"), "--node", "lb-0"}, 1, "loading"},
		{"no instances", []string{"vrrp", noFailover, "--node", "a"}, 1, "declares no failover instances"},
		{"a secret missing", []string{"vrrp", named, "--node", "lb-0", "--secrets-dir", empty}, 1,
			filepath.Join(empty, "vrrp-VI_1") + " (--secrets-dir): write the value into " + filepath.Join(empty, "vrrp-VI_1") +
				" (chown root:gitedge, chmod 0640), or name another directory with --secrets-dir, or hand it over as the systemd credential vrrp-VI_1"},
		{"bad log format", []string{"vrrp", "../../examples/homelab", "--node", "lb-0", "--log-format", "xml"}, 2, "--log-format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := dispatch(context.Background(), &cliEnv{stdout: &out, stderr: &errb}, tt.args)
			if code != tt.code || !strings.Contains(errb.String(), tt.want) {
				t.Fatalf("exit %d (want %d), stderr:\n%s\nwant it to contain %q", code, tt.code, errb.String(), tt.want)
			}
		})
	}
}
