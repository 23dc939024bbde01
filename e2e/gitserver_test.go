//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// gitServer is the lab's forge: a bare repository served by Debian's git
// daemon in its own namespace (192.0.2.200:9418), a working clone the test
// commits to with the git CLI and pushes from, and the sender of the
// forge's signed push webhooks.
type gitServer struct {
	l      *lab
	ns     string
	addr   string
	root   string // git daemon's base path; the repository is root/edge.git
	work   string // the working clone
	home   string // HOME of the git commands: no user or system config
	daemon *exec.Cmd
	done   <-chan struct{}
	secret string       // the webhook secret
	key    *signingKey  // signs commits when sign is asked
	hooks  *http.Client // from the forge's namespace
}

const gitAddr = "192.0.2.200"

func (l *lab) startGit() *gitServer {
	t := l.t
	t.Helper()
	requireTools(t, "git")
	dir := t.TempDir()
	g := &gitServer{l: l, addr: gitAddr, root: filepath.Join(dir, "srv"), work: filepath.Join(dir, "work"),
		home: filepath.Join(dir, "home"), secret: "lab-webhook-secret-" + randHex(8)}
	for _, d := range []string{g.root, g.home} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	g.ns = l.addHost("git", g.addr)
	g.hooks = nsClient(g.ns, 5*time.Second, false)
	g.git(t, dir, "init", "-q", "--bare", "-b", "main", g.bare())
	g.git(t, dir, "clone", "-q", g.bare(), g.work)
	g.start(t)
	return g
}

func (g *gitServer) bare() string { return filepath.Join(g.root, "edge.git") }

// url is the repository as the nodes fetch it.
func (g *gitServer) url() string { return "git://" + g.addr + "/edge.git" }

// start runs git daemon and waits until it accepts connections.
func (g *gitServer) start(t testing.TB) {
	t.Helper()
	// git-daemon itself, not `git daemon`: the git wrapper would fork it,
	// and killing the wrapper would leave the daemon running.
	out, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		t.Fatalf("git --exec-path: %v", err)
	}
	daemon := filepath.Join(strings.TrimSpace(string(out)), "git-daemon")
	g.daemon, g.done = g.l.startProcDone(t, g.ns, nil, io.Discard, io.Discard, daemon, "--reuseaddr", "--export-all",
		"--informative-errors", "--base-path="+g.root, "--listen="+g.addr, "--port=9418", g.root)
	waitTCP(t, g.ns, g.addr+":9418", 5*time.Second)
}

// stop kills git daemon: the remote is unreachable until start.
func (g *gitServer) stop() {
	if g.daemon != nil {
		g.daemon.Process.Kill()
		<-g.done
		g.daemon = nil
	}
}

func (g *gitServer) env() []string {
	env := []string{"HOME=" + g.home, "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Lab Operator", "GIT_AUTHOR_EMAIL=ops@example.org",
		"GIT_COMMITTER_NAME=Lab Operator", "GIT_COMMITTER_EMAIL=ops@example.org"}
	if g.key != nil {
		env = append(env, "GNUPGHOME="+g.key.home)
	}
	return env
}

func (g *gitServer) git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = g.env()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit makes the repository hold exactly files (path -> content), commits
// them (signed with the lab's key when sign), pushes to main and returns
// the commit id.
func (g *gitServer) commit(t testing.TB, files map[string]string, msg string, sign bool) string {
	t.Helper()
	entries, err := os.ReadDir(g.work)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != ".git" {
			os.RemoveAll(filepath.Join(g.work, e.Name()))
		}
	}
	for p, content := range files {
		full := filepath.Join(g.work, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g.git(t, g.work, "add", "-A")
	args := []string{"commit", "-q", "--allow-empty", "-m", msg}
	if sign {
		if g.key == nil {
			t.Fatal("signed commit asked of a lab without a signing key")
		}
		args = append(args, "-S"+g.key.fpr)
	}
	g.git(t, g.work, args...)
	g.git(t, g.work, "push", "-q", "origin", "HEAD:main")
	return g.git(t, g.work, "rev-parse", "HEAD")
}

// hook sends the forge's push webhook (GitHub's format, HMAC-SHA256 of the
// body with the shared secret) to a node's webhook address.
func (g *gitServer) hook(addr, commit string) error {
	body := fmt.Appendf(nil, `{"ref":"refs/heads/main","before":"%s","after":"%s","repository":{"full_name":"lab/edge"}}`,
		strings.Repeat("0", 40), commit)
	mac := hmac.New(sha256.New, []byte(g.secret))
	mac.Write(body)
	req, err := http.NewRequest("POST", "http://"+addr+"/hook", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", randHex(16))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := g.hooks.Do(req)
	if err != nil {
		return fmt.Errorf("webhook to %s: %w", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook to %s: status %s", addr, resp.Status)
	}
	return nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// signingKey is a throw-away GNUPGHOME with one ed25519 signing key, made
// once per test binary with Debian's gpg; the nodes trust its public key.
type signingKey struct {
	home, fpr string
	pub       string // armored public key: the nodes' keyring
}

var (
	keyOnce sync.Once
	labKey  *signingKey
	keyErr  error
)

func signer(t testing.TB) *signingKey {
	t.Helper()
	requireTools(t, "gpg")
	keyOnce.Do(func() {
		// A short path: gpg-agent's socket lives in GNUPGHOME.
		home, err := os.MkdirTemp("", "ge-gpg")
		if err != nil {
			keyErr = err
			return
		}
		k := &signingKey{home: home}
		gpg := func(args ...string) (string, error) {
			cmd := exec.Command("gpg", append([]string{"--batch"}, args...)...)
			cmd.Env = []string{"GNUPGHOME=" + home, "PATH=" + os.Getenv("PATH")}
			out, err := cmd.Output()
			if err != nil {
				if ee, ok := err.(*exec.ExitError); ok {
					return "", fmt.Errorf("gpg %s: %v: %s", strings.Join(args, " "), err, ee.Stderr)
				}
				return "", err
			}
			return string(out), nil
		}
		if _, keyErr = gpg("--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key",
			"Lab Signer <signer@example.org>", "ed25519", "sign", "never"); keyErr != nil {
			return
		}
		out, err := gpg("--with-colons", "--list-keys", "signer@example.org")
		if err != nil {
			keyErr = err
			return
		}
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" && k.fpr == "" {
				k.fpr = f[9]
			}
		}
		if k.pub, keyErr = gpg("--armor", "--export", k.fpr); keyErr != nil {
			return
		}
		labKey = k
	})
	if labKey == nil {
		t.Fatalf("making the lab's OpenPGP key with gpg: %v", keyErr)
	}
	return labKey
}

func cleanupKeys() {
	if labKey == nil {
		return
	}
	cmd := exec.Command("gpgconf", "--kill", "all")
	cmd.Env = []string{"GNUPGHOME=" + labKey.home, "PATH=" + os.Getenv("PATH")}
	cmd.Run()
	os.RemoveAll(labKey.home)
}

// waitTCP waits until addr accepts a connection from namespace ns.
func waitTCP(t testing.TB, ns, addr string, timeout time.Duration) {
	t.Helper()
	timeout = waitFor(timeout)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		c, err := nsDialer(ns)(ctx, "tcp", addr)
		cancel()
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not accepting from %s within %v: %v", addr, ns, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
