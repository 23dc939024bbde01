package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"reflect"
	"sync"
	"time"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/nodeconfig"
)

// What a SIGHUP (systemctl reload) may change while the node runs, and
// what needs a restart. The source (remote, branch, path, poll, auth,
// keyring), the webhook and the admin server are rebuilt and swapped in
// (on the sockets they had, when their address stays: superviseParts);
// the secrets section applies from the next pass, and every SIGHUP
// re-applies the live commit so changed secret files are read at once;
// the node's name, its state directory, the Proxmox connection and the
// proxy's tuning are what the running subsystems were built with, so a
// change there is logged and waits for a restart. The log level is a
// flag, not config.
var (
	liveFields    = []string{"source", "webhook", "admin", "secrets"}
	restartFields = []string{"node", "stateDir", "proxmox", "forge", "notify", "proxy"}
)

// liveParts are the parts of a node a reload may replace: the source, and
// the tasks that go with it (poller, webhook) and the admin server.
type liveParts struct {
	cfg   *nodeconfig.Config
	src   revisionSource
	tasks []task
}

// buildParts builds the source, its triggers and the admin server for nc.
// The triggers poke whatever source the node runs now (n.src), so a source
// swapped by a reload or built late is poked the same way.
func (n *node) buildParts(nc *nodeconfig.Config) (liveParts, error) {
	poke := n.poke
	spec := sourceSpec{dir: n.opts.sourceDir, noWatch: n.opts.noWatch, debounce: n.opts.debounce, triggers: true, deferOpen: true,
		listen: n.opts.up.listen}
	src, tasks, err := openSource(nc, spec, poke, gitsource.Options{Logger: n.log, Registry: n.reg})
	if err != nil {
		return liveParts{}, err
	}
	if addr := nc.AdminListen; addr != "" {
		// An upgrade hands the socket on (upgrade.go; nil up: a plain one).
		tasks = append(tasks, task{name: "admin " + addr, serve: n.admin.serve,
			listen: func(ctx context.Context) (net.Listener, error) { return n.opts.up.listen(ctx, addr) }})
	}
	return liveParts{cfg: nc, src: src, tasks: tasks}, nil
}

// superviseParts runs the live parts, and on SIGHUP re-reads the node
// config, replacing the parts it changed. A part failing at start stops
// the node, as every part does; one started by a reload is logged and the
// node runs on without it. listening is closed once the first parts have
// their sockets (listenParts); the loop waits for it (node.run).
//
// The admin and webhook sockets of addresses a reload keeps pass from the
// parts it stops to those it starts, open all along (upgrades.park): a
// connection waits in the backlog meanwhile instead of being refused, and
// the new process of an upgrade in place, reloaded before the old one has
// let go of its sockets, does not try to bind them again, which would fail.
func (n *node) superviseParts(ctx context.Context, listening chan<- struct{}) error {
	parts := n.parts
	up := n.opts.up
	for gen := 0; ; gen++ {
		lns, err := n.listenParts(ctx, parts.tasks, gen)
		up.unpark() // a reload's: the sockets the next parts did not take are closed
		if err != nil {
			return err
		}
		if gen == 0 {
			close(listening)
		}
		pctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		failed := make(chan error, len(parts.tasks))
		for i, t := range parts.tasks {
			if t.listen != nil && lns[i] == nil {
				continue // its socket failed at a reload: logged
			}
			wg.Go(func() {
				if err := named(t.name, t.start(pctx, lns[i])); err != nil {
					failed <- err
				}
			})
		}
		next, err := n.waitReload(ctx, parts, failed, gen)
		if next != nil {
			up.park()
		}
		cancel()
		wg.Wait()
		if next == nil {
			return err
		}
		n.src.swap(next.src)
		parts = *next
	}
}

