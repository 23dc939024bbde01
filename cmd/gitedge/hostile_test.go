package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestValidateAndPlanRefuseLinksOutside is issue 10 defect 4 through the
// CLI: a link to a secret-looking file outside the repository is an error
// naming the link in `validate` and `plan`, text and JSON, and the file's
// content never appears; a link inside is followed by both.
func TestValidateAndPlanRefuseLinksOutside(t *testing.T) {
	root := t.TempDir()
	repo := filepath.Join(root, "repo")
	for name, body := range routeFiles("127.0.0.1:18080", "192.0.2.10:80", "192.0.2.11:80", "one") {
		testkit.WriteFile(t, filepath.Join(repo, name), body)
	}
	testkit.WriteFile(t, filepath.Join(root, "secret.env"), "AWS_SECRET_ACCESS_KEY=hunter2-OUTSIDE\n")
	if err := os.Symlink("../../secret.env", filepath.Join(repo, "routes", "leak.yaml")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(root, "secret.env"), filepath.Join(repo, "abs.yaml")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"validate", repo},
		{"validate", "--output", "json", repo},
		{"plan", repo},
		{"plan", repo, "--base", repo, "--output", "json"},
	} {
		code, out, errOut := gitedge(t, args...)
		all := out + errOut
		for _, want := range []string{"routes/leak.yaml", `../../secret.env\" points outside the repository`, "abs.yaml", `secret.env\" is absolute`} {
			if !slices.Contains(args, "json") {
				want = strings.ReplaceAll(want, `\"`, `"`)
			}
			if code != 1 || !strings.Contains(all, want) {
				t.Errorf("%v: exit %d, output lacks %q:\n%s", args, code, want, all)
			}
		}
		if strings.Contains(all, "hunter2") || strings.Contains(all, "AWS_SECRET") {
			t.Fatalf("%v printed the content of a file outside the repository:\n%s", args, all)
		}
	}
	// A link inside is followed: validate and plan agree.
	os.Remove(filepath.Join(repo, "routes", "leak.yaml"))
	os.Remove(filepath.Join(repo, "abs.yaml"))
	testkit.WriteFile(t, filepath.Join(repo, "shared", "b.txt"), "apiVersion: gitedge/v1\nkind: Route\nmetadata: {name: b}\nspec:\n  hosts: [b.test]\n  http: {backend: two}\n")
	if err := os.Symlink("../shared/b.txt", filepath.Join(repo, "routes", "b.yaml")); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := gitedge(t, "validate", repo); code != 0 || !strings.Contains(out, "2 route(s)") {
		t.Errorf("validate with a link inside: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := gitedge(t, "plan", repo); code != 0 || !strings.Contains(out, `+ Route "b"`) {
		t.Errorf("plan with a link inside: exit %d\n%s%s", code, out, errOut)
	}
}

// TestValidateNodeConfig is issue 10 defect 6: what the node would refuse
// at run time is caught by validate, from the repository alone or with
// --node-config.
func TestValidateNodeConfig(t *testing.T) {
	repo := t.TempDir()
	files := routeFiles("127.0.0.1:9100", "192.0.2.10:80", "192.0.2.11:80", "one")
	files["edge.yaml"] = strings.Replace(files["edge.yaml"], "  listeners:\n", "  nodes: [{name: lb-1, address: 192.0.2.251}]\n  listeners:\n", 1) +
		"    - {name: all, bind: \"0.0.0.0:8080\", mode: http, defaultBackend: one}\n" +
		"    - {name: local, bind: \"127.0.0.1:8080\", mode: http, defaultBackend: one}\n"
	for name, body := range files {
		testkit.WriteFile(t, filepath.Join(repo, name), body)
	}
	code, _, errOut := gitedge(t, "validate", repo)
	if code != 1 || !strings.Contains(errOut, `edge.yaml:9: Edge "test": spec.listeners[2].bind: listener "local" binds 127.0.0.1:8080, which clashes with listener "all" on 0.0.0.0:8080 (spec.listeners[1])`) ||
		!strings.Contains(errOut, "1 error(s)") {
		t.Fatalf("repository alone: exit %d\n%s", code, errOut)
	}
	nc := filepath.Join(t.TempDir(), "gitedge.yaml")
	testkit.WriteFile(t, nc, "node: lb-0\nsource: {url: /srv/edge}\nadmin: {listen: '127.0.0.1:9100'}\nwebhook: {listen: ':9000', secretFile: /etc/gitedge/hook}\n")
	code, _, errOut = gitedge(t, "validate", repo, "--node-config", nc)
	for _, want := range []string{
		`edge.yaml:5: Edge "test": spec.nodes: this node, "lb-0" (node config ` + nc + `), is not in spec.nodes [lb-1]`,
		`edge.yaml:7: Edge "test": spec.listeners[0].bind: listener "http" binds 127.0.0.1:9100, which clashes with this node's admin.listen 127.0.0.1:9100 (node config ` + nc + `): move one of them to another port`,
		"3 error(s); nothing would be applied",
	} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("--node-config: exit %d, stderr lacks %q:\n%s", code, want, errOut)
		}
	}
	if code, _, errOut := gitedge(t, "validate", repo, "--node-config", "/nonexistent.yaml"); code != 1 || !strings.Contains(errOut, "node config: open /nonexistent.yaml") {
		t.Errorf("missing node config: exit %d %s", code, errOut)
	}
}

