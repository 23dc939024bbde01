package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/reconcile"
)

// runner runs one benchmark: the backends, then every scenario, round and
// proxy in turn.
type runner struct {
	o        options
	log      io.Writer
	out      string
	stream   string // nginx's stream module
	proxyCPU string // taskset list for the proxy; "" unpinned
	loadCPU  string // for wrk and the backends
	results  *os.File
	all      []result
	procs    []*proc // started and not yet stopped
}

// run measures and returns the markdown table of the results.
func run(ctx context.Context, o options, log io.Writer) (string, error) {
	for _, s := range o.Scenarios {
		if !slices.Contains(allScenarios, s) {
			return "", fmt.Errorf("unknown scenario %q (known: %s)", s, strings.Join(allScenarios, ", "))
		}
	}
	for i, p := range o.Proxies {
		if peers[p] == nil {
			return "", fmt.Errorf("unknown proxy %q (known: haproxy, nginx, caddy, gitedge, gitedge-base)", p)
		}
		if slices.Contains(o.Proxies[:i], p) {
			return "", fmt.Errorf("proxy %q named twice in -proxies (to compare two gitedge builds, use gitedge-base and -gitedge-base)", p)
		}
	}
	r := &runner{o: o, log: log, stream: findStreamModule()}
	if err := r.check(); err != nil {
		return "", err
	}
	if r.o.Out == "" {
		d, err := os.MkdirTemp("", "gitedge-bench-")
		if err != nil {
			return "", err
		}
		// nginx's workers run as nobody: they must reach the 1 MiB file.
		if err := os.Chmod(d, 0o755); err != nil {
			return "", err
		}
		r.o.Out = d
	}
	r.out, _ = filepath.Abs(r.o.Out)
	if err := os.MkdirAll(filepath.Join(r.out, "runs"), 0o755); err != nil {
		return "", err
	}
	f, err := os.Create(filepath.Join(r.out, "results.jsonl"))
	if err != nil {
		return "", err
	}
	r.results = f
	defer f.Close()
	if !o.NoPin && runtime.NumCPU() >= 2 {
		// The proxy gets a core of its own; wrk and the backends share the other.
		r.proxyCPU, r.loadCPU = "1", "0"
	}
	raiseNoFile()
	if r.o.MemConns == 0 {
		r.o.MemConns = memConnsFor()
	}
	defer r.stopAll()
	if err := r.writeMachine(); err != nil {
		return "", err
	}
	if err := r.startBackends(); err != nil {
		return "", err
	}
	err = r.scenarios(ctx)
	r.stopAll()
	rep := table(r.all)
	_ = os.WriteFile(filepath.Join(r.out, "table.md"), []byte(rep), 0o644)
	r.logf("results in %s (results.jsonl, table.md, runs/)", r.out)
	return rep, err
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.log, time.Now().Format("15:04:05 ")+format+"\n", args...)
}

