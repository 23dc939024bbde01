package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/reconcile"
	"github.com/gitedge/gitedge/secrets"
)

// runVrrp is `gitedge vrrp DIR --node NAME`: the failover part alone, as
// `keepalived -f` is to keepalived. It follows DIR as `gitedge run
// --source DIR` does: the same node, source, loop and admin server, with
// only failover. SIGTERM/SIGINT stop cleanly (priority 0 sent, VIPs
// removed); a change to DIR's files, or SIGHUP, reloads it; a refused
// change keeps the running instances.
func runVrrp(ctx context.Context, env *cliEnv, args []string) int {
	hup, stop := notifyHUP()
	defer stop()

	fs := newFlags(env, "vrrp", "DIR --node NAME [--metrics ADDR] [--watch=false] [--debounce D]")
	fs.positional(1, 1, "DIR")
	node := fs.String("node", "", "this node's name in the Edge's spec.nodes (required)")
	admin := fs.String("metrics", "", "serve /status, /metrics, /healthz, /readyz and a status page on this address (as 127.0.0.1:9101); empty: off")
	secretsDir := fs.String("secrets-dir", "", "read {secret: NAME} from DIR/NAME (default "+secrets.DefaultDir+"; systemd credentials in $"+secrets.CredentialsEnv+" first)")
	ageIdentity := fs.String("age-identity", "", "decrypt {age: …} values with this age identity file (default $"+secrets.CredentialsEnv+"/"+secrets.CredentialAgeIdentity+", else "+secrets.DefaultAgeIdentity+")")
	watch, debounce := dirFlags(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if *node == "" {
		return fs.usageError("--node NAME is required: this node's name in the Edge's spec.nodes")
	}
	if err := daemonSupported(); err != nil {
		return fs.fail(err)
	}
	dir := pos[0]
	nc, err := dirConfig(dir, *node, *admin)
	if err != nil {
		return fs.fail(err)
	}
	// No node config: the secrets' settings are the flags, and the
	// messages say so.
	nc.Secrets.Dir, nc.Secrets.AgeIdentity = *secretsDir, *ageIdentity
	nc.Secrets.DirFlag, nc.Secrets.AgeIdentityFlag = "--secrets-dir", "--age-identity"
	cfg, err := vrrpLoad(dir, *node, nc.Local().Secrets)
	if err != nil {
		return fs.fail(err)
	}
	log := fs.logger()
	n, err := newNode(nc, nodeOptions{vrrp: true, sourceDir: dir, noWatch: !*watch, debounce: *debounce}, log)
	if err != nil {
		return fs.fail(err)
	}
	// The first config must apply (raw sockets, interfaces), as keepalived
	// refuses to start without them.
	if err := n.vrrp.Apply(ctx, cfg); err != nil {
		n.close()
		return fs.fail(err)
	}
	n.hup = hup
	log.Info("vrrp running", "dir", dir, "node", *node, "instances", vrrpInstanceNames(cfg), "admin", nc.AdminListen)
	if err := n.run(ctx); err != nil {
		return fs.fail(err)
	}
	log.Info("stopped: priority 0 sent, VIPs removed")
	return 0
}

// vrrpLoad is what `gitedge vrrp` checks before it starts: DIR loads with
// its secrets resolved (store: secrets' defaults and systemd's
// credentials), the node is in it, and it declares instances.
func vrrpLoad(dir, node string, store *secrets.Store) (failover.Config, error) {
	d, _, err := reconcile.LoadDirWith(dir, reconcile.LoadOptions{Local: &reconcile.Local{Secrets: store}})
	if err != nil {
		return failover.Config{}, fmt.Errorf("loading %s: %w", dir, err)
	}
	cfg, err := d.FailoverFor(node)
	if err != nil {
		return failover.Config{}, err
	}
	if len(cfg.Instances) == 0 {
		return failover.Config{}, errors.New(dir + ": the Edge declares no failover instances")
	}
	return cfg, nil
}

func vrrpInstanceNames(cfg failover.Config) string {
	names := make([]string, len(cfg.Instances))
	for i, in := range cfg.Instances {
		names[i] = in.Name
	}
	return strings.Join(names, ",")
}