// TestValidateOversizedRepository is issue 10 defect 5 through the CLI: a
// 1 GiB file (sparse) is refused by its size, at once.
func TestValidateOversizedRepository(t *testing.T) {
	repo := t.TempDir()
	for name, body := range routeFiles("127.0.0.1:18080", "192.0.2.10:80", "192.0.2.11:80", "one") {
		testkit.WriteFile(t, filepath.Join(repo, name), body)
	}
	f, err := os.Create(filepath.Join(repo, "routes", "huge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(1 << 30)
	f.Close()
	code, _, errOut := gitedge(t, "validate", repo)
	if want := "routes/huge.yaml: 1073741824 bytes: a file may hold at most 8 MiB (split it)\n"; code != 1 || !strings.HasPrefix(errOut, want) {
		t.Errorf("exit %d\n%s\nwant %s", code, errOut, want)
	}
	code, _, errOut = gitedge(t, "validate", "-h")
	if code != 0 || !strings.Contains(errOut, "Limits: a file at most 8 MiB and 10000 documents; a repository at most 20000 files, 64 MiB and 100000 routes; a route at most 1000 hosts.") {
		t.Errorf("validate -h does not document the limits:\n%s", errOut)
	}
}

// TestInfraErrorOnTheLeaderSaysLeader is issue 10 defect 7: an infra
// failure on the leader (Proxmox refuses the token) logs "leader":true,
// in the loop's line and in infra's own.
func TestInfraErrorOnTheLeaderSaysLeader(t *testing.T) {
	dir := t.TempDir()
	repo := filepath.Join(dir, "repo")
	files := routeFiles(testkit.QuietPort(t), "192.0.2.10:80", "192.0.2.11:80", "one")
	files["edge.yaml"] = strings.Replace(files["edge.yaml"], "  listeners:\n", "  nodes: [{name: lb-0, address: 192.0.2.250}]\n  infra: {leader: lb-0}\n  listeners:\n", 1)
	files["vms.yaml"] = "apiVersion: gitedge/v1\nkind: VirtualMachine\nmetadata: {name: vm-a}\nspec: {vmid: 200, node: proxmox1, clone: tmpl}\n"
	for name, body := range files {
		testkit.WriteFile(t, filepath.Join(repo, name), body)
	}
	testkit.WriteFile(t, filepath.Join(dir, "token"), "secret\n")
	pve := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "authentication failure", http.StatusUnauthorized)
	}))
	t.Cleanup(pve.Close)
	admin := testkit.QuietPort(t)
	cfg := filepath.Join(dir, "gitedge.yaml")
	testkit.WriteFile(t, cfg, "node: lb-0\nsource: {url: "+repo+"}\nadmin: {listen: '"+admin+"'}\nstateDir: "+filepath.Join(dir, "state")+"\n"+
		"proxmox: {url: '"+pve.URL+"/api2/json', tokenID: 'gitedge@pve!edge', tokenSecretFile: "+filepath.Join(dir, "token")+", insecureSkipVerify: true}\n")
	n := startNode(t, admin, "--config", cfg, "--source", repo)
	n.waitLog(`"msg":"infra apply failed"`)
	n.waitLog(`"msg":"infra pass finished with errors"`)
	for _, msg := range []string{"infra apply failed", "infra pass finished with errors"} {
		line := n.logLine(msg)
		if !strings.Contains(line, `"leader":true`) {
			t.Errorf("the leader logs: %s", line)
		}
		t.Logf("log: %s", line)
	}
	if strings.Contains(n.logs.String(), `"leader":false`) {
		t.Errorf("a line says leader false on the leader:\n%s", n.logs)
	}
}
