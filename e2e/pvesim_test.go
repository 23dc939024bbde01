//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gitedge/gitedge/infra/pvesim"
)

// pveLab is the Proxmox simulator (`gitedge pvesim`) in its own namespace,
// on 127.0.0.1:8007 there, behind an access-logging reverse proxy on
// 192.0.2.201:8006 that the nodes talk to. The simulator records every
// call (pvesim.Sim.Calls) but not who made it, and `gitedge pvesim`
// exposes no call log, so the writes per node are counted here, by source
// address, with pvesim's own rule for what is a write (pvesim.Call.Write).
type pveLab struct {
	ns     string
	addr   string
	token  string // USER@REALM!ID
	secret string
	direct *http.Client // to the simulator itself, bypassing the log: the operator's hand edits

	mu    sync.Mutex
	calls []pveCall
}

type pveCall struct {
	at     time.Time
	from   string
	method string
	path   string // without /api2/json
	status int
}

const pveAddr = "192.0.2.201"

func (l *lab) startPvesim() *pveLab {
	t := l.t
	t.Helper()
	p := &pveLab{addr: pveAddr, token: "gitedge@pve!edge", secret: randHex(16)}
	p.ns = l.addHost("pve", p.addr)
	l.startProc(p.ns, nil, io.Discard, os.Stderr, gitedgeBin(t), "pvesim", "--listen", "127.0.0.1:8007",
		"--token", p.token+"="+p.secret, "--task-duration", "50ms", "--boot-delay", "200ms", "--ha-delay", "100ms",
		"--auth-fail-delay", "0s")
	waitTCP(t, p.ns, "127.0.0.1:8007", 10*time.Second)
	p.direct = nsClient(p.ns, 5*time.Second, true)

	target, _ := url.Parse("http://127.0.0.1:8007")
	rp := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(target); r.Out.Host = r.In.Host },
		Transport: &http.Transport{DialContext: nsDialer(p.ns), MaxIdleConnsPerHost: 16},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	ln, err := nsListen(p.ns, "tcp", p.addr+":8006")
	if err != nil {
		t.Fatalf("pvesim access log: %v", err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w, status: 200}
		rp.ServeHTTP(rec, r)
		from, _, _ := net.SplitHostPort(r.RemoteAddr)
		p.mu.Lock()
		p.calls = append(p.calls, pveCall{at: time.Now(), from: from, method: r.Method,
			path: strings.TrimPrefix(r.URL.Path, "/api2/json"), status: rec.status})
		p.mu.Unlock()
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return p
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// url is the API as the nodes reach it.
func (p *pveLab) url() string { return "http://" + p.addr + ":8006/api2/json" }

// writes counts the write calls per source address made at or after since.
func (p *pveLab) writes(since time.Time) map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for _, c := range p.calls {
		if !c.at.Before(since) && (pvesim.Call{Method: c.method, Path: c.path}).Write() {
			out[c.from]++
		}
	}
	return out
}

func (p *pveLab) writeLog(since time.Time) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var b strings.Builder
	for _, c := range p.calls {
		if !c.at.Before(since) && (pvesim.Call{Method: c.method, Path: c.path}).Write() {
			fmt.Fprintf(&b, "  %s %s %s %s %d\n", c.at.Format("15:04:05.000"), c.from, c.method, c.path, c.status)
		}
	}
	return b.String()
}

// api calls the simulator directly (not through the logging proxy), as
// an operator editing by hand in the Proxmox UI would; form may be nil.
func (p *pveLab) api(method, path string, form url.Values) (json.RawMessage, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, "http://127.0.0.1:8007/api2/json"+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "PVEAPIToken="+p.token+"="+p.secret)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := p.direct.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	var env struct {
		Data json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return nil, fmt.Errorf("%s %s: %v", method, path, err)
	}
	return env.Data, nil
}