// listenParts opens the sockets of the parts that listen (the admin
// server, the webhook), in order, before any part runs. The loop's first
// pass waits for them, so the new process of an upgrade in place has taken
// every socket it inherited for them before it reports ready and closes
// the inherited sockets no part took (upgrade.go): taken later, by a part
// racing the first pass, a socket would be closed as "not in the running
// config" and opened again, refused meanwhile, or not at all while the old
// process still holds it. A socket failing at start fails the node (those
// opened are closed); one of a reload's parts is logged, and that part
// does not run.
func (n *node) listenParts(ctx context.Context, tasks []task, gen int) ([]net.Listener, error) {
	lns := make([]net.Listener, len(tasks))
	for i, t := range tasks {
		if t.listen == nil {
			continue
		}
		ln, err := t.listen(ctx)
		if err == nil {
			lns[i] = ln
			continue
		}
		err = fmt.Errorf("%s: %w (free the address, or configure another)", t.name, err)
		if gen > 0 {
			n.log.Error("a part started by a reload failed; the node runs on without it", "error", err)
			continue
		}
		for _, ln := range lns {
			if ln != nil {
				ln.Close()
			}
		}
		return nil, err
	}
	return lns, nil
}

// waitReload returns the parts to run next (nil: the node stops, with the
// error that stops it).
func (n *node) waitReload(ctx context.Context, cur liveParts, failed <-chan error, gen int) (*liveParts, error) {
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case err := <-failed:
			if gen == 0 {
				return nil, err
			}
			n.log.Error("a part started by a reload failed; the node runs on without it", "error", err)
		case <-n.hup:
			ready := n.sdReady.Load() // before READY=1 at start, systemd hears nothing of reloads
			if ready {
				_ = n.sd.Reloading("reloading: re-reading the node config and fetching")
			}
			next := n.reload(cur)
			// The secrets' files are read again by a pass over what the
			// node runs (or a commit refused for want of one).
			n.loop.Poke()
			if ready {
				_ = n.sd.Ready(n.sdStatus())
			}
			if next != nil {
				return next, nil
			}
		}
	}
}

// reload re-reads the node config (SIGHUP). It returns new parts when a
// live field changed, nil when the running ones stay; either way the
// source looks at the remote again.
func (n *node) reload(cur liveParts) *liveParts {
	path := cur.cfg.Path
	refetch := gitsource.Trigger{Kind: gitsource.TriggerManual, Detail: "SIGHUP", At: time.Now()}
	if n.readConfig == nil {
		n.src.Trigger(refetch)
		return nil
	}
	nc, err := n.readConfig()
	if err != nil {
		n.log.Error("SIGHUP: the node config does not load; keeping the running config", "config", path, "error", err)
		n.src.Trigger(refetch)
		return nil
	}
	live, restart := configChanges(cur.cfg, nc)
	// What needs a restart keeps its running value until then.
	f, was := nc.File, cur.cfg.File
	f.Node, f.StateDir, f.Proxmox, f.Forge, f.Notify = was.Node, was.StateDir, was.Proxmox, was.Forge, was.Notify
	var next *liveParts
	if len(live) > 0 {
		merged, err := nodeconfig.Build(f, nc.Path)
		if err != nil {
			n.log.Error("SIGHUP: the new node config does not go with the running one; keeping the running config", "config", path, "error", err)
			n.src.Trigger(refetch)
			return nil
		}
		p, err := n.buildParts(merged)
		if err != nil {
			n.log.Error("SIGHUP: the new node config cannot be applied; keeping the running config", "config", path, "error", err)
			n.src.Trigger(refetch)
			return nil
		}
		next = &p
		n.loop.SetLocal(localChecks(merged, n.opts))
		if n.relay != nil {
			_ = n.relay.Configure(relayConfig(merged)) // webhook.relay is part of the webhook section
		}
	}
	attrs := []any{"config", path, "appliedLive", live, "needsRestart", restart}
	if len(restart) > 0 {
		n.log.Warn("SIGHUP: node config reloaded; some changes need a restart (systemctl restart gitedge)", attrs...)
	} else {
		n.log.Info("SIGHUP: node config reloaded; re-fetching", attrs...)
	}
	if next == nil {
		n.src.Trigger(refetch) // a new source looks at once by itself
	}
	return next
}

