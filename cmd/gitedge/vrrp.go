package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/reconcile"
)

// runVrrp is `gitedge vrrp DIR --node NAME`: the failover part alone, as
// `keepalived -f` is to keepalived. SIGTERM/SIGINT stop cleanly (priority 0
// sent, VIPs removed); SIGHUP, or a change to DIR's YAML files, reloads it.
func runVrrp(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "vrrp", "DIR --node NAME")
	node := fs.String("node", "", "this node's name in the Edge's spec.nodes (required)")
	metrics := fs.String("metrics", "", "serve Prometheus /metrics and a JSON /status on this address (e.g. 127.0.0.1:9101)")
	logFormat := fs.String("log-format", "text", "text or json")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	watch := fs.Duration("watch", 2*time.Second, "reload when a YAML file under DIR changes, checked this often (0: SIGHUP only)")
	pos, code, ok := parseFlags(fs, args)
	if !ok {
		return code
	}
	if len(pos) != 1 || *node == "" {
		fs.Usage()
		return 2
	}
	dir := pos[0]
	// Catch SIGHUP first: its default action would end the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	log, err := vrrpLogger(env, *logFormat, *logLevel)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge vrrp: %v\n", err)
		return 2
	}
	cfg, err := vrrpLoad(dir, *node)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge vrrp: %v\n", err)
		return 1
	}
	reg := prometheus.NewRegistry()
	m, err := failover.NewManager(failover.Options{Logger: log, Registerer: reg})
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge vrrp: %v\n", err)
		return 1
	}
	if *metrics != "" {
		ln, err := net.Listen("tcp", *metrics)
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge vrrp: --metrics: %v\n", err)
			return 1
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(m.Status())
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
	}
	if err := m.Apply(ctx, cfg); err != nil {
		m.Close()
		fmt.Fprintf(env.stderr, "gitedge vrrp: %v\n", err)
		return 1
	}
	log.Info("vrrp running", "dir", dir, "node", *node, "instances", vrrpInstanceNames(cfg))

	// File changes: compare a fingerprint of the YAML files every --watch.
	var tick <-chan time.Time
	stamp := vrrpFingerprint(dir)
	if *watch > 0 {
		t := time.NewTicker(*watch)
		defer t.Stop()
		tick = t.C
	}

	for {
		select {
		case <-ctx.Done():
			log.Info("stopping: priority 0 sent, VIPs removed")
			m.Close()
			return 0
		case <-tick:
			if s := vrrpFingerprint(dir); s != stamp {
				stamp = s
				log.Info("files changed; reloading", "dir", dir)
				select {
				case hup <- syscall.SIGHUP:
				default:
				}
			}
		case <-hup:
			// Last known good: a broken directory changes nothing.
			next, err := vrrpLoad(dir, *node)
			if err != nil {
				log.Error("reload refused; keeping the running config", "dir", dir, "err", err)
				continue
			}
			if next.Equal(cfg) {
				log.Info("reload: no change")
				continue
			}
			if err := m.Apply(ctx, next); err != nil {
				log.Error("reload applied with errors", "err", err)
			} else {
				log.Info("reloaded", "instances", vrrpInstanceNames(next))
			}
			cfg = next
		}
	}
}

func vrrpLoad(dir, node string) (failover.Config, error) {
	d, err := reconcile.LoadDir(dir)
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

// vrrpFingerprint sums the names, sizes and modification times of the
// YAML files under dir: cheap enough to poll, and any edit changes it.
func vrrpFingerprint(dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return nil
		}
		if info, err := d.Info(); err == nil {
			fmt.Fprintf(&b, "%s %d %d\n", p, info.Size(), info.ModTime().UnixNano())
		}
		return nil
	})
	return b.String()
}

func vrrpInstanceNames(cfg failover.Config) string {
	names := make([]string, len(cfg.Instances))
	for i, in := range cfg.Instances {
		names[i] = in.Name
	}
	return strings.Join(names, ",")
}

func vrrpLogger(env *cliEnv, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.stderr, o)), nil
	}
	return nil, fmt.Errorf("--log-format %q: expected text or json", format)
}
