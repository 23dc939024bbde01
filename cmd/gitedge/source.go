package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
	"github.com/prometheus/client_golang/prometheus"
)

// revisionSource is what the node follows: a git remote or a directory.
type revisionSource interface {
	Next(ctx context.Context) (gitsource.Revision, error)
	Trigger(gitsource.Trigger)
}

// task is a long-running part with Run(ctx) semantics: nil on cancellation.
// A part that serves on a socket has listen and serve instead of run, so
// that its socket is open before it runs (listenParts says why).
type task struct {
	name   string
	run    func(ctx context.Context) error
	listen func(ctx context.Context) (net.Listener, error)
	serve  func(ctx context.Context, ln net.Listener) error
}

// start runs t; a task that listens serves on ln, or on a socket it opens
// now when ln is nil.
func (t task) start(ctx context.Context, ln net.Listener) error {
	if t.listen == nil {
		return t.run(ctx)
	}
	if ln == nil {
		var err error
		if ln, err = t.listen(ctx); err != nil {
			return err
		}
	}
	return t.serve(ctx, ln)
}

// sourceSpec says which source to open and what feeds it.
type sourceSpec struct {
	// dir follows a local directory instead of the node config's git
	// remote (development); noWatch reads it only when triggered, debounce
	// is how quiet it must stay before it is read (0: gitsource's default).
	dir      string
	noWatch  bool
	debounce time.Duration
	// triggers builds the tasks that poke the source: fsnotify for a
	// directory, the poller and the webhook for a git remote.
	triggers bool
	// deferOpen stands in for a git source whose state directory cannot
	// take the cache (a full disk): the node comes up, serves its last
	// applied commit, reports, and builds the source again later.
	deferOpen bool
	// listen opens the webhook's socket (an upgrade in place hands it on);
	// nil: a plain one.
	listen func(ctx context.Context, addr string) (net.Listener, error)
}

// openSource builds a source and, with triggers, the tasks that feed it;
// poke receives their triggers (nil: the source itself). `gitedge run`,
// `gitedge proxy`, `gitedge vrrp`, `gitedge source` and `gitedge
// reconcile --once` all open their source here.
func openSource(nc *nodeconfig.Config, spec sourceSpec, poke func(gitsource.Trigger), opts gitsource.Options) (revisionSource, []task, error) {
	if spec.dir != "" {
		d, err := gitsource.NewDir(gitsource.DirConfig{Dir: spec.dir, Debounce: spec.debounce, NoWatch: spec.noWatch || !spec.triggers}, opts)
		if err != nil {
			return nil, nil, err
		}
		if !spec.triggers || spec.noWatch {
			return d, nil, nil
		}
		return d, []task{{name: "fsnotify " + spec.dir, run: d.Run}}, nil
	}
	cfg := nc.Source
	var src revisionSource
	g, err := gitsource.New(cfg, opts)
	switch {
	case err != nil && !spec.deferOpen:
		return nil, nil, err
	case err != nil:
		// The configuration is valid (nodeconfig checked it): the state
		// directory failed.
		opts.Logger.Error("the git source cannot be opened; serving the last applied commit and retrying", "error", err)
		src = &deferredSource{first: err, build: func() (revisionSource, error) {
			g, err := gitsource.New(cfg, opts)
			if err != nil {
				return nil, err
			}
			return g, nil
		}}
	default:
		src = g
	}
	if !spec.triggers {
		return src, nil, nil
	}
	if poke == nil {
		poke = src.Trigger
	}
	p, err := gitsource.NewPoller(cfg.Poll, cfg.Node, poke)
	if err != nil {
		return nil, nil, err
	}
	tasks := []task{{name: "poll " + cfg.Poll, run: p.Run}}
	if wc := nc.Webhook; wc != nil {
		whc := *wc
		if g, ok := src.(*gitsource.Git); ok {
			whc.Known = g.Observed // a relay of the commit it has fetches nothing
		}
		w, err := gitsource.NewWebhook(whc, poke, opts)
		if err != nil {
			return nil, nil, err
		}
		addr, listen := wc.Listen, spec.listen
		if listen == nil {
			listen = func(_ context.Context, addr string) (net.Listener, error) { return net.Listen("tcp", addr) }
		}
		tasks = append(tasks, task{name: "webhook " + addr, serve: w.Serve,
			listen: func(ctx context.Context) (net.Listener, error) { return listen(ctx, addr) }})
	}
	return src, tasks, nil
}

// runSource is `gitedge source`: look at the configured source once and
// show what the node would load, or keep following it (--watch) with the
// node's own triggers. It applies nothing.
func runSource(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "source", "[--config FILE | --source DIR] [--watch] [--timeout D]")
	// What the source does is logged at info; its revisions go to stdout.
	fs.logDefaults("warn", "text")
	config := fs.String("config", nodeconfig.DefaultPath, "the node config naming the source")
	dir := fs.String("source", "", "follow a local directory instead of the configured repository (development)")
	watch := fs.Bool("watch", false, "keep following: poll, webhook and fsnotify as gitedge run does, printing each revision")
	timeout := fs.Duration("timeout", 5*time.Minute, "without --watch: give up after this long")
	if _, code, ok := fs.parse(args); !ok {
		return code
	}
	var nc *nodeconfig.Config
	if *dir == "" {
		var err error
		if nc, err = nodeconfig.Load(*config); err != nil {
			return fs.fail(err)
		}
	}
	src, tasks, err := openSource(nc, sourceSpec{dir: *dir, triggers: *watch}, nil, gitsource.Options{Logger: fs.logger(), Registry: prometheus.NewRegistry()})
	if err != nil {
		return fs.fail(err)
	}
	if !*watch {
		ctx, cancel := context.WithTimeout(ctx, *timeout)
		defer cancel()
		rev, err := src.Next(ctx)
		if err != nil {
			return fs.fail(err)
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
			if err := t.start(ctx, nil); err != nil {
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
		return fs.fail(err)
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

// sourceAdapter turns gitsource's revisions into the loop's; found, when
// set, hears each revision handed over (the relay).
type sourceAdapter struct {
	src   revisionSource
	found func(gitsource.Revision)
}

func (a sourceAdapter) Next(ctx context.Context) (reconcile.Revision, error) {
	r, err := a.src.Next(ctx)
	if err == nil && a.found != nil {
		a.found(r)
	}
	if err != nil {
		// A refused head names its commit: the loop reports it refused.
		rev := reconcile.Revision{Trigger: string(r.Trigger.Kind)}
		if ge, ok := errors.AsType[*gitsource.Error](err); ok && !reconcile.IsTransient(err) {
			rev.Commit = ge.Commit
		}
		return rev, err
	}
	return loopRevision(r), nil
}

func loopRevision(r gitsource.Revision) reconcile.Revision {
	rev := reconcile.Revision{
		Commit:  r.Commit,
		Files:   r.Files,
		Message: firstLine(r.Message),
		Trigger: string(r.Trigger.Kind),
	}
	if r.Signer != nil {
		rev.Signer = r.Signer.Identity + " (" + r.Signer.KeyID + ")"
	}
	if r.Author.Name != "" {
		rev.Author = r.Author.Name + " <" + r.Author.Email + ">"
	}
	if r.Trigger.Detail != "" {
		rev.Trigger += ": " + r.Trigger.Detail
	}
	return rev
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
