package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/gitedge/gitedge/nodeconfig"
)

// runRun is `gitedge run`: the daemon. SIGTERM and SIGINT (the context)
// stop it cleanly; SIGHUP re-reads the node config and re-fetches; SIGUSR2
// upgrades in place (upgrade.go).
func runRun(ctx context.Context, env *cliEnv, args []string) int {
	hup, stop := notifyHUP()
	defer stop()
	usr2 := notifyUSR2()
	defer signal.Stop(usr2)

	fs := newFlags(env, "run", "[--config FILE] [--source DIR] [--no-vrrp] [--access-log]")
	fs.logDefaults("info", "json")
	config := fs.String("config", nodeconfig.DefaultPath, "node config; re-read on SIGHUP")
	dir := fs.String("source", "", "follow a local directory with fsnotify instead of the configured git remote (development)")
	noVRRP := fs.Bool("no-vrrp", false, "run without failover, even if the repository declares it")
	access := fs.Bool("access-log", false, "log every request and connection")
	if _, code, ok := fs.parse(args); !ok {
		return code
	}
	if err := daemonSupported(); err != nil {
		return fs.fail(err)
	}
	log := fs.logger()
	sd, up, err := daemonSetup(usr2, log)
	fail := func(err error) int {
		up.fail(err) // a process started by an upgrade tells the old one why
		return fs.fail(err)
	}
	if err != nil {
		return fail(err)
	}
	nc, defaults, err := readRunConfig(*config, *dir)
	if err != nil {
		return fail(err)
	}
	n, err := newNode(nc, nodeOptions{proxy: true, vrrp: !*noVRRP, bgp: true, sourceDir: *dir, keepState: true, local: true,
		defaults: defaults, resync: time.Minute, access: *access, up: up}, log)
	if err != nil {
		return fail(err)
	}
	n.sd = sd
	n.hup = hup
	n.readConfig = func() (*nodeconfig.Config, error) {
		nc, _, err := readRunConfig(*config, *dir)
		return nc, err
	}
	log.Info("gitedge starting", "node", nc.Node, "version", version, "source", sourceName(nc, *dir), "admin", nc.AdminListen,
		"stateDir", nc.StateDir)
	if err := serveNode(ctx, n, up); err != nil {
		return fs.fail(err)
	}
	log.Info("gitedge stopped")
	return 0
}

// daemonSetup is what every command that runs a node as a service starts
// with: the systemd notifier (nil when not started by systemd) and the
// in-place upgrades, with what a previous process handed over.
func daemonSetup(usr2 chan os.Signal, log *slog.Logger) (*sdNotifier, *upgrades, error) {
	sd, err := newSDNotifier()
	if err != nil {
		log.Warn("systemd notifications are off", "error", err)
		sd = nil
	}
	up, err := newUpgrades(usr2, log, sd)
	return sd, up, err
}

// readRunConfig reads the node config; with --source and no config file,
// the built-in one (defaults true).
func readRunConfig(path, dir string) (nc *nodeconfig.Config, defaults bool, err error) {
	nc, err = nodeconfig.LoadFor(path, dir)
	if err != nil && dir != "" && errors.Is(err, os.ErrNotExist) {
		nc, err = builtinConfig(dir)
		return nc, true, err
	}
	return nc, false, err
}

// builtinConfig is the node config of a command given a routes directory
// and no config file: node "local", the admin server on its default
// address, and the state in the user's cache directory, never in a
// production node's /var/lib/gitedge.
func builtinConfig(dir string) (*nodeconfig.Config, error) {
	state := filepath.Join(os.TempDir(), "gitedge-state")
	if cache, err := os.UserCacheDir(); err == nil {
		state = filepath.Join(cache, "gitedge")
	}
	return nodeconfig.Build(nodeconfig.File{Node: "local", Source: nodeconfig.Source{URL: dir}, StateDir: state}, "")
}

func sourceName(nc *nodeconfig.Config, dir string) string {
	if dir != "" {
		return dir
	}
	return nc.Source.URL
}
