package main

import (
	"bytes"
	"cmp"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// gitedge runs the CLI in-process and returns exit code, stdout, stderr.
func gitedge(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), &cliEnv{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

func TestValidateCommand(t *testing.T) {
	code, out, errOut := gitedge(t, "validate", "../../examples/homelab")
	if code != 0 || !strings.Contains(out, "valid: 2 node(s), 2 listener(s), 3 route(s), 4 backend(s), 1 VRRP instance(s), 2 VM(s)") {
		t.Fatalf("validate homelab: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, _, errOut = gitedge(t, "validate", "../../reconcile/testdata/invalid/unknown-fields")
	if code != 1 {
		t.Fatalf("validate invalid: exit %d, want 1", code)
	}
	for _, want := range []string{
		`backends.yaml:5: Backend "web": spec.balnce: unknown field "balnce"`,
		`backends.yaml:7: Backend "web": spec.servers[0].wieght: unknown field "wieght"`,
		"2 error(s); nothing would be applied",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	code, out, _ = gitedge(t, "validate", "--output", "json", "../../reconcile/testdata/invalid/bad-size")
	if code != 1 || !strings.Contains(out, `"field": "spec.disk.size"`) || !strings.Contains(out, `"line": 9`) {
		t.Errorf("validate --output json: exit %d\n%s", code, out)
	}
	if code, _, _ := gitedge(t, "validate", "/nonexistent/dir"); code != 1 {
		t.Errorf("validate of a missing directory: exit %d, want 1", code)
	}
}

func TestPlanCommandBaseDir(t *testing.T) {
	head := testkit.CopyTree(t, "../../examples/homelab", t.TempDir(), map[string][][2]string{
		"vms.yaml": {{"Loadbalancer 0\n  cpu: host\n  cores: 2\n  memory: 4096", "Loadbalancer 0\n  cpu: host\n  cores: 2\n  memory: 2048"}}})
	code, out, errOut := gitedge(t, "plan", head, "--base", "../../examples/homelab")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "~ VirtualMachine \"lb-0\"\n    memory: 4096 → 2048\n\nPlan: 0 to add, 1 to change, 0 to remove.\n" +
		"\nConsequences:\n  - VM lb-0: memory 4096 → 2048 MiB (pending until the VM's next start)\n"
	if out != want {
		t.Errorf("plan output:\n%s\nwant:\n%s", out, want)
	}
}

// TestPlanCommandBaseRef plans a working tree against a git revision of
// the repository that holds it, as a pull-request check does.
func TestPlanCommandBaseRef(t *testing.T) {
	repo := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+repo,
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	edge := filepath.Join(repo, "edge")
	testkit.CopyTree(t, "../../examples/homelab", edge, nil)
	git("init", "-q", "-b", "main")
	git("add", "-A")
	git("commit", "-q", "-m", "homelab")
	// The pull request: change a route's TLS backend in the working tree.
	data, _ := os.ReadFile(filepath.Join(edge, "routes/whoami.yaml"))
	data = bytes.Replace(data, []byte("tls: {backend: k3s-https-ingress}"), []byte("tls: {backend: k8s-https-ingress}"), 1)
	if err := os.WriteFile(filepath.Join(edge, "routes/whoami.yaml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := gitedge(t, "plan", edge, "--base", "main", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `"path": "tls.backend",
          "old": "k3s-https-ingress",
          "new": "k8s-https-ingress"`
	if !strings.Contains(out, want) || strings.Count(out, `"kind"`) != 1 {
		t.Errorf("plan --base main --output json:\n%s", out)
	}
	if code, _, errOut := gitedge(t, "plan", edge, "--base", "no-such-branch"); code != 1 || !strings.Contains(errOut, "no-such-branch") {
		t.Errorf("unknown base: exit %d, stderr %s", code, errOut)
	}
	// An invalid head: the review still names the base commit it was
	// compared with, as a valid one does.
	rev := exec.Command("git", "rev-parse", "main")
	rev.Dir = repo
	id, err := rev.Output()
	if err != nil {
		t.Fatal(err)
	}
	mainID := strings.TrimSpace(string(id))
	if err := os.WriteFile(filepath.Join(edge, "routes/blog.yaml"), []byte("apiVersion: gitedge/v1\nkind: Route\nmetadata: {name: blog}\nspec: {hosts: [blog.domain.tld], http: {backend: nope}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for output, want := range map[string]string{
		"markdown": "Base: `main` (`" + mainID[:12] + "`)",
		"json":     "\"base\": {\n    \"name\": \"main\",\n    \"commit\": \"" + mainID + "\"",
	} {
		code, out, errOut := gitedge(t, "plan", edge, "--base", "main", "--output", output)
		if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, `no Backend named`) {
			t.Errorf("invalid head, --output %s: exit %d, want 1 and the base commit %q\n%s%s", output, code, want, out, errOut)
		}
	}
	git("checkout", "-q", "--", ".")
	// The pull request that adds the routes directory: the base commit has
	// none, so everything is added.
	git("mv", "edge", "edge2")
	git("commit", "-q", "-m", "routes elsewhere")
	code, out, errOut = gitedge(t, "plan", filepath.Join(repo, "edge2"), "--base", "HEAD~1", "--output", "json")
	if code != 0 || !strings.Contains(out, `"action": "add"`) || strings.Contains(out, `"action": "remove"`) || strings.Contains(out, `"action": "change"`) {
		t.Errorf("base without the directory: exit %d\n%s%s", code, out, errOut)
	}
}

func TestVersionCommand(t *testing.T) {
	code, out, _ := gitedge(t, "version")
	if code != 0 || !strings.HasPrefix(out, "gitedge ") || !strings.Contains(out, "commit ") || !strings.Contains(out, ", netpoll ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
	if code, _, _ := gitedge(t, "no-such-command"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

// TestLoggingFlags: every command takes --log-level and --log-format, and
// a bad value is a usage error naming the flag (issue 11: run ignored a
// bad level), before the command does anything.
func TestLoggingFlags(t *testing.T) {
	for name := range commands() {
		for _, tc := range []struct{ flag, value string }{{"--log-level", "loud"}, {"--log-format", "xml"}} {
			code, _, errOut := gitedge(t, name, tc.flag, tc.value)
			if code != 2 || !strings.Contains(errOut, tc.flag+` "`+tc.value+`"`) {
				t.Errorf("gitedge %s %s %s: exit %d, stderr:\n%s", name, tc.flag, tc.value, code, errOut)
			}
		}
	}
	var b bytes.Buffer
	log, err := newLogger(&b, "debug", "json")
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("took", "duration", 1500*time.Millisecond)
	if !strings.Contains(b.String(), `"duration":"1.5s"`) {
		t.Errorf("a duration in a JSON log: %s", b.String())
	}
}

// TestDaemonOffLinux: the commands that serve refuse to start off Linux
// with a message that says what works there.
func TestDaemonOffLinux(t *testing.T) {
	if err := supportedOn("linux"); err != nil {
		t.Fatal(err)
	}
	err := supportedOn("darwin")
	if err == nil || err.Error() != "runs on Linux only (this is darwin); validate, plan, import, inventory, status and version work here" {
		t.Errorf("darwin: %v", err)
	}
}

// TestCommandLineUsage: every command's -h, a bad flag and a bad
// argument count, as an operator sees them. -h prints the usage line and
// flags whose value placeholders are types (a backquoted word in a help
// text used to render as "-once gitedge run"); a usage error names the
// command once, says what was wrong on its first line, then the usage,
// and exits 2.
func TestCommandLineUsage(t *testing.T) {
	// Flags are spelled --name, as in the usage line and the docs (Go's
	// flag package prints -name).
	flagLine := regexp.MustCompile(`^  --([a-z][a-z0-9-]*)( (string|duration|value|int|uint|float))?$`)
	maxArgs := map[string]int{"validate": 1, "plan": 1, "inventory": 1, "proxy": 1, "vrrp": 1, "secret": 1}
	argNames := map[string]string{"secret": "ACTION: encrypt, keygen or recipient"}
	for name := range commands() {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := gitedge(t, name, "-h")
			if code != 0 || out != "" || !strings.HasPrefix(errOut, "usage: gitedge "+name+" ") {
				t.Errorf("-h: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
			}
			flags := 0
			for _, l := range strings.Split(errOut, "\n") {
				if strings.HasPrefix(l, "  -") {
					flags++
					if !flagLine.MatchString(l) {
						t.Errorf("-h: flag line %q: the value placeholder is not a type", l)
					}
				}
			}
			if flags < 2 {
				t.Errorf("-h lists %d flags:\n%s", flags, errOut)
			}
			if strings.Contains(errOut, "SPEC") || strings.Contains(errOut, "../shared") {
				t.Errorf("-h points outside the repository:\n%s", errOut)
			}

			bad := []struct {
				args  []string
				first string
			}{
				{[]string{"--no-such-flag"}, "gitedge " + name + ": flag provided but not defined: --no-such-flag"},
				{[]string{"--log-level"}, "gitedge " + name + ": flag needs an argument: --log-level"},
			}
			extra := []string{"a1", "a2"}[:min(maxArgs[name]+1, 2)]
			if maxArgs[name] == 0 {
				bad = append(bad, struct {
					args  []string
					first string
				}{extra, "gitedge " + name + `: unexpected argument "a1": this command takes flags only`})
			} else {
				bad = append(bad, struct {
					args  []string
					first string
				}{extra, "gitedge " + name + `: too many arguments ["a1" "a2"]: expected at most 1 (` + cmp.Or(argNames[name], "DIR") + ")"})
			}
			for _, b := range bad {
				code, out, errOut := gitedge(t, append([]string{name}, b.args...)...)
				first, rest, _ := strings.Cut(errOut, "\n")
				if code != 2 || out != "" || first != b.first || !strings.HasPrefix(rest, "usage: gitedge "+name+" ") {
					t.Errorf("gitedge %s %v: exit %d, stdout %q, stderr:\n%s\nwant first line %q, then the usage", name, b.args, code, out, errOut, b.first)
				}
				if strings.Contains(errOut, "gitedge "+name+": gitedge") {
					t.Errorf("gitedge %s %v: doubled prefix:\n%s", name, b.args, errOut)
				}
			}
		})
	}
	// Required arguments and flags say which.
	for _, tc := range []struct {
		args  []string
		first string
	}{
		{[]string{"proxy"}, "gitedge proxy: missing argument: DIR"},
		{[]string{"vrrp", "dir"}, "gitedge vrrp: --node NAME is required: this node's name in the Edge's spec.nodes"},
		{[]string{"reconcile"}, "gitedge reconcile: --once is required: one pass and exit (the loop itself is gitedge run)"},
		{[]string{"plan", "--output", "yaml"}, `gitedge plan: --output "yaml": expected text, json or markdown`},
		{[]string{"validate", "--output", "yaml"}, `gitedge validate: --output "yaml": expected text or json`},
		{[]string{"import"}, "gitedge import: --out DIR is required"},
		{[]string{"proxy", "dir", "--idle-poll", "soon"}, `gitedge proxy: --idle-poll: "soon": expected a duration as 200us, or off`},
		{[]string{"proxy", "dir", "--idle-poll", "1s"}, "gitedge proxy: --idle-poll: 1s: expected 0 (off) to 10ms"},
	} {
		code, _, errOut := gitedge(t, tc.args...)
		if first, _, _ := strings.Cut(errOut, "\n"); code != 2 || first != tc.first {
			t.Errorf("gitedge %v: exit %d, stderr:\n%s\nwant first line %q", tc.args, code, errOut, tc.first)
		}

	}
}

// TestPlanDetailedExitcode: with --detailed-exitcode, as Terraform's, 0
// says nothing changes, 2 that something does and 1 an error; the
// Markdown review of an invalid head lists its errors, and of a change its
// consequences.
func TestPlanDetailedExitcode(t *testing.T) {
	changed := t.TempDir()
	testkit.CopyTree(t, "../../examples/homelab", changed, map[string][][2]string{"edge.yaml": {{"priority: {lb-0: 100, lb-1: 101}", "priority: {lb-0: 102, lb-1: 101}"}}})
	invalid := t.TempDir()
	testkit.CopyTree(t, "../../examples/homelab", invalid, map[string][][2]string{"routes/blog.yaml": {{"http: {backend: k3s-http-ingress}", "http: {backend: nope}"}}})
	tests := []struct {
		name, head string
		output     string
		code       int
		want       string
	}{
		{"no changes", "../../examples/homelab", "markdown", 0, "**Valid**: no changes."},
		{"changes", changed, "markdown", 2, "moves VIP 192.0.2.254/32 of VRRP instance VI\\_1 from lb-1 to lb-0"},
		{"changes, json", changed, "json", 2, `"new": 102`},
		{"invalid", invalid, "markdown", 1, "- `routes/blog.yaml:7: Route \"blog\": spec.http.backend: no Backend named \"nope\"`"},
		{"invalid, json", invalid, "json", 1, `"valid": false`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := gitedge(t, "plan", tt.head, "--base", "../../examples/homelab", "--output", tt.output, "--detailed-exitcode")
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("exit %d (want %d); stdout lacks %q?\n%s%s", code, tt.code, tt.want, out, errOut)
			}
		})
	}
	if code, _, _ := gitedge(t, "plan", changed, "--base", "../../examples/homelab"); code != 0 {
		t.Errorf("without --detailed-exitcode a plan with changes exits %d, want 0", code)
	}
	// A usage error is an error (1), never "changes" (2) that CI would
	// read as a plan to post.
	for _, args := range [][]string{
		{"plan", changed, "--bogus", "--detailed-exitcode"},
		{"plan", changed, "--detailed-exitcode", "--output", "yaml"},
		{"plan", changed, "extra", "--detailed-exitcode=true"},
	} {
		if code, _, _ := gitedge(t, args...); code != 1 {
			t.Errorf("gitedge %v: exit %d, want 1", args, code)
		}
	}
	if code, _, _ := gitedge(t, "plan", changed, "--bogus"); code != 2 {
		t.Errorf("a usage error without --detailed-exitcode: exit %d, want 2", code)
	}
}
