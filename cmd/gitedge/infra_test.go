package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
	proxmox "github.com/luthermonson/go-proxmox"
)

const (
	testTokenID = "gitedge@pve!edge"
	testSecret  = "3d1c5a7e-1111-2222-3333-444455556666"
)

// writeNodeConfig writes a node config whose proxmox section points at url.
func writeNodeConfig(t *testing.T, url string, caPEM []byte) string {
	t.Helper()
	dir := t.TempDir()
	secret := filepath.Join(dir, "proxmox.token")
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(secret, []byte(testSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "gitedge.yaml")
	cfg := fmt.Sprintf("node: lb-0\nsource: {url: %s}\nproxmox: {url: %q, tokenID: %q, tokenSecretFile: %s, caFile: %s}\n", dir, url, testTokenID, secret, ca)
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// The examples/homelab VMs, loaded by reconcile.LoadDir, are created from
// nothing through the node config's proxmox section; a second pass writes
// nothing; gitedge inventory lists them with their agent addresses.
func TestHomelabVMsAndInventory(t *testing.T) {
	pve := testkit.StartPvesim(t, pvesim.Options{Tokens: map[string]string{testTokenID: testSecret}})
	sim := pve.Sim
	cfgPath := writeNodeConfig(t, pve.URL, pve.CAPEM)

	desired, err := reconcile.LoadDir("../../examples/homelab")
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nodeconfig.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := nc.ProxmoxClient()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", cc, cc), testSecret) {
		t.Fatal("the client config prints its secret")
	}
	api, err := infra.NewAPI(cc)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := infra.New(infra.Options{API: api, PollInterval: 5 * time.Millisecond, Backoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := rec.Apply(ctx, desired.Infra, func() bool { return true })
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, res.Plan)
	}
	if len(res.Applied) != 2 {
		t.Fatalf("applied %v", res.Applied)
	}
	sim.ResetCalls()
	if res, err = rec.Apply(ctx, desired.Infra, func() bool { return true }); err != nil || !res.Converged() {
		t.Fatalf("second pass: %v\n%s", err, res.Plan)
	}
	if w := sim.Writes(); len(w) != 0 {
		t.Errorf("second pass wrote %v", w)
	}

	// The reconcile loop drives the same Reconciler through its InfraApplier.
	var applier reconcile.InfraApplier = rec
	sim.ResetCalls()
	if _, err := applier.Apply(ctx, desired.Infra, func() bool { return true }); err != nil {
		t.Fatalf("through reconcile.InfraApplier: %v", err)
	}
	if w := sim.Writes(); len(w) != 0 {
		t.Errorf("pass through the loop's interface wrote %v", w)
	}

	var out, errb bytes.Buffer
	code := dispatch(ctx, &cliEnv{stdout: &out, stderr: &errb}, []string{"inventory", "--config", cfgPath, "--group", "loadbalancer", "../../examples/homelab"})
	if code != 0 {
		t.Fatalf("inventory exit %d: %s", code, errb.String())
	}
	want := "[loadbalancer]\nlb-0 ansible_host=192.0.2.250\nlb-1 ansible_host=192.0.2.251\n"
	if out.String() != want {
		t.Errorf("inventory:\n%s\nwant:\n%s", out.String(), want)
	}

	// A wrong token: a clear error, no secret.
	bad := writeNodeConfig(t, pve.URL, pve.CAPEM)
	nb, _ := nodeconfig.Load(bad)
	os.WriteFile(nb.Proxmox.TokenSecretFile, []byte("wrong-"+testSecret), 0o600)
	out.Reset()
	errb.Reset()
	if code := dispatch(ctx, &cliEnv{stdout: &out, stderr: &errb}, []string{"inventory", "--config", bad, "../../examples/homelab"}); code != 1 {
		t.Errorf("wrong token: exit %d", code)
	}
	if !strings.Contains(errb.String(), "not authorized") || strings.Contains(errb.String(), testSecret) {
		t.Errorf("wrong token stderr: %s", errb.String())
	}
}

// lineWriter signals when a line containing want has been written.
type lineWriter struct {
	mu   sync.Mutex
	b    bytes.Buffer
	want string
	seen chan string // buffered, one line
	sent bool
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	for _, l := range strings.Split(w.b.String(), "\n") {
		if strings.Contains(l, w.want) && !w.sent {
			w.seen <- l
			w.sent = true
		}
	}
	return len(p), nil
}

func TestPvesimCommand(t *testing.T) {
	dir := t.TempDir()
	state, cert, faults := filepath.Join(dir, "state.json"), filepath.Join(dir, "ca.pem"), filepath.Join(dir, "faults.yaml")
	if err := os.WriteFile(faults, []byte("latency: 1ms\nlocked: {9000: backup}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &lineWriter{want: "listening on", seen: make(chan string, 1)}
	done := make(chan int, 1)
	go func() {
		done <- dispatch(ctx, &cliEnv{stdout: stdout, stderr: io.Discard}, []string{"pvesim", "--listen", "127.0.0.1:0", "--tls", "--cert-out", cert,
			"--state", state, "--token", testTokenID + "=" + testSecret, "--boot-delay", "0s", "--task-duration", "0s", "--ha-delay", "0s",
			"--auth-fail-delay", "0s", "--faults", faults})
	}()
	var line string
	select {
	case line = <-stdout.seen:
	case code := <-done:
		t.Fatalf("pvesim exited %d", code)
	case <-time.After(testkit.Deadline):
		t.Fatal("pvesim did not start")
	}
	url := line[strings.Index(line, "https://"):]
	pemBytes, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemBytes)
	c := proxmox.NewClient(url, proxmox.WithAPIToken(testTokenID, testSecret), proxmox.WithRootCAs(pool), proxmox.WithTimeout(5*time.Second))
	v, err := c.Version(ctx)
	if err != nil || v.Version != "8.2.4" {
		t.Fatalf("version over the command's TLS listener: %v %v", v, err)
	}
	tmpl := &proxmox.VirtualMachine{}
	tmpl.New(c, "proxmox1", pvesim.TemplateVMID)
	if _, _, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 150, Full: true}); err == nil || err.Error() != "500 VM is locked (backup)" {
		t.Errorf("faults file not applied: %v", err)
	}
	wrong := proxmox.NewClient(url, proxmox.WithAPIToken(testTokenID, "nope"), proxmox.WithRootCAs(pool))
	if _, err := wrong.Version(ctx); !proxmox.IsNotAuthorized(err) {
		t.Errorf("wrong token: %v", err)
	}
	// HTTP/2 is not offered, as with pveproxy.
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	res, err := (&http.Client{Transport: tr}).Get(url + "/version")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 1 {
		t.Errorf("protocol %s, want HTTP/1.1", res.Proto)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit %d", code)
	}
	if _, err := pvesim.LoadState(state); err != nil {
		t.Errorf("state not saved: %v", err)
	}
}
