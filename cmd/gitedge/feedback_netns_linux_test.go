package main

import (
	"fmt"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/internal/testkit/nstest"
)

// TestRunNotifiesVRRPTransitions runs `gitedge run` with VRRP, alone on a
// veth in a network namespace of its own, with a webhook sink from
// severity info: the node goes INIT → BACKUP → MASTER, and both
// transitions are notified with their severities (info, then warning).
// The instance tracks the proxy, which at this first start (no last
// applied record) applies its first config after failover starts: no
// INIT → FAULT while the proxy has not started.
// Root only: the test runs again in a child process in a new network
// namespace, which ends with it.
func TestRunNotifiesVRRPTransitions(t *testing.T) {
	if !nstest.InNetns(t) {
		return
	}

	// The child, in its own network namespace: loopback up, and vr0
	// (192.0.2.10/24) whose peer carries the adverts away.
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name = "vr0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vr1"}); err != nil {
		t.Fatal(err)
	}
	vr0, err := netlink.LinkByName("vr0")
	if err != nil {
		t.Fatal(err)
	}
	vr1, err := netlink.LinkByName("vr1")
	if err != nil {
		t.Fatal(err)
	}
	own, _ := netlink.ParseAddr("192.0.2.10/24")
	for _, err := range []error{netlink.LinkSetUp(lo), netlink.AddrAdd(vr0, own), netlink.LinkSetUp(vr1), netlink.LinkSetUp(vr0)} {
		if err != nil {
			t.Fatal(err)
		}
	}

	hook := testkit.NewReceiver()
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	dir, repo := t.TempDir(), filepath.Join(t.TempDir(), "edge")
	files := routeFiles(testkit.QuietPort(t), "192.0.2.20:80", "192.0.2.21:80", "one")
	files["edge.yaml"] = strings.Replace(files["edge.yaml"], "  listeners:\n",
		"  nodes: [{name: lb-0, address: 192.0.2.10}]\n"+
			"  failover:\n    - {name: VI_1, interface: vr0, virtualRouterID: 51, advertInterval: 100ms, priority: {lb-0: 100}, vips: [192.0.2.254/32], track: {proxy: true}}\n"+
			"  listeners:\n", 1)
	for name, body := range files {
		testkit.WriteFile(t, filepath.Join(repo, name), body)
	}
	admin := testkit.QuietPort(t)
	cfg := filepath.Join(dir, "gitedge.yaml")
	testkit.WriteFile(t, cfg, fmt.Sprintf("node: lb-0\nsource: {url: %s}\nadmin: {listen: %q}\nstateDir: %s\nnotify: [{kind: webhook, url: %q, minSeverity: info}]\n",
		repo, admin, filepath.Join(dir, "state"), srv.URL))
	logs := &testkit.SyncBuffer{}
	node := exec.Command(gitedgeBinary(t), "run", "--config", cfg, "--source", repo)
	node.Stdout, node.Stderr = logs, logs
	node.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlives the test
	if err := node.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { node.Wait(); close(exited) }()
	t.Cleanup(func() {
		node.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			node.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("gitedge run log:\n%s", logs)
		}
	})

	var got []string
	for len(got) < 2 {
		q := hook.Next(t)
		var e struct {
			Kind, Severity, Message string
			Subject                 struct{ Instance string }
		}
		testkit.DecodeJSON(t, q.Body, &e)
		if e.Kind != "vrrp-transition" {
			continue
		}
		got = append(got, fmt.Sprintf("%s %s %s: %s", e.Kind, e.Severity, e.Subject.Instance, e.Message))
	}
	t.Logf("notified:\n%s", strings.Join(got, "\n"))
	if !strings.HasPrefix(got[0], "vrrp-transition info VI_1: INIT → BACKUP") || !strings.HasPrefix(got[1], "vrrp-transition warning VI_1: BACKUP → MASTER") {
		t.Errorf("transitions notified:\n%s", strings.Join(got, "\n"))
	}
}
