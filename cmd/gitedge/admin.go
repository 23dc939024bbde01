package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gitedge/gitedge/reconcile"
)

// adminServer serves a node's /status (JSON), /metrics, /healthz,
// /readyz and a status page at /; with pprof, /debug/pprof/ too. Every
// command that runs a node serves this one, on the listener it is given.
type adminServer struct {
	status   func() nodeStatus
	ready    func() reconcile.Status // the loop's status, for /readyz
	healthy  func() error            // nil: every part works
	registry *prometheus.Registry
	logger   *slog.Logger
	pprof    bool
}

func (a *adminServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.status())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// Alive, and every part this process runs works (the proxy's
		// listeners accept). A refused commit does not make a node
		// unhealthy: it keeps serving the last good one.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := a.healthy(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// Ready once a commit serves (the last applied one counts, before
		// any fetch); not before: a load balancer in front should wait. A
		// refused newer commit leaves it ready (every node would refuse
		// it at once: last known good keeps them serving), and the body
		// says it serves an older one.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		s := a.ready()
		if s.Live == nil {
			msg := "no commit applied yet"
			if c, ok := s.Conditions["live"]; ok && c.Message != "" {
				msg = c.Message
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, msg)
			return
		}
		fmt.Fprintln(w, readyMessage(s))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry}))
	if a.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		page, err := renderStatusPage(a.status(), time.Now())
		if err != nil {
			a.logger.Warn("status page", "error", err)
			http.Error(w, "status page: "+err.Error()+"; /status has it as JSON", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", statusPageCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		w.Write(page)
	})
	return mux
}

// serve serves on ln until ctx ends (or serving fails), then closes it.
func (a *adminServer) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	served, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-served:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(ln)
	close(served)
	<-stopped
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// readyMessage is /readyz's answer for a node that serves: which commit,
// and whether it is the newest one the node saw.
func readyMessage(s reconcile.Status) string {
	msg := "ready: serving commit " + s.Live.Commit
	a := s.LastAttempt
	switch {
	case a == nil || a.Error == "" || a.Result == reconcile.ResultApplied || a.Result == reconcile.ResultUnchanged:
		return msg + ", the newest"
	case a.Result == reconcile.ResultFetchErr:
		return msg + "; the source cannot be fetched, a newer commit may wait: " + firstLine(a.Error)
	case a.Commit == s.Live.Commit:
		return msg + ", the newest, but its last pass " + string(a.Result) + ": " + firstLine(a.Error)
	case a.Commit != "":
		return msg + "; not the newest: commit " + a.Commit + " is " + string(a.Result) + ": " + firstLine(a.Error)
	default:
		return msg + "; not the newest: the newest is " + string(a.Result) + ": " + firstLine(a.Error)
	}
}
