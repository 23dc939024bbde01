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
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/gitedge/gitedge/reconcile"
)

// nodeStatus is the body of GET /status: the loop's status plus what the
// subsystems report live.
type nodeStatus struct {
	reconcile.Status
	Version  string `json:"version"`
	VRRP     any    `json:"vrrp,omitempty"`     // per instance: state, priority, master
	Backends any    `json:"backends,omitempty"` // per backend and server: health, active
	Infra    any    `json:"infra,omitempty"`    // last infra plan / drift
}

// adminServer serves /status, /metrics, /healthz and a status page at /.
type adminServer struct {
	status   func() reconcile.Status
	vrrp     func() any // may be nil
	backends func() any // may be nil
	infra    func() any // may be nil
	registry *prometheus.Registry
	logger   *slog.Logger
}

func (a *adminServer) snapshot() nodeStatus {
	s := nodeStatus{Status: a.status(), Version: version}
	if a.vrrp != nil {
		s.VRRP = a.vrrp()
	}
	if a.backends != nil {
		s.Backends = a.backends()
	}
	if a.infra != nil {
		s.Infra = a.infra()
	}
	return s
}

func (a *adminServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(a.snapshot())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		// Alive and serving the last good commit; a failing commit does not
		// make a node unhealthy (it keeps serving, SPEC §4.1).
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		// Ready once a commit serves (the last applied one counts, before
		// any fetch); not before: a load balancer in front should wait.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		s := a.status()
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
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusPage.Execute(w, a.snapshot()); err != nil {
			a.logger.Warn("status page", "error", err)
		}
	})
	return mux
}

// serve runs the admin server on addr until ctx ends.
func (a *adminServer) serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
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
{{with .VRRP}}<h2>VRRP</h2><pre>{{json .}}</pre>{{end}}
{{with .Backends}}<h2>Backends</h2><pre>{{json .}}</pre>{{end}}
{{with .Infra}}<h2>Infra</h2><pre>{{json .}}</pre>{{end}}
<p><a href="/status">/status</a> · <a href="/metrics">/metrics</a></p>
</body></html>
`))