// check finds every tool the run needs, or says how to get it.
func (r *runner) check() error {
	need := []string{"wrk", "nginx"}
	for _, p := range r.o.Proxies {
		need = append(need, peers[p].tool)
	}
	if r.proxyCPU != "" || !r.o.NoPin {
		need = append(need, "taskset")
	}
	var missing []string
	for _, t := range need {
		if t == "" {
			continue
		}
		if _, err := exec.LookPath(t); err != nil && !slices.Contains(missing, t) {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing %s: `make bench-deps` installs Debian's haproxy, nginx, libnginx-mod-stream, caddy and wrk", strings.Join(missing, ", "))
	}
	for name, bin := range map[string]*string{"gitedge": &r.o.Gitedge, "gitedge-base": &r.o.GitedgeBase} {
		if !slices.Contains(r.o.Proxies, name) {
			continue
		}
		if *bin == "" {
			return fmt.Errorf("%s needs -%s BINARY", name, name)
		}
		if _, err := os.Stat(*bin); err != nil {
			return fmt.Errorf("%s binary %s: %w (run `make build`, or pass -%s)", name, *bin, err, name)
		}
		*bin, _ = filepath.Abs(*bin)
	}
	return nil
}

// findStreamModule returns the path of nginx's stream module, "" if absent.
func findStreamModule() string {
	for _, p := range []string{"/usr/lib/nginx/modules/ngx_stream_module.so", "/usr/share/nginx/modules/ngx_stream_module.so"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// raiseNoFile lifts the descriptor limit to its hard limit: the memory
// scenarios hold thousands of connections, in this process and the proxy.
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

// memConnsFor picks the idle connections of the memory scenarios: 9000,
// or fewer when the descriptor limit is lower (a passthrough connection
// costs the proxy two descriptors).
func memConnsFor() int {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) != nil {
		return 1000
	}
	return int(min(9000, (l.Cur-1000)/2))
}

// writeMachine records what the run ran on and with which versions.
func (r *runner) writeMachine() error {
	var b strings.Builder
	fmt.Fprintf(&b, "date: %s\ncpus: %d (%s)\nkernel: %s\n", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), cpuModel(), kernel())
	fmt.Fprintf(&b, "pinning: proxy cpu %q, wrk and backends cpu %q\n", r.proxyCPU, r.loadCPU)
	fmt.Fprintf(&b, "wrk: %s\nbackends: %s\n", firstLine("wrk", "-v"), firstLine("nginx", "-v"))
	for _, p := range r.o.Proxies {
		fmt.Fprintf(&b, "%s: %s\n", p, peers[p].version(r))
	}
	rounds := fmt.Sprintf("rounds=%d", r.o.Rounds)
	if r.o.Slices > 0 {
		rounds = fmt.Sprintf("slices=%dx%s", r.o.Slices, r.o.Slice)
	}
	fmt.Fprintf(&b, "params: %s other-rounds=%d duration=%s warmup=%s conns=%d big-conns=%d reloads=%d/%s mem-conns=%d\n",
		rounds, r.o.OtherRounds, r.o.Duration, r.o.Warmup, r.o.Conns, r.o.BigConns, r.o.Reloads, r.o.ReloadDuration, r.o.MemConns)
	r.logf("%s", strings.TrimSpace(b.String()))
	return os.WriteFile(filepath.Join(r.out, "machine.txt"), []byte(b.String()), 0o644)
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for l := range strings.SplitSeq(string(b), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func kernel() string {
	b, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(b))
}

func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return l
}

// startBackends writes the servers' nginx config (from variant a of the
// routes), a certificate and the 1 MiB file, and starts them.
func (r *runner) startBackends() error {
	dir := filepath.Join(r.out, "backends")
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return err
	}
	cfg, err := r.routes(dir, "a", r.o.Topology)
	if err != nil {
		return err
	}
	if err := writeCert(dir); err != nil {
		return err
	}
	if err := writeTicketKey(dir); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "1m.bin"), []byte(strings.Repeat("x", 1<<20)), 0o644); err != nil {
		return err
	}
	text, err := backendsConfig(cfg, dir, !r.o.PerServerTicketKeys)
	if err != nil {
		return err
	}
	conf := filepath.Join(dir, "backends.conf")
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return err
	}
	if out, err := exec.Command("nginx", "-t", "-q", "-c", conf, "-p", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("backends' nginx config: %v: %s", err, out)
	}
	p, err := r.start("backends", r.loadCPU, nil, dir, "nginx", "-c", conf, "-p", dir)
	if err != nil {
		return err
	}
	for _, be := range cfg.Backends {
		for _, s := range be.Servers {
			if err := waitListen(s.Address.String(), p); err != nil {
				return fmt.Errorf("backend server %s: %w (see %s/error.log)", s.Address, err, dir)
			}
		}
	}
	return nil
}

