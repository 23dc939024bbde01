package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
)

// runDemo is `gitedge demo`: the whole product on one machine with nothing
// but this binary. It builds a routes repository in git, starts demo
// backends and the Proxmox simulator, runs a node (proxy, reconcile loop,
// infra, admin; no VRRP, which needs raw sockets and a shared segment) and
// walks through what a merged pull request does.
func runDemo(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "demo", "[--keep] [--dir DIR]")
	// The tour speaks for itself; --log-level info shows the node's logs.
	fs.logDefaults("error", "text")
	keep := fs.Bool("keep", false, "keep running after the tour (Ctrl-C stops), to explore with curl, gitedge status and the status page")
	dir := fs.String("dir", "", "where to create the demo repository and node config (default: a temporary directory, removed at the end)")
	if _, code, ok := fs.parse(args); !ok {
		return code
	}
	d := &demo{out: env.stdout}
	if err := daemonSupported(); err != nil {
		return fs.fail(err)
	}
	if err := d.run(ctx, *dir, *keep, fs.logger()); err != nil {
		return fs.fail(err)
	}
	return 0
}

type demo struct {
	out       io.Writer
	root      string
	repo      *git.Repository
	httpAddr  string
	tlsAddr   string
	hookURL   string
	secret    []byte
	adminAddr string
	node      *node
	started   time.Time
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

func (d *demo) run(ctx context.Context, dir string, keep bool, log *slog.Logger) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if dir == "" {
		tmp, err := os.MkdirTemp("", "gitedge-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	d.root = dir
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	// Backends: two HTTP apps and one TLS app, each naming itself.
	blue, err := demoHTTPBackend(ctx, &wg, "blue")
	if err != nil {
		return err
	}
	green, err := demoHTTPBackend(ctx, &wg, "green")
	if err != nil {
		return err
	}
	secure, err := demoTLSBackend(ctx, &wg, "secure")
	if err != nil {
		return err
	}
	// The Proxmox simulator, with quick tasks and boots.
	token := "demo-" + randHex(8)
	sim, err := pvesim.New(pvesim.Options{Tokens: map[string]string{"gitedge@pve!demo": token},
		BootDelay: 1500 * time.Millisecond, TaskDuration: 200 * time.Millisecond, HADelay: 300 * time.Millisecond})
	if err != nil {
		return err
	}
	defer sim.Close()
	pveAddr, err := serve(ctx, &wg, nil, sim)
	if err != nil {
		return err
	}
	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	d.httpAddr, d.tlsAddr = ports[0], ports[1]
	d.adminAddr = ports[2]
	hookAddr := ports[3]
	d.hookURL = "http://" + hookAddr + "/hook"
	d.secret = []byte(randHex(16))

	// The routes repository, as a team would keep it.
	d.say("gitedge demo — one node, everything local (%s)\n", dir)
	repoDir := filepath.Join(dir, "edge-repo")
	if d.repo, err = git.PlainInitWithOptions(repoDir, &git.PlainInitOptions{
		InitOptions: git.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")}}); err != nil {
		return err
	}
	files := demoRepository(d.httpAddr, d.tlsAddr, blue, green, secure)
	c1, err := d.commit(files, "Edge, backends and routes: app.demo.test on blue, VMs lb-0/lb-1")
	if err != nil {
		return err
	}
	d.say("1. A routes repository at %s, commit %s:", repoDir, c1[:10])
	d.say("     listeners http %s and tls %s; app.demo.test → blue; secure.demo.test (TLS passthrough) → secure;", d.httpAddr, d.tlsAddr)
	d.say("     VirtualMachines lb-0 (VMID 150) and lb-1 (151) on a Proxmox simulator at %s.", pveAddr)

	// The node config, secrets in files beside it.
	tokenFile := filepath.Join(dir, "proxmox.token")
	secretFile := filepath.Join(dir, "webhook.secret")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(secretFile, d.secret, 0o600); err != nil {
		return err
	}
	ncFile := nodeconfig.File{
		Node:     "lb-0",
		Source:   nodeconfig.Source{URL: repoDir, Branch: "main", Poll: "@every 10s"},
		Webhook:  &nodeconfig.Webhook{Listen: hookAddr, Path: "/hook", SecretFile: secretFile},
		Proxmox:  &nodeconfig.Proxmox{URL: "http://" + pveAddr + "/api2/json", TokenID: "gitedge@pve!demo", TokenSecretFile: tokenFile},
		Admin:    nodeconfig.Admin{Listen: d.adminAddr},
		StateDir: filepath.Join(dir, "state"),
	}
	ncPath := filepath.Join(dir, "gitedge.yaml")
	nc, err := nodeconfig.Build(ncFile, ncPath)
	if err != nil {
		return err
	}
	// Written for the operator to read and reuse (gitedge run --config).
	ncText, err := k8syaml.Marshal(ncFile)
	if err != nil {
		return err
	}
	if err := os.WriteFile(ncPath, ncText, 0o644); err != nil {
		return err
	}
	d.node, err = newNode(nc, nodeOptions{proxy: true, keepState: true, local: true, resync: 2 * time.Second}, log)
	if err != nil {
		return err
	}
	nodeErr := make(chan error, 1)
	d.started = time.Now()
	wg.Go(func() { nodeErr <- d.node.run(ctx) })
	d.say("2. gitedge run --config %s  (admin and status page on http://%s/)", ncPath, d.adminAddr)

	if err := d.waitLive(ctx, c1, nodeErr); err != nil {
		return err
	}
	d.say("   live in %s.", time.Since(d.started).Round(time.Millisecond))
	if err := d.showRequests(); err != nil {
		return err
	}

	// Infra: the VMs are cloned, configured, started and HA-managed.
	if err := d.waitInfra(ctx, 20*time.Second); err != nil {
		return err
	}
	cc, err := nc.ProxmoxClient()
	if err != nil {
		return err
	}
	api, err := infra.NewAPI(cc)
	if err != nil {
		return err
	}
	if err := d.showInventory(ctx, api); err != nil {
		return err
	}

	// A pull request is merged: app moves to green, under load.
	files["routes/app.yaml"] = strings.Replace(files["routes/app.yaml"], "backend: blue", "backend: green", 1)
	load := startLoad(d.httpAddr, "app.demo.test")
	c2, err := d.commit(files, "Move app.demo.test to green")
	if err != nil {
		return err
	}
	d.say("5. Merge %s: \"Move app.demo.test to green\"; the forge calls the webhook.", c2[:10])
	t0 := time.Now()
	if err := d.webhook(c2); err != nil {
		return err
	}
	if err := d.waitLive(ctx, c2, nodeErr); err != nil {
		return err
	}
	d.say("   webhook → live in %s.", time.Since(t0).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond)
	n, fails, seen := load.stop()
	d.say("   %d keep-alive requests ran through the reload: %d failed; answers seen: %s.", n, fails, strings.Join(seen, ", "))
	if err := d.showRequests(); err != nil {
		return err
	}

	// A broken pull request: the node keeps serving the last good commit.
	bad := maps.Clone(files)
	bad["routes/app.yaml"] = strings.Replace(bad["routes/app.yaml"], "backend: green", "backend: grene", 1)
	c3, err := d.commit(bad, "Typo in a backend name")
	if err != nil {
		return err
	}
	d.say("6. Merge %s with a typo (backend: grene).", c3[:10])
	if err := d.webhook(c3); err != nil {
		return err
	}
	if err := d.waitAttempt(ctx, c3); err != nil {
		return err
	}
	st := d.node.loop.Status()
	d.say("   refused, nothing changed; still live: %s. The node says why:", st.Live.Commit[:10])
	d.say("     %s", st.LastAttempt.Error)
	if err := d.showRequests(); err != nil {
		return err
	}

	// Drift: someone edits a VM in Proxmox by hand.
	d.say("7. Someone sets lb-1's memory to 1024 MiB by hand in Proxmox…")
	if err := d.handEdit(ctx, api, 151, "1024"); err != nil {
		return err
	}
	if err := d.waitMemory(ctx, api, 151, "4096", 15*time.Second); err != nil {
		return err
	}
	d.say("   …and the next pass sets it back to 4096 MiB, as the repository says (logged as drift).")

	d.say("\n8. gitedge status:")
	var b strings.Builder
	printStatus(&b, d.node.status())
	for line := range strings.Lines(b.String()) {
		if strings.HasPrefix(line, "backends:") || strings.HasPrefix(line, "infra:") || strings.HasPrefix(line, " ") {
			continue // the details are on the status page
		}
		d.say("   %s", strings.TrimRight(line, "\n"))
	}
	if keep {
		d.say("\nStill running. Try:\n  curl -H 'Host: app.demo.test' http://%s/\n  gitedge status --admin %s\n  edit %s, git commit, and watch it go live (polled every 10 s)\nCtrl-C stops.", d.httpAddr, d.adminAddr, repoDir)
		select {
		case <-ctx.Done():
		case err := <-nodeErr:
			return err
		}
	}
	d.say("\nDone. `gitedge demo --keep` leaves it running to explore.")
	return nil
}

// commit writes files into the repository's work tree and commits them.
func (d *demo) commit(files map[string]string, msg string) (string, error) {
	wt, err := d.repo.Worktree()
	if err != nil {
		return "", err
	}
	root := wt.Filesystem.Root()
	for p, content := range files {
		full := filepath.Join(root, "edge", p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if err := wt.AddGlob("edge"); err != nil {
		return "", err
	}
	sig := &object.Signature{Name: "Demo Operator", Email: "ops@demo.test", When: time.Now()}
	h, err := wt.Commit(msg, &git.CommitOptions{Author: sig, Committer: sig, AllowEmptyCommits: true})
	if err != nil {
		return "", err
	}
	return h.String(), nil
}

// webhook delivers a GitHub-shaped push event, signed as GitHub signs it.
func (d *demo) webhook(commit string) error {
	body := fmt.Sprintf(`{"ref":"refs/heads/main","after":%q,"repository":{"full_name":"demo/edge"}}`, commit)
	mac := hmac.New(sha256.New, d.secret)
	mac.Write([]byte(body))
	req, _ := http.NewRequest(http.MethodPost, d.hookURL, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func (d *demo) waitLive(ctx context.Context, commit string, nodeErr <-chan error) error {
	return waitFor(ctx, 30*time.Second, func() (bool, error) {
		select {
		case err := <-nodeErr:
			return false, fmt.Errorf("node stopped: %v", err)
		default:
		}
		st := d.node.loop.Status()
		if a := st.LastAttempt; a != nil && a.Commit == commit && a.Error != "" && a.Result != reconcile.ResultFailed {
			return false, fmt.Errorf("commit %s not applied: %s", commit[:10], a.Error)
		}
		return st.Live != nil && st.Live.Commit == commit, nil
	}, "commit "+commit[:10]+" to go live")
}

func (d *demo) waitAttempt(ctx context.Context, commit string) error {
	return waitFor(ctx, 30*time.Second, func() (bool, error) {
		a := d.node.loop.Status().LastAttempt
		return a != nil && a.Commit == commit, nil
	}, "an attempt at "+commit[:10])
}

func (d *demo) waitInfra(ctx context.Context, limit time.Duration) error {
	d.say("3. Infra: the node leads (one node, no VRRP here), so it creates the VMs…")
	start := d.started
	err := waitFor(ctx, limit, func() (bool, error) {
		r, ok := d.node.infra.Last()
		return ok && r.Leader && r.Converged() && len(r.Plan.Actions) == 0, nil
	}, "the VMs to converge")
	if err == nil {
		d.say("   cloned, configured, resized, started and put under HA in %s; later passes make no writes.", time.Since(start).Round(100*time.Millisecond))
	}
	return err
}

func (d *demo) showInventory(ctx context.Context, api infra.API) error {
	live := d.node.loop.Live()
	hosts, err := infra.Inventory(ctx, api, live.Infra, 10*time.Second, 200*time.Millisecond)
	if err != nil {
		return err
	}
	var b strings.Builder
	if err := infra.WriteINI(&b, "loadbalancer", hosts); err != nil {
		return err
	}
	d.say("4. gitedge inventory (guest-agent addresses, as the Terraform template made it):")
	for line := range strings.Lines(b.String()) {
		d.say("     %s", strings.TrimRight(line, "\n"))
	}
	return nil
}

// handEdit changes a VM's memory behind gitedge's back, as an operator in
// the Proxmox UI would, through the same API client gitedge uses.
func (d *demo) handEdit(ctx context.Context, api infra.API, vmid int, mem string) error {
	if _, err := api.SetConfig(ctx, "proxmox1", vmid, "", map[string]string{"memory": mem}, nil); err != nil {
		return fmt.Errorf("hand edit of VM %d: %w", vmid, err)
	}
	return nil
}

// waitMemory waits until the VM will run with want MiB: the value is the
// declared one and no other value is pending (a running VM's memory change
// waits for a reboot).
func (d *demo) waitMemory(ctx context.Context, api infra.API, vmid int, want string, limit time.Duration) error {
	return waitFor(ctx, limit, func() (bool, error) {
		c, err := api.Config(ctx, "proxmox1", vmid)
		if err != nil {
			return false, err
		}
		return c.Values["memory"] == want && !slices.Contains(c.Pending, "memory"), nil
	}, "VM memory to be set back")
}

// showRequests sends one HTTP request per host and one TLS handshake.
func (d *demo) showRequests() error {
	for _, host := range []string{"app.demo.test", "unknown.demo.test"} {
		body, err := get(d.httpAddr, host)
		if err != nil {
			return err
		}
		d.say("   curl -H 'Host: %s' http://%s/  →  %s", host, d.httpAddr, body)
	}
	name, err := tlsPeer(d.tlsAddr, "secure.demo.test")
	if err != nil {
		return err
	}
	d.say("   TLS to %s with SNI secure.demo.test  →  certificate of %q (passed through, not terminated)", d.tlsAddr, name)
	return nil
}

func waitFor(ctx context.Context, limit time.Duration, cond func() (bool, error), what string) error {
	deadline := time.Now().Add(limit)
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gave up after %s waiting for %s", limit, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
