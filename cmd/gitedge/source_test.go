package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=A", "GIT_AUTHOR_EMAIL=a@example.org", "GIT_COMMITTER_NAME=C", "GIT_COMMITTER_EMAIL=c@example.org"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestSourceCommand follows a repository named in a node config, the way
// the node does, and prints what it would load.
func TestSourceCommand(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git is required (make deps): %v", err)
	}
	root := t.TempDir()
	bare := filepath.Join(root, "edge.git")
	work := filepath.Join(root, "work")
	gitCmd(t, root, "init", "-q", "--bare", "-b", "main", bare)
	gitCmd(t, root, "init", "-q", "-b", "main", work)
	if err := os.MkdirAll(filepath.Join(work, "edge", "routes"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(work, "edge", "routes", "blog.yaml"), []byte("kind: Route\n"), 0o644)
	gitCmd(t, work, "add", "-A")
	gitCmd(t, work, "commit", "-q", "-m", "routes")
	gitCmd(t, work, "push", "-q", bare, "main")
	head := gitCmd(t, work, "rev-parse", "HEAD")

	cfg := filepath.Join(root, "gitedge.yaml")
	os.WriteFile(cfg, []byte("node: lb-0\nsource:\n  url: "+bare+"\n  path: edge/\nstateDir: "+filepath.Join(root, "state")+"\n"), 0o644)
	var out, errb bytes.Buffer
	code := dispatch(context.Background(), &cliEnv{stdout: &out, stderr: &errb}, []string{"source", "--config", cfg})
	if code != 0 || !strings.Contains(out.String(), "commit     "+head) || !strings.Contains(out.String(), "  routes/blog.yaml") ||
		!strings.Contains(out.String(), "ref        refs/heads/main") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}

	// A local directory instead, with --dir.
	out.Reset()
	code = dispatch(context.Background(), &cliEnv{stdout: &out, stderr: &errb}, []string{"source", "--source", filepath.Join(work, "edge")})
	if code != 0 || !strings.Contains(out.String(), "commit     dir:") || !strings.Contains(out.String(), "files      1 (12 bytes)") {
		t.Fatalf("--dir: exit %d\n%s%s", code, out.String(), errb.String())
	}

	// A wrong branch fails with the reason.
	os.WriteFile(cfg, []byte("node: lb-0\nsource:\n  url: "+bare+"\n  branch: nope\nstateDir: "+filepath.Join(root, "state")+"\n"), 0o644)
	errb.Reset()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if code := dispatch(ctx, &cliEnv{stdout: &out, stderr: &errb}, []string{"source", "--config", cfg}); code != 1 || !strings.Contains(errb.String(), "refs/heads/nope") {
		t.Fatalf("missing branch: exit %d: %s", code, errb.String())
	}
}
