package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/reconcile"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// runProxy is `gitedge proxy DIR`: the dataplane alone, from a routes
// directory, as `haproxy -f` is to HAProxy. It reloads on SIGHUP and on
// file changes (debounced), keeps serving the last good config when a
// reload fails, and drains on SIGTERM/SIGINT before exiting 0.
func runProxy(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "proxy", "DIR")
	accessLog := fs.Bool("access-log", false, "log one JSON event per request and TLS connection to stderr")
	metricsAddr := fs.String("metrics", "", "serve /metrics and /healthz on this address (as 127.0.0.1:9101); empty: off")
	pprofOn := fs.Bool("pprof", false, "also serve /debug/pprof/ on the --metrics address")
	debounce := fs.Duration("debounce", 300*time.Millisecond, "wait this long after the last file change before reloading")
	watch := fs.Bool("watch", true, "reload when files under DIR change (SIGHUP always reloads)")
	verbose := fs.Bool("v", false, "debug logging")
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		fs.Usage()
		return 2
	}
	dir := pos[0]
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: level}))
	opts := dataplane.Options{Logger: log}
	if *accessLog {
		opts.AccessLog = slog.New(slog.NewJSONHandler(env.stderr, nil))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Registry = reg
	p := dataplane.New(opts)

	// Ask for SIGHUP before the first load, so an early reload is not lost.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	load := func(reason string) error {
		d, err := reconcile.LoadDir(dir)
		if err != nil {
			return err
		}
		if err := p.Apply(d.Dataplane); err != nil {
			return err
		}
		log.Info("routes loaded", "dir", dir, "reason", reason, "listeners", len(d.Dataplane.Listeners),
			"routes", len(d.Dataplane.Routes), "backends", len(d.Dataplane.Backends))
		return nil
	}
	if err := load("start"); err != nil {
		fmt.Fprintf(env.stderr, "gitedge proxy: %s: %v\n", dir, err)
		p.Close()
		return 1
	}

	var changes <-chan fsnotify.Event
	var watchErrs <-chan error
	if *watch {
		w, err := watchTree(dir)
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge proxy: watching %s: %v (use --watch=false to rely on SIGHUP)\n", dir, err)
			p.Close()
			return 1
		}
		done := make(chan struct{})
		defer close(done)
		defer w.Close()
		changes, watchErrs = watchNewDirs(w, done), w.Errors
	}

	if *metricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			if !p.Healthy() {
				http.Error(w, "listeners not accepting", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		if *pprofOn {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		srv := &http.Server{Addr: *metricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server failed", "addr", *metricsAddr, "error", err)
			}
		}()
		defer srv.Close()
	}

	runErr := make(chan error, 1)
	go func() { runErr <- p.Run(ctx) }()

	var timer *time.Timer
	var fire <-chan time.Time
	reload := func(reason string) {
		if err := load(reason); err != nil {
			log.Error("reload failed: still serving the previous config", "dir", dir, "reason", reason, "error", err)
		}
	}
	for {
		select {
		case err := <-runErr:
			if err != nil {
				fmt.Fprintf(env.stderr, "gitedge proxy: %v\n", err)
				return 1
			}
			return 0
		case <-hup:
			reload("SIGHUP")
		case ev, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			if !relevant(ev.Name) {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(*debounce)
			} else {
				timer.Reset(*debounce)
			}
			fire = timer.C
		case <-fire:
			fire = nil
			reload("file change")
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			log.Warn("file watch error; SIGHUP still reloads", "dir", dir, "error", err)
		}
	}
}

// relevant reports whether a changed path can affect the routes: YAML
// files and directories, not hidden names or editor droppings.
func relevant(path string) bool {
	base := filepath.Base(path)
	if strings.HasPrefix(base, ".") || strings.HasSuffix(base, "~") {
		return false
	}
	ext := filepath.Ext(base)
	return ext == ".yaml" || ext == ".yml" || ext == ""
}

// watchTree watches dir and every non-hidden directory below it.
func watchTree(dir string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			return filepath.SkipDir
		}
		return w.Add(path)
	})
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// watchNewDirs adds directories created under the tree to the watcher and
// passes every event on until done closes.
func watchNewDirs(w *fsnotify.Watcher, done <-chan struct{}) <-chan fsnotify.Event {
	out := make(chan fsnotify.Event)
	go func() {
		defer close(out)
		for ev := range w.Events {
			if ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
					_ = w.Add(ev.Name)
				}
			}
			select {
			case out <- ev:
			case <-done:
				return
			}
		}
	}()
	return out
}
