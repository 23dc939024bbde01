package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// connectLua makes wrk connect to the proxy whatever the URL's host,
// which stays the TLS server name and the Host field: no /etc/hosts.
// wrk resolves the URL's host through wrk.resolve before any thread
// starts, so that is the function to replace.
const connectLua = `-- written by gitedge's bench: connect to BENCH_CONNECT (ip:port)
local ip, port = string.match(os.getenv("BENCH_CONNECT"), "^(.+):(%d+)$")
wrk.resolve = function(host, service)
  wrk.addrs = wrk.lookup(ip, port)
end
`

// wrkArgs are wrk's arguments for a scenario (without -d).
func (r *runner) wrkArgs(sc string, t topology, conns int) []string {
	if sc == "big" {
		conns = r.o.BigConns
	}
	args := []string{"-t1", "-c", strconv.Itoa(conns), "--latency"}
	if r.o.WrkTimeout > 0 {
		args = append(args, "--timeout", strconv.Itoa(int(r.o.WrkTimeout/time.Second))+"s")
	}
	switch sc {
	case "ka", "reload":
		args = append(args, "-H", "Host: a.test", "http://"+t.httpAddr()+"/")
	case "close", "reload-close":
		args = append(args, "-H", "Host: a.test", "-H", "Connection: close", "http://"+t.httpAddr()+"/")
	case "tls-ka":
		args = append(args, "-s", r.luaScript(), fmt.Sprintf("https://a.test:%d/", t.TLSPort))
	case "tls-close":
		args = append(args, "-H", "Connection: close", "-s", r.luaScript(), fmt.Sprintf("https://a.test:%d/", t.TLSPort))
	case "big":
		args = append(args, "-H", "Host: a.test", "http://"+t.httpAddr()+"/1m")
	}
	return args
}

func (r *runner) luaScript() string {
	p := filepath.Join(r.out, "connect.lua")
	if _, err := os.Stat(p); err != nil {
		_ = os.WriteFile(p, []byte(connectLua), 0o644)
	}
	return p
}

// wrkResult is what wrk printed.
type wrkResult struct {
	rps, mibps, p50, p99 float64
	requests, non2xx     int64
	errors               int64
}

func (w wrkResult) into(res *result) {
	res.RPS, res.MiBps, res.P50, res.P99 = w.rps, w.mibps, w.p50, w.p99
	res.Requests, res.Non2xx, res.Errors = w.requests, w.non2xx, w.errors
}

// wrk runs wrk pinned with the backends, bounded in time, and parses it;
// a TLS scenario's connections go to t's tls listener.
func (r *runner) wrk(ctx context.Context, dir, name string, d time.Duration, t topology, args []string) (wrkResult, error) {
	secs := max(1, int(d.Round(time.Second)/time.Second))
	argv := pinned(r.loadCPU, append([]string{"wrk", "-d", strconv.Itoa(secs) + "s"}, args...)...)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+15)*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "BENCH_CONNECT="+t.tlsAddr())
	out, err := cmd.CombinedOutput()
	_ = os.WriteFile(filepath.Join(dir, name+".txt"), out, 0o644)
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return parseWrk(string(out))
}

// parseWrk reads wrk's summary (with --latency).
func parseWrk(out string) (wrkResult, error) {
	var w wrkResult
	found := false
	for l := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) == 2 && f[0] == "50%":
			w.p50 = millis(f[1])
		case len(f) == 2 && f[0] == "99%":
			w.p99 = millis(f[1])
		case len(f) >= 2 && f[0] == "Requests/sec:":
			w.rps, _ = strconv.ParseFloat(f[1], 64)
			found = true
		case len(f) >= 2 && f[0] == "Transfer/sec:":
			w.mibps = mebibytes(f[1])
		case len(f) >= 3 && f[1] == "requests" && f[2] == "in":
			w.requests, _ = strconv.ParseInt(f[0], 10, 64)
		case strings.HasPrefix(l, "  Socket errors:"):
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, _ := strconv.ParseInt(strings.TrimSuffix(f[i+1], ","), 10, 64)
				w.errors += n
			}
		case strings.HasPrefix(l, "  Non-2xx or 3xx responses:"):
			w.non2xx, _ = strconv.ParseInt(f[len(f)-1], 10, 64)
		}
	}
	if !found {
		return w, fmt.Errorf("no Requests/sec in wrk's output: %q", out)
	}
	return w, nil
}

