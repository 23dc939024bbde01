package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
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
		// any fetch); not before: a load balancer in front should wait.
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
		fmt.Fprintf(w, "ready: serving commit %s\n", s.Live.Commit)
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry}))
	if a.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, a.status()); err != nil {
			a.logger.Warn("status page", "error", err)
		}
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

// listenAndServe binds addr and serves on it until ctx ends.
func (a *adminServer) listenAndServe(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return a.serve(ctx, ln)
}

var statusPage = template.Must(template.New("status").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"json": func(v any) (string, error) {
		b, err := json.MarshalIndent(v, "", "  ")
		return string(b), err
	},
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>gitedge {{.Node}}</title>
<meta http-equiv="refresh" content="5">
<style>body{font:14px system-ui,sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}.Ready{color:#070}.Failed,.Stalled{color:#b00}
pre{background:#f4f4f4;padding:1em;overflow:auto}</style></head><body>
<h1>gitedge — node {{.Node}}</h1>
<p>version {{.Version}}</p>
<h2>Live commit</h2>
{{with .Live}}<table><tr><th>commit</th><td><code>{{.Commit}}</code></td></tr>
<tr><th>signer</th><td>{{or .Signer "not verified"}}</td></tr><tr><th>author</th><td>{{.Author}}</td></tr>
<tr><th>message</th><td>{{.Message}}</td></tr><tr><th>applied</th><td>{{ago .AppliedAt}}{{if .Restored}} (the last applied commit, restored at start before any fetch){{end}}</td></tr></table>
{{else}}<p>No commit applied yet.{{with index .Conditions "live"}} {{.Message}}{{end}}</p>{{end}}
<h2>Last attempt</h2>
{{with .LastAttempt}}<table><tr><th>commit</th><td><code>{{.Commit}}</code></td></tr><tr><th>trigger</th><td>{{.Trigger}}</td></tr>
<tr><th>result</th><td>{{.Result}}</td></tr><tr><th>started</th><td>{{ago .Started}} ({{.Duration}})</td></tr>
<tr><th>plan</th><td>{{.Plan}}</td></tr>{{if .Error}}<tr><th>error</th><td><pre>{{.Error}}</pre></td></tr>{{end}}</table>
{{else}}<p>No attempt yet.</p>{{end}}
<h2>Conditions</h2>
<table><tr><th>step</th><th>status</th><th>since</th><th>message</th></tr>
{{range $k, $c := .Conditions}}<tr><td>{{$k}}</td><td class="{{$c.Status}}">{{$c.Status}}</td><td>{{ago $c.Since}}</td><td>{{$c.Message}}</td></tr>{{end}}</table>
{{with .VRRP}}<h2>VRRP</h2><table><tr><th>instance</th><th>state</th><th>priority</th><th>master</th><th>VIPs</th></tr>
{{range .}}<tr><td>{{.Name}}</td><td>{{.State}}</td><td>{{.Priority}}</td><td>{{if .Master.IsValid}}{{.Master}}{{end}}</td><td>{{range .VIPs}}{{.}} {{end}}</td></tr>{{end}}</table>{{end}}
{{with .Backends}}<h2>Backends</h2><table><tr><th>backend</th><th>server</th><th>address</th><th>health</th><th>active</th><th>idle</th></tr>
{{range .}}<tr><td>{{.Backend}}</td><td>{{.Server}}</td><td>{{.Address}}</td><td class="{{if .Up}}Ready{{else}}Failed{{end}}">{{if .Up}}up{{else}}down{{end}}</td><td>{{.Active}}</td><td>{{.Idle}}</td></tr>{{end}}</table>{{end}}
{{with .Infra}}<h2>Infra</h2><pre>{{json .}}</pre>{{end}}
{{with .Forge}}<h2>Forge</h2><pre>{{json .}}</pre>{{end}}
{{with .Notify}}<h2>Notifications</h2><pre>{{json .}}</pre>{{end}}
<p><a href="/status">/status</a> · <a href="/metrics">/metrics</a></p>
</body></html>
`))
