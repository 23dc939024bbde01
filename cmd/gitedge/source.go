package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/prometheus/client_golang/prometheus"
)

// revisionSource is what the node follows: a git remote or a directory.
type revisionSource interface {
	Next(ctx context.Context) (gitsource.Revision, error)
	Trigger(gitsource.Trigger)
}

// task is a long-running part with Run(ctx) semantics: nil on cancellation.
type task struct {
	name string
	run  func(ctx context.Context) error
}

// openSource builds the node's source and, with triggers, the tasks that
// feed it: the poller and the webhook for a git remote (from nc), or the
// fsnotify watcher for a local directory (dir, during development).
func openSource(nc *nodeconfig.Config, dir string, triggers bool, log *slog.Logger, reg prometheus.Registerer) (revisionSource, []task, error) {
	opts := gitsource.Options{Logger: log, Registry: reg}
	if dir != "" {
		d, err := gitsource.NewDir(gitsource.DirConfig{Dir: dir}, opts)
		if err != nil {
			return nil, nil, err
		}
		return d, []task{{"fsnotify " + dir, d.Run}}, nil
	}
	cfg := nc.Source
	g, err := gitsource.New(cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	if !triggers {
		return g, nil, nil
	}
	p, err := gitsource.NewPoller(cfg.Poll, cfg.Node, g.Trigger)
	if err != nil {
		return nil, nil, err
	}
	tasks := []task{{"poll " + cfg.Poll, p.Run}}
	if wc := nc.Webhook; wc != nil {
		w, err := gitsource.NewWebhook(*wc, g.Trigger, opts)
		if err != nil {
			return nil, nil, err
		}
		tasks = append(tasks, task{"webhook " + wc.Listen, w.Run})
	}
	return g, tasks, nil
}

// runSource is `gitedge source`: look at the configured source once and
// show what the node would load, or keep following it (--watch) with the
// node's own triggers. It applies nothing.
func runSource(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "source", "[--config FILE | --dir DIR] [--watch]")
	config := fs.String("config", nodeconfig.DefaultPath, "the node config naming the source")
	dir := fs.String("dir", "", "follow a local directory instead of the configured repository (development)")
	watch := fs.Bool("watch", false, "keep following: poll, webhook and fsnotify as `gitedge run` does, printing each revision")
	timeout := fs.Duration("timeout", 5*time.Minute, "without --watch: give up after this long")
	verbose := fs.Bool("v", false, "log what the source does to stderr")
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 0 {
		fs.Usage()
		return 2
	}
	var nc *nodeconfig.Config
	if *dir == "" {
		var err error
		if nc, err = nodeconfig.Load(*config); err != nil {
			fmt.Fprintf(env.stderr, "gitedge source: %v\n", err)
			return 1
		}
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level}))
	src, tasks, err := openSource(nc, *dir, *watch, log, prometheus.NewRegistry())
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge source: %v\n", err)
		return 1
	}
	if !*watch {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		rev, err := src.Next(ctx)
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge source: %v\n", err)
			return 1
		}
		printRevision(env.stdout, rev)
		if rev.Stale != nil {
			fmt.Fprintf(env.stderr, "gitedge source: from the cache: %v\n", rev.Stale)
			return 1
		}
		return 0
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(tasks))
	for _, t := range tasks {
		wg.Go(func() {
			if err := t.run(ctx); err != nil {
				errs <- fmt.Errorf("%s: %w", t.name, err)
				cancel()
			}
		})
	}
	for {
		rev, err := src.Next(ctx)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge source: %v\n", err)
			continue
		}
		printRevision(env.stdout, rev)
	}
	wg.Wait()
	close(errs)
	if err := errors.Join(collect(errs)...); err != nil {
		fmt.Fprintf(env.stderr, "gitedge source: %v\n", err)
		return 1
	}
	return 0
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

func printRevision(w io.Writer, rev gitsource.Revision) {
	fmt.Fprintf(w, "commit     %s\n", rev.Commit)
	if rev.Ref != "" {
		fmt.Fprintf(w, "ref        %s\n", rev.Ref)
	}
	trig := string(rev.Trigger.Kind)
	if rev.Trigger.Detail != "" {
		trig += " (" + rev.Trigger.Detail + ")"
	}
	fmt.Fprintf(w, "trigger    %s\n", trig)
	if rev.Author.Name != "" {
		fmt.Fprintf(w, "author     %s <%s> %s\n", rev.Author.Name, rev.Author.Email, rev.Author.When.UTC().Format(time.RFC3339))
		fmt.Fprintf(w, "committer  %s <%s> %s\n", rev.Committer.Name, rev.Committer.Email, rev.Committer.When.UTC().Format(time.RFC3339))
	}
	if rev.Signer != nil {
		fmt.Fprintf(w, "signer     %s %s (%s)\n", rev.Signer.KeyID, rev.Signer.Identity, rev.Signer.Fingerprint)
	}
	if rev.Previous != "" {
		fmt.Fprintf(w, "previous   %s\n", rev.Previous)
	}
	if rev.ForcePushed {
		fmt.Fprintln(w, "forced     the commit does not descend from the previous one")
	}
	var names []string
	var size int
	fs.WalkDir(rev.Files, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, p)
			if b, err := fs.ReadFile(rev.Files, p); err == nil {
				size += len(b)
			}
		}
		return nil
	})
	sort.Strings(names)
	fmt.Fprintf(w, "files      %d (%d bytes)\n", len(names), size)
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", n)
	}
	fmt.Fprintln(w)
}