func millis(v string) float64 {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"us", 1e-3}, {"ms", 1}, {"m", 60e3}, {"s", 1e3}} {
		if s, ok := strings.CutSuffix(v, u.suffix); ok {
			x, _ := strconv.ParseFloat(s, 64)
			return x * u.scale
		}
	}
	x, _ := strconv.ParseFloat(v, 64)
	return x
}

func mebibytes(v string) float64 {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"GB", 1024}, {"MB", 1}, {"KB", 1.0 / 1024}, {"B", 1.0 / (1 << 20)}} {
		if s, ok := strings.CutSuffix(v, u.suffix); ok {
			x, _ := strconv.ParseFloat(s, 64)
			return x * u.scale
		}
	}
	return 0
}

// reload runs wrk for ReloadDuration while the proxy reloads Reloads
// times, alternating routes b (adds d.test) and a. After each reload the
// harness checks, within reloadWithin, that the change took: with routes
// b d.test reaches route a's servers, with routes a the default backend
// again (over HTTP, or through the SNI passthrough for reload-tls); a
// reload whose change is not seen in time counts as failed. At the end
// the final routes (a) must be in force.
func (r *runner) reload(ctx context.Context, sc string, pe *peer, p *proc, dir string, t topology, res *result) error {
	wsc := map[string]string{"reload": "ka", "reload-close": "close", "reload-tls": "tls-close"}[sc]
	args := r.wrkArgs(wsc, t, r.o.Conns)
	tlsRoute := sc == "reload-tls"
	get := func() (string, error) { return httpGet(t.httpAddr(), "d.test") }
	if tlsRoute {
		get = func() (string, error) { return tlsGet(t.tlsAddr(), "d.test") }
	}
	var w wrkResult
	var werr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		w, werr = r.wrk(ctx, dir, "wrk", r.o.ReloadDuration, t, args)
	}()
	lead := min(time.Second, r.o.ReloadDuration/5) // load first, and load after the last reload
	interval := (r.o.ReloadDuration - 2*lead) / time.Duration(max(r.o.Reloads, 1))
	time.Sleep(lead)
	apply := func(i int, v string) error {
		res.Reloads++
		if err := r.regenerate(dir, v, t); err != nil {
			return err
		}
		if err := pe.reload(r, dir, p); err != nil {
			res.ReloadFailed++
			r.logf("  reload %d failed: %v", i, err)
			return nil
		}
		if err := waitRouted(get, reloadWant(v, tlsRoute), reloadWithin, reloadPoll); err != nil {
			res.ReloadFailed++
			r.logf("  reload %d (routes %s) not in force: %v", i, v, err)
		}
		return nil
	}
	for i := range r.o.Reloads {
		start := time.Now()
		if err := apply(i+1, reloadVariant(i)); err != nil {
			return err
		}
		time.Sleep(interval - time.Since(start))
	}
	if r.o.Reloads%2 == 1 { // end on routes a
		if err := apply(r.o.Reloads+1, "a"); err != nil {
			return err
		}
	}
	<-done
	if werr != nil {
		return werr
	}
	w.into(res)
	// The final routes must still be in force once the load is over.
	res.FinalOK = waitRouted(get, reloadWant("a", tlsRoute), reloadWithin, reloadPoll) == nil
	return nil
}

// reloadVariant is the routes of the i-th reload (from 0): b, a, b, …
func reloadVariant(i int) string {
	if i%2 == 1 {
		return "a"
	}
	return "b"
}

