//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The VRRP password, named in the repository instead of held there,
// reaches the advertisements: keepalived, configured with the value,
// stays BACKUP beside a gitedge master that resolved it from a file
// (systemd's $CREDENTIALS_DIRECTORY) or decrypted it with the node's age
// key; with another value it takes over (the test can fail). A rotated
// file plus SIGHUP changes the password in place. The value never shows
// in gitedge's log or /status.
func TestSecretPasswordReachesKeepalived(t *testing.T) {
	requireTools(t, "curl")
	const pw = "Qx7kp2zz"
	bin := gitedgeBin(t)
	secretRef := func(t *testing.T, creds string) string {
		write(t, filepath.Join(creds, "vrrp-vi1"), pw+"\n")
		return "{secret: vrrp-vi1}"
	}
	ageRef := func(t *testing.T, creds string) string {
		out, err := exec.Command(bin, "secret", "keygen", "--out", filepath.Join(creds, "age.key")).Output()
		if err != nil {
			t.Fatal(err)
		}
		enc := exec.Command(bin, "secret", "encrypt", "--recipient", strings.TrimSpace(string(out)))
		enc.Stdin = strings.NewReader(pw + "\n")
		y, err := enc.Output()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(y), pw) {
			t.Fatalf("the encrypted value shows the password:\n%s", y)
		}
		lines := strings.Split(strings.TrimRight(string(y), "\n"), "\n")
		return "\n          " + strings.Join(lines, "\n          ")
	}
	for _, tc := range []struct {
		name     string
		ref      func(*testing.T, string) string
		kaPass   string // keepalived's auth_pass
		takeover bool   // keepalived must become master: the values differ
		rotate   bool
	}{
		{name: "secret file", ref: secretRef, kaPass: pw, rotate: true},
		{name: "age", ref: ageRef, kaPass: pw},
		{name: "another value", ref: secretRef, kaPass: "n0tTh1s", takeover: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			creds := t.TempDir()
			ref := tc.ref(t, creds)
			t.Setenv("CREDENTIALS_DIRECTORY", creds) // inherited by the lab's processes
			l := newLab(t, 2)
			spec := userSettings() // VRRPv2, auth PASS, VI_1, n2 101
			dir := l.edgeConfig(spec)
			edge := filepath.Join(dir, "edge.yaml")
			b, err := os.ReadFile(edge)
			if err != nil {
				t.Fatal(err)
			}
			y := strings.Replace(string(b), `auth: {type: pass, password: "9999"}`, "auth:\n        type: pass\n        password: "+ref, 1)
			if y == string(b) {
				t.Fatalf("no password to replace in:\n%s", b)
			}
			write(t, edge, y)
			n1, n2 := l.node("n1"), l.node("n2")
			d2 := n2.startGitedge(dir, "--metrics", "127.0.0.1:9101")
			d2.waitState(t, "VI_1", "MASTER", 10*time.Second)
			conf := strings.Replace(keepalivedConf(n1, spec, false), "auth_pass 9999", "auth_pass "+tc.kaPass, 1)
			d1 := n1.startKeepalived(conf)
			if tc.takeover {
				d1.waitState(t, "VI_1", "MASTER", 10*time.Second)
				return
			}
			d1.waitState(t, "VI_1", "BACKUP", 5*time.Second)
			// A mismatch shows within keepalived's master down interval
			// (3 adverts of 1s and its skew): watch for twice that.
			hold(7 * time.Second)
			if h := d1.history("VI_1"); strings.Contains(strings.Join(h, " "), "MASTER") {
				t.Fatalf("keepalived went %v beside gitedge's master: the password in gitedge's adverts is not %q\n%s", h, tc.kaPass, d1.logText())
			}
			status := run(t, "ip", "netns", "exec", n2.ns, "curl", "-sf", "http://127.0.0.1:9101/status")
			if !strings.Contains(status, `"from":`) || !strings.Contains(status, `"secrets":`) {
				t.Errorf("/status does not say where the password comes from:\n%s", status)
			}
			for what, text := range map[string]string{"log": d2.logText(), "/status": status} {
				if strings.Contains(text, pw) {
					t.Errorf("gitedge's %s shows the password:\n%s", what, text)
				}
			}
			if !tc.rotate {
				return
			}
			// Rotation on this node only: the new value goes into the
			// adverts in place, and keepalived, still on the old one,
			// no longer hears a master.
			before := len(d2.history("VI_1"))
			write(t, filepath.Join(creds, "vrrp-vi1"), "r0tated1\n")
			d2.cmd.Process.Signal(syscall.SIGHUP)
			d1.waitState(t, "VI_1", "MASTER", 10*time.Second)
			if h := d2.history("VI_1"); len(h) != before || h[len(h)-1] != "MASTER" {
				t.Errorf("gitedge's states %v: a password change is taken in place, with no new election", h)
			}
			if strings.Contains(d2.logText(), "r0tated1") {
				t.Errorf("gitedge's log shows the new password:\n%s", d2.logText())
			}
		})
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