// routes writes variant v of the routes directory under dir and loads
// it as gitedge does.
func (r *runner) routes(dir, v string, t topology) (*dataplane.Config, error) {
	rd := filepath.Join(dir, "routes")
	if err := writeRoutes(rd, t, v); err != nil {
		return nil, err
	}
	d, err := reconcile.LoadDir(rd)
	if err != nil {
		return nil, fmt.Errorf("the benchmark's routes: %w", err)
	}
	return &d.Dataplane, nil
}

// writeCert writes a self-signed ECDSA certificate for the test hosts.
func writeCert(dir string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a.test"},
		DNSNames:  []string{"a.test", "b.test", "d.test", "www.b.test", "*.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(30 * 24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kd, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "server.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "server.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600)
}

// proc is a process this run started, in a process group of its own so
// that stopping it stops its workers too.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// pinned is argv run on cpu (a taskset list; "" unpinned).
func pinned(cpu string, argv ...string) []string {
	if cpu == "" {
		return argv
	}
	return append([]string{"taskset", "-c", cpu}, argv...)
}

// loadCommand is a command of the harness's own (a reload's config
// check, `caddy reload`) pinned with the load generator, off the proxy's
// core.
func (r *runner) loadCommand(argv ...string) *exec.Cmd {
	argv = pinned(r.loadCPU, argv...)
	return exec.Command(argv[0], argv[1:]...)
}

func (r *runner) start(name, cpu string, env []string, dir string, argv ...string) (*proc, error) {
	argv = pinned(cpu, argv...)
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, logf, logf
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	r.procs = append(r.procs, p)
	return p, nil
}

// stop ends a process group: sig, then KILL after 5 s.
func (r *runner) stop(p *proc, sig syscall.Signal) {
	r.procs = slices.DeleteFunc(r.procs, func(q *proc) bool { return q == p })
	_ = syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	// Workers of the group that outlived their master.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

func (r *runner) stopAll() {
	for len(r.procs) > 0 {
		r.stop(r.procs[len(r.procs)-1], syscall.SIGTERM)
	}
}

// waitListen waits (bounded) until addr accepts connections.
func waitListen(addr string, p *proc) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited", p.name)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("nothing listens on %s after 10s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// result is one measured run.
type result struct {
	Scenario string  `json:"scenario"`
	Proxy    string  `json:"proxy"`
	Round    int     `json:"round"`
	Skipped  string  `json:"skipped,omitempty"`
	Error    string  `json:"error,omitempty"`
	RPS      float64 `json:"rps,omitempty"`
	MiBps    float64 `json:"mibps,omitempty"`
	P50      float64 `json:"p50_ms,omitempty"`
	P99      float64 `json:"p99_ms,omitempty"`
	Requests int64   `json:"requests,omitempty"`
	Non2xx   int64   `json:"non2xx"`
	Errors   int64   `json:"socket_errors"` // wrk's connect+read+write+timeout
	ProxyCPU float64 `json:"proxy_cpu_pct,omitempty"`
	// SliceSecs is the length of a sliced run's slice (-slices); Round
	// is then the slice's cycle.
	SliceSecs float64 `json:"slice_s,omitempty"`
	// LoadCPU is how busy the core of wrk and the backends was: near 100,
	// the load side set the rate, and the proxies' rates differ by the
	// work each causes there more than by their own speed.
	LoadCPU float64 `json:"load_cpu_pct,omitempty"`
	// TLSResumed is the share of tls-close's connections that resumed a
	// TLS session (the servers' log): a full handshake costs the load
	// core several resumed ones.
	TLSResumed float64 `json:"tls_resumed_pct,omitempty"`
	// ProxySleeps is how often the proxy's threads blocked (voluntary
	// context switches), per request: see groupSleeps.
	ProxySleeps float64 `json:"proxy_sleeps_per_request,omitempty"`
	// reload scenarios
	Reloads      int  `json:"reloads,omitempty"`
	ReloadFailed int  `json:"reload_failed,omitempty"`
	FinalOK      bool `json:"final_routes_ok,omitempty"`
	// memory scenarios
	Conns        int     `json:"conns,omitempty"`
	Ready        int     `json:"ready,omitempty"`
	RSSBaseKiB   int64   `json:"rss_base_kib,omitempty"`
	RSSLoadKiB   int64   `json:"rss_loaded_kib,omitempty"`
	BytesPerConn float64 `json:"bytes_per_conn,omitempty"`
}

func (r *runner) record(res result) {
	b := r.store(res)
	switch {
	case res.Skipped != "":
		r.logf("  %s %s: skipped (%s)", res.Scenario, res.Proxy, res.Skipped)
	case res.Error != "":
		r.logf("  %s %s: ERROR %s", res.Scenario, res.Proxy, res.Error)
	default:
		r.logf("  -> %s", strings.TrimSuffix(string(b), "\n"))
	}
}

// store keeps a result and appends it to results.jsonl; it returns the
// JSON line.
func (r *runner) store(res result) []byte {
	r.all = append(r.all, res)
	b, _ := json.Marshal(res)
	r.results.Write(append(b, '\n'))
	return b
}

// scenarios runs every scenario: each round runs every proxy once, in
// turn, so slow drifts of a shared machine spread over all of them, and
// each round starts one proxy further down the list (roundOrder).
func (r *runner) scenarios(ctx context.Context) error {
	for _, sc := range r.o.Scenarios {
		rounds := r.o.Rounds
		if strings.HasPrefix(sc, "reload") || strings.HasPrefix(sc, "mem") {
			rounds = r.o.OtherRounds
		} else if r.o.Slices > 0 {
			if err := r.sliced(ctx, sc); err != nil {
				return err
			}
			continue
		}
		for round := 1; round <= rounds; round++ {
			for _, name := range roundOrder(r.o.Proxies, round) {
				if err := ctx.Err(); err != nil {
					return err
				}
				res := result{Scenario: sc, Proxy: name, Round: round}
				pe := peers[name]
				if strings.Contains(sc, "tls") && !pe.tls {
					if round == 1 {
						res.Skipped = "no TLS passthrough"
						r.record(res)
					}
					continue
				}
				r.logf("%s round %d: %s", sc, round, name)
				if err := r.one(ctx, sc, pe, &res); err != nil {
					res.Error = err.Error()
				}
				r.record(res)
			}
		}
	}
	return nil
}

// roundOrder is the order the proxies run in in a round (from 1): the
// list turned by one place a round (A B C, then B C A, then C A B), so
// that over as many rounds as proxies (or a multiple) each has run first,
// second and so on once. What a run leaves behind weighs on the runs
// after it (a new-connection scenario leaves thousands of sockets in
// TIME_WAIT for a minute, and the kernel's port choice for each connect
// looks past them), and a fixed order put it on the same proxies every
// round. A turned list keeps who runs before whom within a round; the
// sockets of a minute outlast several runs, so the place is what counts.
func roundOrder(proxies []string, round int) []string {
	n := len(proxies)
	if n == 0 {
		return nil
	}
	k := ((round-1)%n + n) % n
	return append(slices.Clone(proxies[k:]), proxies[:k]...)
}

// one runs a scenario against a proxy started for it alone.
func (r *runner) one(ctx context.Context, sc string, pe *peer, res *result) error {
	dir := filepath.Join(r.out, "runs", fmt.Sprintf("%s-%s-r%d", sc, pe.name, res.Round))
	t := r.o.Topology
	switch sc {
	case "mem-tls":
		t.ServerMaxConn = r.o.MemConns + 1000 // every held connection is a server connection too
	case "mem-tls-silent":
		t.InspectTimeout = "60s" // the silent connections outlive the measurement
	}
	p, err := r.launch(pe, dir, t)
	if err != nil {
		return err
	}
	defer r.stop(p, syscall.SIGTERM)
	switch sc {
	case "mem", "mem-tls", "mem-tls-silent":
		return r.mem(ctx, sc, p, t, res)
	case "reload", "reload-close", "reload-tls":
		return r.reload(ctx, sc, pe, p, dir, t, res)
	}
	args := r.wrkArgs(sc, t, r.o.Conns)
	if r.o.Warmup > 0 {
		if _, err := r.wrk(ctx, dir, "warmup", r.o.Warmup, t, args); err != nil {
			return err
		}
	}
	return r.measure(ctx, sc, p, dir, "wrk", r.o.Duration, t, args, res)
}

// launch writes the configs of topology t in dir, starts the proxy on
// them and checks that it routes every host right.
func (r *runner) launch(pe *peer, dir string, t topology) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	cfg, err := r.routes(dir, "a", t)
	if err != nil {
		return nil, err
	}
	if err := writeConfigs(cfg, dir, r.stream, t); err != nil {
		return nil, err
	}
	p, err := pe.start(r, dir)
	if err != nil {
		return nil, err
	}
	err = waitListen(t.httpAddr(), p)
	if err == nil && pe.tls {
		err = waitListen(t.tlsAddr(), p)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w (see %s)", pe.name, err, dir)
	} else {
		err = r.routingCheck(pe, t)
	}
	if err != nil {
		r.stop(p, syscall.SIGTERM)
		return nil, err
	}
	return p, nil
}

// measure runs one measured wrk run of d against the proxy p and fills
// res with wrk's figures and the proxy's and the load core's CPU.
func (r *runner) measure(ctx context.Context, sc string, p *proc, dir, name string, d time.Duration, t topology, args []string, res *result) error {
	var mark int64
	if sc == "tls-close" {
		mark = r.resumedMark()
	}
	before, sleeps := groupTicks(p), groupSleeps(p)
	loadBusy, loadTotal, loadOK := cpuTicks(r.loadCPU)
	start := time.Now()
	w, err := r.wrk(ctx, dir, name, d, t, args)
	if err != nil {
		return err
	}
	res.ProxyCPU = 100 * float64(groupTicks(p)-before) / clockTicks / time.Since(start).Seconds()
	sleeps = groupSleeps(p) - sleeps
	if busy, total, ok := cpuTicks(r.loadCPU); ok && loadOK && total > loadTotal {
		res.LoadCPU = 100 * float64(busy-loadBusy) / float64(total-loadTotal)
	}
	if sc == "tls-close" {
		res.TLSResumed, _ = r.resumedSince(mark)
	}
	w.into(res)
	if res.Requests > 0 {
		res.ProxySleeps = float64(sleeps) / float64(res.Requests)
	}
	return nil
}

// routingCheck asks the proxy once per host before measuring: a proxy
// that routes wrongly must not be measured as fast.
func (r *runner) routingCheck(pe *peer, t topology) error {
	cl := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	defer cl.CloseIdleConnections()
	for host, want := range map[string][]string{"a.test": {"a1", "a2"}, "b.test": {"b1", "b2"}, "unknown.test": {"def1"}} {
		req, _ := http.NewRequest("GET", "http://"+t.httpAddr()+"/", nil)
		req.Host = host
		resp, err := cl.Do(req)
		if err != nil {
			return fmt.Errorf("%s does not answer http for %s: %w", pe.name, host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if got := strings.TrimSpace(string(body)); resp.StatusCode != 200 || !slices.Contains(want, got) {
			return fmt.Errorf("%s routes %s to %q (status %d), want one of %v", pe.name, host, got, resp.StatusCode, want)
		}
	}
	if !pe.tls {
		return nil
	}
	for sni, want := range map[string][]string{"a.test": {"ta1", "ta2"}, "unknown.test": {"tdef1"}} {
		got, err := tlsGet(t.tlsAddr(), sni)
		if err != nil {
			return fmt.Errorf("%s does not pass TLS through for %s: %w", pe.name, sni, err)
		}
		if !slices.Contains(want, got) {
			return fmt.Errorf("%s passes SNI %s to %q, want one of %v", pe.name, sni, got, want)
		}
	}
	return nil
}
