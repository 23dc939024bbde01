package gitsource

import (
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

type sshServer struct {
	addr       string
	port       string
	user       string
	clientKey  string // private key file
	knownHosts string // with the server's host key
}

// startSSHD runs Debian's sshd on loopback with throw-away host and user
// keys; git-upload-pack runs as the current user.
func startSSHD(t testing.TB) *sshServer {
	t.Helper()
	need(t, sshdBin, "ssh-keygen", "git-upload-pack")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "sshd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	hostKey := filepath.Join(dir, "host_ed25519")
	clientKey := filepath.Join(dir, "client_ed25519")
	run(t, dir, env, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey)
	run(t, dir, env, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", clientKey)
	pub, err := os.ReadFile(clientKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, pub, 0o600); err != nil {
		t.Fatal(err)
	}
	// sshd insists on its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("sshd needs /run/sshd: %v", err)
	}
	addr := testkit.QuietPort(t)
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "sshd_config")
	cfg := strings.Join([]string{
		"Port " + port,
		"ListenAddress 127.0.0.1",
		"HostKey " + hostKey,
		"AuthorizedKeysFile " + authKeys,
		"PidFile none",
		"StrictModes no",
		"UsePAM no",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"PermitRootLogin prohibit-password",
		"AllowUsers " + me.Username,
		"LogLevel ERROR",
		"",
	}, "\n")
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, addr, env, sshdBin, "-D", "-e", "-f", conf)
	hostPub, err := os.ReadFile(hostKey + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	fields := strings.Fields(string(hostPub))
	knownHosts := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[127.0.0.1]:%s %s %s\n", port, fields[0], fields[1])
	if err := os.WriteFile(knownHosts, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return &sshServer{addr: addr, port: port, user: me.Username, clientKey: clientKey, knownHosts: knownHosts}
}

// TestSSHHostKeyChecked: a known_hosts file without the server's key, or
// with another key for it, refuses the connection.
func TestSSHHostKeyChecked(t *testing.T) {
	t.Parallel()
	u := newUpstream(t)
	u.commit("routes", map[string]string{"a.yaml": "a\n"})
	u.push("main")
	s := startSSHD(t)
	url := fmt.Sprintf("ssh://%s@%s%s", s.user, s.addr, u.bare)

	other := filepath.Join(t.TempDir(), "other")
	run(t, "", gitEnv(t), "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", other)
	otherPub, _ := os.ReadFile(other + ".pub")
	f := strings.Fields(string(otherPub))
	for name, kh := range map[string]string{
		"unknown host": "[127.0.0.1]:1 " + f[0] + " " + f[1] + "\n",
		"changed key":  fmt.Sprintf("[127.0.0.1]:%s %s %s\n", s.port, f[0], f[1]),
	} {
		t.Run(name, func(t *testing.T) {
			g, _ := newSource(t, Config{URL: url, Auth: Auth{SSHKeyFile: s.clientKey, KnownHostsFile: testkit.TempFile(t, "kh", kh)}})
			e := nextErr(t, g)
			if e.Step != StepFetch || e.Reason != ReasonAuth || e.Transient() {
				t.Fatalf("error %+v: %v", e, e)
			}
		})
	}
}
