package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

// dropCaps is the command line that runs the built gitedge without the
// named capabilities (setpriv from util-linux; as root: the bounding set
// without them is what an unprivileged service gets).
func dropCaps(t *testing.T, caps ...string) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		testkit.Missing(t, "needs root to run gitedge with and without capabilities")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		testkit.Missing(t, "needs setpriv (util-linux)")
	}
	var drop []string
	for _, c := range caps {
		drop = append(drop, "-"+c)
	}
	d := strings.Join(drop, ",")
	return []string{setpriv, "--inh-caps=" + d, "--ambient-caps=" + d, "--bounding-set=" + d, gitedgeBinary(t)}
}

// TestRunBindWithoutCapability: at first start, a listener on a port
// below 1024 refused for lack of CAP_NET_BIND_SERVICE says which
// capability is missing and that nothing serves yet (it used to say "the
// running config keeps serving", false then), and the pass is not retried
// every few seconds: only a restart with the capability can fix it.
func TestRunBindWithoutCapability(t *testing.T) {
	argv := dropCaps(t, "net_bind_service")
	dir := t.TempDir()
	repo := filepath.Join(dir, "edge")
	// Port 1 is refused before it is looked at: nothing is bound.
	testkit.CopyTree(t, "../../examples/homelab", repo, map[string][][2]string{"edge.yaml": {{`bind: ":80"`, `bind: "127.0.0.1:1"`}}})
	data := readFileString(t, filepath.Join(repo, "edge.yaml"))
	testkit.WriteFile(t, filepath.Join(repo, "edge.yaml"), strings.Replace(data, `bind: ":443"`, `bind: "`+testkit.QuietPort(t)+`"`, 1))
	admin := testkit.QuietPort(t)
	cfg := filepath.Join(dir, "gitedge.yaml")
	testkit.WriteFile(t, cfg, "node: lb-0\nadmin: {listen: \""+admin+"\"}\nstateDir: "+filepath.Join(dir, "state")+"\n")

	n := startNodeVia(t, admin, append(argv, "run", "--no-vrrp", "--config", cfg, "--source", repo))
	s, raw := n.waitStatus("the refused bind reported", func(s nodeStatus) bool {
		return s.LastAttempt != nil && s.LastAttempt.Error != ""
	})
	for _, want := range []string{`dataplane: listener "http": cannot listen on 127.0.0.1:1: `,
		`bind: permission denied: ports below 1024 need CAP_NET_BIND_SERVICE: run gitedge as root or grant it (systemd: AmbientCapabilities=CAP_NET_BIND_SERVICE), or bind a port from 1024 up (nothing serves yet: no config was applied)`} {
		if !strings.Contains(s.LastAttempt.Error, want) {
			t.Errorf("lastAttempt.error:\n %s\nwant it to hold\n %s\n%s", s.LastAttempt.Error, want, indentJSON(raw))
		}
	}
	if c := s.Conditions["live"]; c.Status != "Stalled" || !strings.Contains(c.Message, "(not retried by itself: fix the cause, then systemctl reload gitedge to try it again (a missing capability needs a restart)") {
		t.Errorf("live condition %+v: it says retrying, but nothing retries a missing capability", c)
	}
	if strings.Contains(n.logs.String(), "keeps serving") || strings.Contains(n.logs.String(), "retrying the pass") {
		t.Errorf("the log says the running config keeps serving, or retries what only a restart fixes")
	}
}

// TestVrrpWithoutCapability: a VIP that could not be added is an error at
// start, naming the capability, not a warning when the node first becomes
// master (issue 9.3's probe, through the binary as a service without
// CAP_NET_ADMIN runs it). Nothing is added to lo.
func TestVrrpWithoutCapability(t *testing.T) {
	argv := dropCaps(t, "net_admin")
	repo := filepath.Join(t.TempDir(), "edge")
	testkit.CopyTree(t, "../../examples/homelab", repo, map[string][][2]string{"edge.yaml": {{"interface: eth0", "interface: lo"}}})
	cmd := exec.Command(argv[0], append(argv[1:], "vrrp", repo, "--node", "lb-0")...)
	out, err := cmd.CombinedOutput()
	want := `instance "VI_1": interface lo: not permitted: the process lacks CAP_NET_ADMIN (to add the VIPs when it becomes master); run gitedge as root or grant it CAP_NET_ADMIN`
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), want) {
		t.Errorf("gitedge vrrp without CAP_NET_ADMIN: %v\n%s\nwant exit 1 and %q", err, out, want)
	}
}
