package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/gitedge/gitedge/internal/testkit"
)

// TestCIExamplesRunGitedge parses each CI file of examples/ci, finds the
// gitedge commands its scripts run, and runs each with the built binary in
// a git repository holding the homelab example under edge/ (shell
// variables, such as the base commit, become HEAD). Every command must
// exist and take its flags (exit 0: valid, nothing to plan), and every
// file must validate and post a Markdown plan with --detailed-exitcode.
func TestCIExamplesRunGitedge(t *testing.T) {
	repo := t.TempDir()
	testkit.CopyTree(t, "../../examples/homelab", filepath.Join(repo, "edge"), nil)
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "homelab"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "HOME="+repo,
			"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.org", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.org")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	files, _ := filepath.Glob("../../examples/ci/*.yml")
	if len(files) != 3 {
		t.Fatalf("examples/ci holds %d files, want 3 (GitHub, Forgejo/Gitea, GitLab)", len(files))
	}
	bin := gitedgeBinary(t)
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var doc map[string]any
			if err := yaml.UnmarshalStrict(data, &doc); err != nil {
				t.Fatalf("not YAML: %v", err)
			}
			var cmds [][]string
			for _, script := range scripts(doc) {
				cmds = append(cmds, gitedgeCommands(script)...)
			}
			var seen []string
			for _, c := range cmds {
				seen = append(seen, strings.Join(c, " "))
				run := exec.Command(bin, c...)
				run.Dir = repo
				out, err := run.CombinedOutput()
				if err != nil {
					t.Errorf("gitedge %s: %v\n%s", strings.Join(c, " "), err, out)
				}
			}
			all := strings.Join(seen, "\n")
			for _, want := range []string{"validate edge/", "plan edge/ --base HEAD --output markdown --detailed-exitcode"} {
				if !strings.Contains(all, want) {
					t.Errorf("the file never runs gitedge %s; it runs:\n%s", want, all)
				}
			}
			t.Logf("ran:\n%s", all)
		})
	}
}

// scripts returns every shell script of a CI file: GitHub and Forgejo
// steps' run, GitLab jobs' before_script and script.
func scripts(doc map[string]any) []string {
	var out []string
	add := func(v any) {
		switch s := v.(type) {
		case string:
			out = append(out, s)
		case []any:
			for _, l := range s {
				if str, ok := l.(string); ok {
					out = append(out, str)
				}
			}
		}
	}
	if jobs, ok := doc["jobs"].(map[string]any); ok {
		for _, j := range jobs {
			steps, _ := j.(map[string]any)["steps"].([]any)
			for _, st := range steps {
				if m, ok := st.(map[string]any); ok {
					add(m["run"])
				}
			}
		}
		return out
	}
	for _, j := range doc {
		if m, ok := j.(map[string]any); ok {
			add(m["before_script"])
			add(m["script"])
		}
	}
	return out
}

// gitedgeCommands finds the gitedge commands of a shell script: the words
// after "gitedge" up to a redirection or a shell operator, unquoted, with
// every word that holds a variable replaced by HEAD.
func gitedgeCommands(script string) [][]string {
	var out [][]string
	for line := range strings.Lines(script) {
		words := shellWords(line)
		for i, w := range words {
			if w != "gitedge" || (i > 0 && !slices.Contains([]string{";", "&&", "||", "|", "then", "do"}, words[i-1]) && !strings.HasSuffix(words[i-1], ";")) {
				continue
			}
			var args []string
			for _, a := range words[i+1:] {
				if slices.Contains([]string{">", ">>", "|", "||", "&&", ";", "2>&1"}, a) {
					break
				}
				if strings.Contains(a, "$") {
					a = "HEAD"
				}
				args = append(args, a)
			}
			out = append(out, args)
		}
	}
	return out
}

// shellWords splits a line into words, dropping quotes and comments.
func shellWords(line string) []string {
	var words []string
	var cur strings.Builder
	in, quote := false, byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			quote, in = c, true
		case c == '#' && !in:
			return words
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words
}
