package gitsource

import (
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// gpgKeys is a throw-away GNUPGHOME with two signing keys, made once per
// test binary with Debian's gpg (a different OpenPGP implementation from
// the one that verifies).
type gpgKeys struct {
	home                     string
	trustedFpr, untrustedFpr string
	trustedPub               string // armored public key
}

var (
	gpgOnce sync.Once
	gpgSet  *gpgKeys
	gpgErr  string
)

func keys(t testing.TB) *gpgKeys {
	t.Helper()
	need(t, "gpg")
	gpgOnce.Do(func() {
		// A short path: gpg-agent's socket lives in GNUPGHOME.
		home, err := os.MkdirTemp("", "gpg")
		if err != nil {
			gpgErr = err.Error()
			return
		}
		k := &gpgKeys{home: home}
		gen := func(uid string) string {
			env := []string{"GNUPGHOME=" + home, "PATH=" + os.Getenv("PATH")}
			cmd := exec.Command("gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
				"--quick-gen-key", uid, "ed25519", "sign", "never")
			cmd.Env = env
			if out, err := cmd.CombinedOutput(); err != nil {
				gpgErr = string(out)
				return ""
			}
			cmd = exec.Command("gpg", "--batch", "--with-colons", "--list-keys", uid)
			cmd.Env = env
			out, err := cmd.Output()
			if err != nil {
				gpgErr = err.Error()
				return ""
			}
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
					return f[9]
				}
			}
			gpgErr = "no fingerprint in " + string(out)
			return ""
		}
		k.trustedFpr = gen("Trusted Signer <trusted@example.org>")
		k.untrustedFpr = gen("Stranger <stranger@example.org>")
		if gpgErr != "" {
			return
		}
		cmd := exec.Command("gpg", "--batch", "--armor", "--export", k.trustedFpr)
		cmd.Env = []string{"GNUPGHOME=" + home, "PATH=" + os.Getenv("PATH")}
		pub, err := cmd.Output()
		if err != nil {
			gpgErr = err.Error()
			return
		}
		k.trustedPub = string(pub)
		gpgSet = k
	})
	if gpgSet == nil {
		t.Fatalf("making OpenPGP keys with gpg: %s", gpgErr)
	}
	return gpgSet
}

func cleanupGPG() {
	if gpgSet == nil {
		return
	}
	cmd := exec.Command("gpgconf", "--kill", "all")
	cmd.Env = []string{"GNUPGHOME=" + gpgSet.home, "PATH=" + os.Getenv("PATH")}
	cmd.Run()
	os.RemoveAll(gpgSet.home)
}

// signing makes u sign with gpg from the shared GNUPGHOME.
func (u *upstream) signing(k *gpgKeys) {
	u.env = append(u.env, "GNUPGHOME="+k.home)
	u.git("config", "gpg.program", "gpg")
}

func TestSignatures(t *testing.T) {
	t.Parallel()
	k := keys(t)
	u := newUpstream(t)
	u.signing(k)
	keyring := testkit.TempFile(t, "trusted.asc", k.trustedPub)
	h := startHTTPGit(t, u.root, "", "")
	g, _ := newSource(t, Config{URL: h.URL, KeyringFile: keyring})

	// Trusted.
	c1 := u.commit("signed by trusted", map[string]string{"a.yaml": "1\n"}, "-S"+k.trustedFpr)
	u.push("main")
	rev := next(t, g)
	if rev.Commit != c1 || rev.Signer == nil || rev.Signer.Fingerprint != k.trustedFpr ||
		rev.Signer.KeyID != k.trustedFpr[24:] || rev.Signer.Identity != "Trusted Signer <trusted@example.org>" {
		t.Fatalf("trusted: %s signer %+v", short(rev.Commit), rev.Signer)
	}

	steps := []struct {
		name   string
		make   func() string
		reason string
		want   string
	}{
		{"untrusted key", func() string {
			return u.commit("signed by a stranger", map[string]string{"a.yaml": "2\n"}, "-S"+k.untrustedFpr)
		}, ReasonUntrusted, "signed by key " + k.untrustedFpr[24:] + ", which is not in the keyring"},
		{"unsigned", func() string {
			return u.commit("unsigned", map[string]string{"a.yaml": "3\n"})
		}, ReasonUnsigned, "is not signed"},
		{"tampered", func() string {
			signed := u.commit("signed then tampered", map[string]string{"a.yaml": "4\n"}, "-S"+k.trustedFpr)
			raw := run(t, u.work, u.env, "git", "cat-file", "commit", signed)
			forged := strings.Replace(raw, "signed then tampered", "signed and trustworthy", 1)
			cmd := exec.Command("git", "hash-object", "-t", "commit", "-w", "--stdin")
			cmd.Dir, cmd.Env, cmd.Stdin = u.work, u.env, strings.NewReader(forged+"\n")
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			c := strings.TrimSpace(string(out))
			u.git("reset", "-q", "--hard", c)
			return c
		}, ReasonBadSignature, "does not verify"},
	}
	for _, s := range steps {
		c := s.make()
		u.push("--force", "main")
		g.Trigger(Trigger{Kind: TriggerWebhook, Detail: s.name})
		e := nextErr(t, g)
		if e.Step != StepVerify || e.Reason != s.reason || e.Transient() || e.Commit != c || !strings.Contains(e.Error(), s.want) {
			t.Fatalf("%s: %+v: %v", s.name, e, e)
		}
		// Refused for good: the same head is not looked at again.
		g.Trigger(Trigger{Kind: TriggerPoll})
		quiet(t, g, 300*time.Millisecond)
	}

	// A trusted commit on top is applied again.
	c5 := u.commit("trusted again", map[string]string{"a.yaml": "5\n"}, "-S"+k.trustedFpr)
	u.push("--force", "main")
	g.Trigger(Trigger{Kind: TriggerWebhook})
	if rev := next(t, g); rev.Commit != c5 || rev.Signer == nil || rev.Previous != c1 || readFS(t, rev.Files, "a.yaml") != "5\n" {
		t.Fatalf("trusted again: %s previous %s", short(rev.Commit), short(rev.Previous))
	}
}

func TestKeyringProblems(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	c := u.commit("unsigned", map[string]string{"a.yaml": "1\n"})
	u.push("main")
	for name, file := range map[string]string{
		"missing":   t.TempDir() + "/nope.asc",
		"not pgp":   testkit.TempFile(t, "k.asc", "hello\n"),
		"no keys":   testkit.TempFile(t, "k.asc", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----\n"),
		"truncated": testkit.TempFile(t, "k.asc", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n-----END PGP PUBLIC KEY BLOCK-----\n"),
	} {
		t.Run(name, func(t *testing.T) {
			g, _ := newSource(t, Config{URL: u.bare, KeyringFile: file})
			e := nextErr(t, g)
			if e.Step != StepVerify || e.Reason != ReasonKeyring || e.Commit != c {
				t.Fatalf("%+v: %v", e, e)
			}
		})
	}
}