// reloadWant is the servers d.test reaches under routes v: route a's
// with v = b (which adds d.test to route a), the default backend's with
// v = a; tls: through the SNI passthrough.
func reloadWant(v string, tls bool) []string {
	switch {
	case v == "b" && tls:
		return []string{"ta1", "ta2"}
	case v == "b":
		return []string{"a1", "a2"}
	case tls:
		return []string{"tdef1"}
	}
	return []string{"def1"}
}

// waitRouted asks get every poll until it answers one of want, for at
// most within: how a reload's change is seen (reloads are asynchronous:
// a new worker, a re-read). One request at a time, from the harness, a
// few per reload.
func waitRouted(get func() (string, error), want []string, within, poll time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		got, err := get()
		if err == nil && slices.Contains(want, got) {
			return nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("after %s: %w", within, err)
			}
			return fmt.Errorf("after %s d.test reaches %q, want one of %v", within, got, want)
		}
		time.Sleep(poll)
	}
}

// regenerate rewrites the routes directory as variant v and every peer's
// config from it.
func (r *runner) regenerate(dir, v string, t topology) error {
	cfg, err := r.routes(dir, v, t)
	if err != nil {
		return err
	}
	return writeConfigs(cfg, dir, r.stream, t)
}

// mem measures the proxy's resident memory with MemConns idle client
// connections, each after one request (mem: HTTP keep-alive; mem-tls:
// after a TLS handshake, through the passthrough), or that never sent a
// byte (mem-tls-silent).
func (r *runner) mem(ctx context.Context, sc string, p *proc, t topology, res *result) error {
	time.Sleep(r.o.MemHold)
	res.RSSBaseKiB = groupRSS(p)
	res.Conns = r.o.MemConns
	addr := t.httpAddr()
	if sc != "mem" {
		addr = t.tlsAddr()
	}
	conns, failed, err := holdConns(ctx, addr, sc, r.o.MemConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	res.Ready = len(conns)
	if err != nil && len(conns) == 0 {
		return err
	}
	if failed > 0 {
		r.logf("  %d connections failed: %v", failed, err)
	}
	time.Sleep(r.o.MemHold)
	res.RSSLoadKiB = groupRSS(p)
	if res.Ready > 0 {
		res.BytesPerConn = float64(res.RSSLoadKiB-res.RSSBaseKiB) * 1024 / float64(res.Ready)
	}
	return nil
}

// holdConns opens n connections to addr, 64 at a time, as openIdle does
// for scenario sc, and returns them open and idle.
func holdConns(ctx context.Context, addr, sc string, n int) ([]net.Conn, int, error) {
	var mu sync.Mutex
	var conns []net.Conn
	var failed atomic.Int64
	var firstErr error
	next := make(chan struct{})
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for range next {
				c, err := openIdle(addr, sc)
				mu.Lock()
				if err != nil {
					failed.Add(1)
					if firstErr == nil {
						firstErr = err
					}
				} else {
					conns = append(conns, c)
				}
				mu.Unlock()
			}
		})
	}
	for range n {
		if ctx.Err() != nil {
			break
		}
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	return conns, int(failed.Load()), firstErr
}

// openIdle opens one connection of a memory scenario: after a request
// (mem: HTTP; mem-tls: through the passthrough, after a TLS handshake),
// or a silent one that never sends its ClientHello (mem-tls-silent).
func openIdle(addr, sc string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if sc == "mem-tls" {
		c, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: "a.test", InsecureSkipVerify: true})
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil || sc == "mem-tls-silent" {
		return c, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err == nil {
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err == nil && resp.StatusCode != 200 {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// httpGet asks the proxy for / with a Host and returns the body.
func httpGet(addr, host string) (string, error) {
	cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	resp, err := cl.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// tlsGet asks through the passthrough with a server name and returns the body.
func tlsGet(addr, sni string) (string, error) {
	cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{ServerName: sni, InsecureSkipVerify: true},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		},
	}}
	resp, err := cl.Get("https://" + sni + "/")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}
