package main

import (
	"context"
	"fmt"
	"io"
	"os/signal"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
)

// runProxy is `gitedge proxy DIR`: the dataplane alone, from a routes
// directory, as `haproxy -f` is to HAProxy. It follows DIR as `gitedge
// run --source DIR` does: the same node, source, loop and admin server,
// with only the dataplane. A change is applied when the files stay quiet
// (and on SIGHUP); a refused change keeps the last good config serving;
// SIGTERM/SIGINT drain before it exits 0. Like haproxy, it refuses to
// start on a directory it cannot load or listeners it cannot bind.
func runProxy(ctx context.Context, env *cliEnv, args []string) int {
	hup, stop := notifyHUP()
	defer stop()
	usr2 := notifyUSR2()
	defer signal.Stop(usr2)

	fs := newFlags(env, "proxy", "DIR [--metrics ADDR] [--access-log] [--watch=false] [--debounce D] [--pprof] [--idle-poll D]")
	fs.positional(1, 1, "DIR")
	access := fs.Bool("access-log", false, "log one event per request and TLS connection")
	admin := fs.String("metrics", "", "serve /status, /metrics, /healthz, /readyz and a status page on this address (as 127.0.0.1:9101); empty: off")
	pprofOn := fs.Bool("pprof", false, "also serve /debug/pprof/ on the --metrics address")
	idle := fs.String("idle-poll", dataplane.DefaultIdlePoll.String(), "while loaded, keep polling for events this long after the last before sleeping (HAProxy's busy-polling, bounded); off: never")
	watch, debounce := dirFlags(fs)
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	idlePoll, err := nodeconfig.ParseIdlePoll(*idle)
	if err != nil {
		return fs.usageError("--idle-poll: %v", err)
	}
	if err := daemonSupported(); err != nil {
		return fs.fail(err)
	}
	dir := pos[0]
	log := fs.logger()
	sd, up, err := daemonSetup(usr2, log)
	if err != nil {
		up.fail(err)
		return fs.fail(err)
	}
	d, err := reconcile.LoadDir(dir)
	if err != nil {
		up.fail(fmt.Errorf("%s: %w", dir, err))
		fmt.Fprintf(env.stderr, "gitedge proxy: %s: %v\n", dir, err)
		return 1
	}
	nc, err := dirConfig(dir, "local", *admin)
	if err != nil {
		up.fail(err)
		return fs.fail(err)
	}
	nc.IdlePoll = idlePoll
	n, err := newNode(nc, nodeOptions{proxy: true, sourceDir: dir, noWatch: !*watch, debounce: *debounce, access: *access, pprof: *pprofOn,
		up: up}, log)
	if err != nil {
		up.fail(err)
		return fs.fail(err)
	}
	if err := n.proxy.Apply(ctx, d.Dataplane); err != nil {
		n.close()
		up.fail(fmt.Errorf("%s: %w", dir, err))
		fmt.Fprintf(env.stderr, "gitedge proxy: %s: %v\n", dir, err)
		return 1
	}
	n.hup = hup
	n.sd = sd
	log.Info("gitedge proxy starting", "dir", dir, "listeners", len(d.Dataplane.Listeners), "routes", len(d.Dataplane.Routes),
		"backends", len(d.Dataplane.Backends), "admin", nc.AdminListen)
	if err := serveNode(ctx, n, up); err != nil {
		return fs.fail(err)
	}
	return 0
}

// dirFlags are how `gitedge proxy` and `gitedge vrrp` follow their
// directory.
func dirFlags(fs *cmdFlags) (watch *bool, debounce *time.Duration) {
	watch = fs.Bool("watch", true, "apply changes to files under DIR when they stay quiet; --watch=false: only on SIGHUP")
	debounce = fs.Duration("debounce", 300*time.Millisecond, "how long the files must stay quiet after a change before it is applied")
	return watch, debounce
}

// dirConfig is the node config of a command following a directory: the
// node's name, the directory as its source, and the admin server on addr
// ("" turns it off). Nothing is kept in a state directory.
func dirConfig(dir, node, addr string) (*nodeconfig.Config, error) {
	admin := addr
	if admin == "" {
		admin = "off"
	}
	return nodeconfig.Build(nodeconfig.File{Node: node, Source: nodeconfig.Source{URL: dir}, Admin: nodeconfig.Admin{Listen: admin}}, "")
}

// close releases what newNode opened, for a node that will not run.
func (n *node) close() {
	if n.proxy != nil {
		n.proxy.Close()
	}
	if n.vrrp != nil {
		n.vrrp.Close()
	}
	if c, ok := n.parts.src.(io.Closer); ok {
		c.Close()
	}
}