// configChanges lists the sections that differ, split into those a reload
// applies and those that need a restart.
func configChanges(old, new *nodeconfig.Config) (live, restart []string) {
	o, n := old.File, new.File
	differ := map[string]bool{
		"source":   o.Source != n.Source,
		"webhook":  !reflect.DeepEqual(o.Webhook, n.Webhook),
		"admin":    old.AdminListen != new.AdminListen,
		"node":     old.Node != new.Node,
		"stateDir": old.StateDir != new.StateDir,
		"proxmox":  !reflect.DeepEqual(o.Proxmox, n.Proxmox),
		"forge":    !reflect.DeepEqual(o.Forge, n.Forge),
		"notify":   !reflect.DeepEqual(o.Notify, n.Notify),
		"proxy":    old.IdlePoll != new.IdlePoll,
		"secrets":  !reflect.DeepEqual(o.Secrets, n.Secrets),
	}
	live, restart = []string{}, []string{}
	for _, f := range liveFields {
		if differ[f] {
			live = append(live, f)
		}
	}
	for _, f := range restartFields {
		if differ[f] {
			restart = append(restart, f)
		}
	}
	return live, restart
}

// switchSource is what the loop reads across reloads: swap replaces the
// source under it, and a Next waiting in the old one asks the new one.
type switchSource struct {
	mu      sync.Mutex
	cur     revisionSource
	swapped chan struct{} // closed when cur is replaced
}

func newSwitchSource(s revisionSource) *switchSource {
	return &switchSource{cur: s, swapped: make(chan struct{})}
}

func (s *switchSource) current() (revisionSource, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur, s.swapped
}

func (s *switchSource) swap(src revisionSource) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = src
	close(s.swapped)
	s.swapped = make(chan struct{})
}

// Trigger pokes the current source.
func (s *switchSource) Trigger(t gitsource.Trigger) {
	src, _ := s.current()
	src.Trigger(t)
}

// Next asks the current source; a swap meanwhile cancels that and asks
// the new one.
func (s *switchSource) Next(ctx context.Context) (gitsource.Revision, error) {
	for {
		src, swapped := s.current()
		nctx, cancel := context.WithCancel(ctx)
		stop := make(chan struct{})
		go func() {
			select {
			case <-swapped:
				cancel()
			case <-stop:
			}
		}()
		rev, err := src.Next(nctx)
		close(stop)
		swappedMeanwhile := nctx.Err() != nil && ctx.Err() == nil
		cancel()
		if err != nil && swappedMeanwhile {
			continue
		}
		return rev, err
	}
}

// deferredSource stands in for a git source that could not be opened at
// start (its state directory could not be written): Next reports why, as
// a transient error, and builds it again with backoff or when triggered;
// once built, it is the source.
type deferredSource struct {
	build func() (revisionSource, error)
	first error // the failure at start, reported by the first Next

	mu       sync.Mutex
	src      revisionSource
	poke     chan struct{}
	failures int
}

type transientError struct{ error }

func (e transientError) Transient() bool { return true }
func (e transientError) Unwrap() error   { return e.error }

func (d *deferredSource) pokes() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.poke == nil {
		d.poke = make(chan struct{}, 1)
	}
	return d.poke
}

// Trigger asks for another try at once (or pokes the built source).
func (d *deferredSource) Trigger(t gitsource.Trigger) {
	d.mu.Lock()
	src := d.src
	d.mu.Unlock()
	if src != nil {
		src.Trigger(t)
		return
	}
	select {
	case d.pokes() <- struct{}{}:
	default:
	}
}

// Next is for one caller, as gitsource's.
func (d *deferredSource) Next(ctx context.Context) (gitsource.Revision, error) {
	d.mu.Lock()
	src := d.src
	d.mu.Unlock()
	if src != nil {
		return src.Next(ctx)
	}
	if d.first != nil {
		err := d.first
		d.first = nil
		d.failures = 1
		return gitsource.Revision{Trigger: gitsource.Trigger{Kind: gitsource.TriggerStart}}, transientError{err}
	}
	wait := min(time.Second<<min(d.failures, 6), time.Minute)
	wait = wait/2 + rand.N(wait/2+1)
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return gitsource.Revision{}, ctx.Err()
	case <-t.C:
	case <-d.pokes():
	}
	s, err := d.build()
	if err != nil {
		d.failures++
		return gitsource.Revision{Trigger: gitsource.Trigger{Kind: gitsource.TriggerRetry}}, transientError{err}
	}
	d.mu.Lock()
	d.src = s
	d.mu.Unlock()
	return s.Next(ctx)
}
