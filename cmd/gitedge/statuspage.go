package main

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gitedge/gitedge/reconcile"
)

// The status page: one server-rendered HTML document with its CSS and
// its small refresh script inline, so it loads nothing from anywhere
// (the Content-Security-Policy says so to the browser too).
//
//go:embed statuspage/page.html statuspage/page.css statuspage/page.js
var statusPageFiles embed.FS

var (
	statusPageTmpl = template.Must(template.New("page.html").Funcs(template.FuncMap{
		"short": shortCommit,
		"ago":   func(now, t time.Time) string { return ago(now, t) },
		"utc":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
		"lower": strings.ToLower,
		"dur":   func(d reconcile.Duration) string { return time.Duration(d).Round(100 * time.Microsecond).String() },
	}).ParseFS(statusPageFiles, "statuspage/page.html"))
	statusPageCSS = mustRead("statuspage/page.css")
	statusPageJS  = mustRead("statuspage/page.js")
	// statusPageCSP allows the inline style and script by their hashes,
	// fetches of the page itself (the refresh) and nothing else.
	statusPageCSP = fmt.Sprintf("default-src 'none'; style-src '%s'; script-src '%s'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
		cspHash(statusPageCSS), cspHash(statusPageJS))
)

func mustRead(name string) string {
	b, err := statusPageFiles.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func cspHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(h[:])
}

// pageData is what the template renders: the node status, grouped for
// reading (a route per host, servers per backend) and judged (health).
type pageData struct {
	nodeStatus
	Now       time.Time
	Health    statusHealth
	Hosts     []pageHost
	ServersUp int
	Pools     []pagePool
	Attempts  []pageAttempt
	Conds     []pageCond
	// BGP is nodeStatus's BGP field when it has one and it is set; the
	// page's BGP section renders only then.
	BGP any
	// CSS and JS are inlined; their hashes are in the CSP header.
	CSS template.CSS
	JS  template.JS
}

// pageHost is one row of the routes table: a host name in one mode.
type pageHost struct {
	Host, Mode, Route, Backend string
	Servers                    []serverStatus
}

// pagePool is one backend with its servers.
type pagePool struct {
	Name     string
	Up       int
	Servers  []serverStatus
	Listener string // set when a listener falls back to it
}

type pageAttempt struct {
	Kind string // "new revision" or "resync"
	reconcile.Attempt
}

type pageCond struct {
	Name string
	reconcile.Condition
}

// renderStatusPage renders the page for s as seen at now.
func renderStatusPage(s nodeStatus, now time.Time) ([]byte, error) {
	return newPageData(s, now).render()
}

// render executes the template (into a buffer: a failure serves an error,
// not half a page).
func (d pageData) render() ([]byte, error) {
	var b bytes.Buffer
	if err := statusPageTmpl.Execute(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// newPageData groups and judges s for the page.
func newPageData(s nodeStatus, now time.Time) pageData {
	d := pageData{nodeStatus: s, Now: now, Health: judge(s), BGP: fieldOf(s, "BGP"),
		CSS: template.CSS(statusPageCSS), JS: template.JS(statusPageJS)}
	pools := map[string]*pagePool{}
	for _, sv := range s.Backends {
		p := pools[sv.Backend]
		if p == nil {
			p = &pagePool{Name: sv.Backend}
			pools[sv.Backend] = p
		}
		p.Servers = append(p.Servers, sv)
		if sv.Up {
			p.Up++
			d.ServersUp++
		}
	}
	for _, l := range s.Listeners {
		if p := pools[l.DefaultBackend]; p != nil {
			p.Listener = l.Name
		}
	}
	for _, p := range pools {
		d.Pools = append(d.Pools, *p)
	}
	sort.Slice(d.Pools, func(i, j int) bool { return d.Pools[i].Name < d.Pools[j].Name })
	servers := func(b string) []serverStatus {
		if p := pools[b]; p != nil {
			return p.Servers
		}
		return nil
	}
	for _, r := range s.Routes {
		for _, h := range r.Hosts {
			if r.HTTPBackend != "" {
				d.Hosts = append(d.Hosts, pageHost{Host: h, Mode: "http", Route: r.Name, Backend: r.HTTPBackend, Servers: servers(r.HTTPBackend)})
			}
			if r.TLSBackend != "" {
				d.Hosts = append(d.Hosts, pageHost{Host: h, Mode: "tls", Route: r.Name, Backend: r.TLSBackend, Servers: servers(r.TLSBackend)})
			}
		}
	}
	slices.SortStableFunc(d.Hosts, func(a, b pageHost) int { return strings.Compare(a.Host+" "+a.Mode, b.Host+" "+b.Mode) })
	if s.LastAttempt != nil {
		d.Attempts = append(d.Attempts, pageAttempt{"new revision", *s.LastAttempt})
	}
	if s.LastResync != nil {
		d.Attempts = append(d.Attempts, pageAttempt{"resync", *s.LastResync})
	}
	for name, c := range s.Conditions {
		d.Conds = append(d.Conds, pageCond{name, c})
	}
	sort.Slice(d.Conds, func(i, j int) bool { return d.Conds[i].Name < d.Conds[j].Name })
	return d
}

// fieldOf returns the struct field name of v when v has one and it is not
// a nil pointer, else nil.
func fieldOf(v any, name string) any {
	f := reflect.ValueOf(v).FieldByName(name)
	if !f.IsValid() || (f.Kind() == reflect.Pointer || f.Kind() == reflect.Interface) && f.IsNil() {
		return nil
	}
	return f.Interface()
}

// statusHealth is the verdict `gitedge status` exits with and the page
// shows at its top.
type statusHealth struct {
	Code    int      // statusOK or statusUnhealthy
	Reasons []string // why it is not OK: "config Stalled: …"
}

// OK reports whether nothing is wrong.
func (h statusHealth) OK() bool { return h.Code == statusOK }

// Exit codes of `gitedge status` (docs/cli.md).
const (
	statusOK        = 0 // every condition Ready (or Progressing), a commit serves
	statusNoAnswer  = 1 // the node cannot be asked, or answers badly
	statusUsage     = 2 // a usage error, as every command
	statusUnhealthy = 3 // a condition is Failed or Stalled, or no commit serves
)

// judge says whether a node's status is healthy: a commit serves and no
// condition is Failed or Stalled.
func judge(s nodeStatus) statusHealth {
	var h statusHealth
	if s.Live == nil {
		h.Reasons = append(h.Reasons, "no commit serves")
	}
	names := make([]string, 0, len(s.Conditions))
	for n := range s.Conditions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := s.Conditions[n]
		if c.Status != reconcile.CondFailed && c.Status != reconcile.CondStalled {
			continue
		}
		if n == "live" && s.Live == nil {
			continue // said above
		}
		r := n + " " + string(c.Status)
		if c.Message != "" {
			r += ": " + firstLine(c.Message)
		}
		h.Reasons = append(h.Reasons, r)
	}
	if len(h.Reasons) > 0 {
		h.Code = statusUnhealthy
	}
	return h
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// ago says how long before now t was, in whole seconds ("3m12s ago").
func ago(now, t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	if d >= 24*time.Hour {
		return fmt.Sprintf("%dd%dh ago", d/(24*time.Hour), d%(24*time.Hour)/time.Hour)
	}
	return d.String() + " ago"
}
