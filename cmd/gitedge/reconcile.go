package main

import (
	"context"
	"fmt"
	"io/fs"
	"time"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
)

// runReconcile is `gitedge reconcile --once`: fetch and verify the source,
// validate, plan, and apply what a one-shot process can apply: the VMs.
// The proxy and VRRP live in `gitedge run`; here they are validated and
// planned only, with the node-local checks gitedge run makes: the node's
// name and ports, and the secrets the repository names, resolved as a
// node running VRRP and BGP resolves them (--no-vrrp: VRRP's are not
// resolved, as gitedge run --no-vrrp needs none). The exit status says whether the pass converged: 0 when
// everything it may change was changed (or nothing needed to be), 1 when
// it failed or left changes undone.
func runReconcile(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "reconcile", "--once [--dry-run] [--config FILE] [--source DIR] [--lead] [--no-vrrp] [--timeout D]")
	fs.logDefaults("warn", "json")
	once := fs.Bool("once", false, "run one pass and exit (required: the loop itself is gitedge run)")
	dry := fs.Bool("dry-run", false, "stop after plan and print it: change nothing")
	config := fs.String("config", nodeconfig.DefaultPath, "node config")
	dir := fs.String("source", "", "read a local directory instead of the configured git remote")
	lead := fs.Bool("lead", false, "apply VM changes even when the infra leader is a VRRP master (this one-shot cannot know)")
	noVRRP := fs.Bool("no-vrrp", false, "check the commit as gitedge run --no-vrrp would: VRRP's secrets (auth.password) are not resolved")
	timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
	if _, code, ok := fs.parse(args); !ok {
		return code
	}
	if !*once {
		return fs.usageError("--once is required: one pass and exit (the loop itself is gitedge run)")
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	nc, defaults, err := readRunConfig(*config, *dir)
	if err != nil {
		return fs.fail(err)
	}
	log := fs.logger()
	src, _, err := openSource(nc, sourceSpec{dir: *dir}, nil, gitsource.Options{Logger: log})
	if err != nil {
		return fs.fail(err)
	}
	rev, fetchErr := src.Next(ctx)
	loop := &reconcile.Loop{Node: nc.Node, DryRun: *dry, Logger: log,
		Local: localChecks(nc, nodeOptions{vrrp: !*noVRRP, bgp: true, local: true, defaults: defaults})}
	var rec *infra.Reconciler
	if nc.Proxmox != nil {
		cc, err := nc.ProxmoxClient()
		if err == nil {
			var api infra.API
			if api, err = infra.NewAPI(cc); err == nil {
				rec, err = infra.New(infra.Options{API: api, Logger: log})
			}
		}
		if err != nil {
			return fs.fail(err)
		}
		loop.Infra = rec
	}
	// No VRRP runs here to ask: a VRRP leader is led only with --lead.
	loop.Leadership = reconcile.Leadership{Always: *lead}
	res, err := loop.Pass(ctx, loopRevision(rev), fetchErr)
	fmt.Fprintf(env.stdout, "commit %s: %s\n", rev.Commit, res)
	if live := loop.Live(); live != nil {
		fmt.Fprintf(env.stdout, "desired: %s\n", summary(live))
	}
	if err != nil {
		return fs.fail(err)
	}
	if res == reconcile.ResultPlanned {
		if err := printDryRun(ctx, env, nc, defaults, rev.Files, rec); err != nil {
			return fs.fail(err)
		}
		return 0
	}
	if rec != nil {
		if r, ok := rec.Last(); ok {
			role := "leader: applied"
			if !r.Leader {
				role = "not the infra leader: planned only"
			}
			fmt.Fprintf(env.stdout, "infra (%s):\n", role)
			_ = r.Plan.WriteText(env.stdout)
			for _, a := range r.Applied {
				fmt.Fprintf(env.stdout, "  done: %s\n", a)
			}
			switch {
			case r.Err != nil:
				return fs.fail(r.Err)
			case !r.Leader && !r.Plan.Empty():
				return fs.fail(fmt.Errorf("not converged: %d VM change(s) left to the infra leader (--lead applies them from here)", len(r.Plan.Actions)))
			}
		}
	}
	if res != reconcile.ResultApplied && res != reconcile.ResultUnchanged {
		return 1
	}
	return 0
}

// printDryRun prints what the pass would change: the declared state
// against the last commit this node applied (its record in stateDir, when
// there is one), and with a proxmox section the VM plan against the real
// cluster. It writes nothing anywhere.
func printDryRun(ctx context.Context, env *cliEnv, nc *nodeconfig.Config, defaults bool, files fs.FS, rec *infra.Reconciler) error {
	desired, err := reconcile.Load(files)
	if err != nil {
		return err
	}
	var base *reconcile.Desired
	against := "nothing applied on this node yet: everything is added"
	if !defaults {
		switch r, err := reconcile.NewStateFile(nc.StateDir).Load(); {
		case err != nil:
			against = fmt.Sprintf("the last applied commit cannot be read (%v): everything is added", err)
		case r != nil:
			if base, err = reconcile.Load(r.Files); err != nil {
				return fmt.Errorf("the last applied commit %s: %w", r.Commit, err)
			}
			against = "compared with the last applied commit " + r.Commit
		}
	}
	fmt.Fprintf(env.stdout, "plan (%s):\n", against)
	if err := reconcile.Diff(base, desired).WriteText(env.stdout); err != nil {
		return err
	}
	if rec == nil {
		return nil
	}
	r, err := rec.Apply(ctx, desired.Infra, func() bool { return false })
	fmt.Fprintln(env.stdout, "infra (dry run: planned only):")
	_ = r.Plan.WriteText(env.stdout)
	return err
}
