package importer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/importer/haproxy"
	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/reconcile"
)

// The round trip runs Debian's HAProxy with a configuration and gitedge's
// dataplane with the import of the same configuration, side by side on
// loopback, each against its own copy of the backend servers (their
// addresses rewritten to loopback ports), and checks that every host name
// of the configuration, and one it does not know, reaches the same
// backend, the same set of servers and the same PROXY protocol version
// through both, over HTTP (Host) and TLS (SNI). Where the report says
// gitedge routes a host differently, the probe must differ too.

const probeTimeout = 5 * time.Second

func TestRoundTripAgainstHAProxy(t *testing.T) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		t.Fatalf("haproxy is not installed (make deps installs Debian's): %v", err)
	}
	seed := seedDir(t)
	cases := map[string]string{
		"seed":      filepath.Join(seed, "haproxy.cfg"),
		"multi":     filepath.Join("testdata", "roundtrip", "multi.cfg"),
		"nodefault": filepath.Join("testdata", "roundtrip", "nodefault.cfg"),
	}
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		src, err := os.ReadFile(cases[name])
		if err != nil {
			t.Fatal(err)
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			roundTrip(t, bin, string(src))
		})
	}
}

// side is one proxy under test with its own backend servers.
type side struct {
	name    string
	servers map[string]string // "backend/server" -> fake server address
	binds   map[string][]int  // frontend name -> port per bind address
}

func newSide(t *testing.T, name string, cfg *haproxy.Config, ports *portPool) *side {
	s := &side{name: name, servers: map[string]string{}, binds: map[string][]int{}}
	for _, p := range cfg.Proxies {
		if p.IsBackend() {
			for _, srv := range p.Servers {
				label := p.Name + "/" + srv.Name
				s.servers[label] = fakeServer(t, label)
			}
		}
		if p.IsFrontend() {
			for _, b := range p.Binds {
				for range b.Addrs {
					s.binds[p.Name] = append(s.binds[p.Name], ports.take(t))
				}
			}
		}
	}
	return s
}

// rewrite points the configuration's binds and servers at the side's
// loopback ports, and empties the global section (process settings: a
// stats socket, chroot, user, daemon) so HAProxy runs in a test.
func (s *side) rewrite(src string, cfg *haproxy.Config) string {
	lines := strings.Split(src, "\n")
	for _, sec := range cfg.Sections {
		if sec.Kind == "global" {
			for _, d := range sec.Directives {
				lines[d.Line-1] = ""
			}
		}
	}
	for _, p := range cfg.Proxies {
		for _, srv := range p.Servers {
			l := &lines[srv.Line-1]
			*l = strings.Replace(*l, " "+srv.Addr.Raw, " "+s.servers[p.Name+"/"+srv.Name], 1)
		}
		i := 0
		for _, b := range p.Binds {
			var addrs []string
			for range b.Addrs {
				addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(s.binds[p.Name][i]))
				i++
			}
			l := &lines[b.Line-1]
			*l = strings.Replace(*l, b.Args[1], strings.Join(addrs, ","), 1)
		}
	}
	return strings.Join(lines, "\n")
}

func roundTrip(t *testing.T, bin, src string) {
	cfg, err := haproxy.Parse("haproxy.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ports := &portPool{}
	hap, ge := newSide(t, "haproxy", cfg, ports), newSide(t, "gitedge", cfg, ports)
	ports.release()

	// HAProxy with the original.
	hapCfg := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(hapCfg, []byte(hap.rewrite(src, cfg)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", "-f", hapCfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c refuses the configuration: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var hapLog testkit.SyncBuffer
	cmd := exec.CommandContext(ctx, bin, "-db", "-f", hapCfg)
	cmd.Stdout, cmd.Stderr = &hapLog, &hapLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy's output:\n%s", hapLog.String())
		}
	})

	// gitedge with the import of the same configuration.
	geCfg := filepath.Join(dir, "gitedge.cfg")
	if err := os.WriteFile(geCfg, []byte(ge.rewrite(src, cfg)), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Import(Options{HAProxy: geCfg})
	if err != nil {
		t.Fatal(err)
	}
	d, err := reconcile.Load(mapFS(res.Files))
	if err != nil {
		t.Fatal(err)
	}
	p := dataplane.New(dataplane.Options{})
	if err := p.Apply(context.Background(), d.Dataplane); err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(pctx) }()
	t.Cleanup(func() {
		pcancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the dataplane did not stop within 10s")
		}
	})
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("the dataplane is not ready after 10s")
	}
	for _, ports := range hap.binds {
		for _, port := range ports {
			waitListening(t, port, &hapLog)
		}
	}

	// What the report says gitedge routes differently: frontend -> patterns.
	flagged := map[string][]string{}
	for _, it := range res.Report.Sorted() {
		if it.Severity == report.Changed && strings.Contains(it.Why, "shared by every mode") {
			flagged[it.Where] = append(flagged[it.Where], it.What)
		}
	}

	hosts := append(configHosts(cfg), "unknown-host.invalid")
	for _, fe := range cfg.Proxies {
		if !fe.IsFrontend() {
			continue
		}
		tlsMode := fe.EffectiveMode() == "tcp"
		for i := range hap.binds[fe.Name] {
			acceptProxy := bindAt(fe, i).AcceptProxy
			for _, host := range hosts {
				what := fmt.Sprintf("%s bind %d, host %s", fe.Label(), i, host)
				a := probe(t, hap, fe.Name, i, host, tlsMode, acceptProxy)
				b := probe(t, ge, fe.Name, i, host, tlsMode, acceptProxy)
				expectDiff := slices.ContainsFunc(flagged[fe.Label()], func(pat string) bool { return lookup([]string{pat}, host) == 0 })
				diff := a.compare(b, cfg)
				switch {
				case expectDiff && diff == "":
					t.Errorf("%s: the report says gitedge routes it differently, yet both reach %s", what, a)
				case !expectDiff && diff != "":
					t.Errorf("%s: %s\n  haproxy: %s\n  gitedge: %s", what, diff, a, b)
				default:
					t.Logf("%s: %s (haproxy) / %s (gitedge)", what, a, b)
				}
			}
		}
	}
}

func bindAt(p *haproxy.Proxy, i int) *haproxy.Bind {
	for _, b := range p.Binds {
		if i < len(b.Addrs) {
			return b
		}
		i -= len(b.Addrs)
	}
	return nil
}

// configHosts lists every host name the configuration's ACLs name, and a
// name under each suffix they match.
func configHosts(cfg *haproxy.Config) []string {
	var out []string
	add := func(h string) {
		h = strings.ToLower(h)
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	visit := func(a *haproxy.ACL) {
		kind, method := fetchKind(a.Fetch)
		if kind != "host" && kind != "sni" {
			return
		}
		if a.Method != "" {
			method = a.Method
		}
		for _, v := range a.Values {
			switch {
			case strings.HasPrefix(v, "."):
				add("probe" + v)
				add("deep.probe" + v)
			case method == "end" || method == "dom":
				add(v)
				add("probe." + v)
			default:
				add(v)
			}
		}
	}
	for _, p := range cfg.Proxies {
		for _, name := range slices.Sorted(maps.Keys(p.ACLs)) {
			for _, a := range p.ACLs[name] {
				visit(a)
			}
		}
		for _, u := range p.UseBackends {
			if u.Cond == nil {
				continue
			}
			for _, g := range u.Cond.Groups {
				for _, term := range g {
					if term.Anon != nil {
						visit(term.Anon)
					}
				}
			}
		}
	}
	return out
}

// outcome is what a few connections for one host reached.
type outcome struct {
	status   int             // HTTP status, or for TLS 1 routed / 0 closed
	servers  map[string]bool // "backend/server"
	pp, xff  map[string]bool
	attempts int
}

func (o outcome) String() string {
	return fmt.Sprintf("status %d, servers %v, PROXY %v, X-Forwarded-For %v", o.status, slices.Sorted(maps.Keys(o.servers)), slices.Sorted(maps.Keys(o.pp)), slices.Sorted(maps.Keys(o.xff)))
}

// compare says how b differs from a: the backend reached, the servers
// (all of them for roundrobin; for leastconn and source, which pick
// differently, the same backend's eligible servers), the PROXY version.
func (a outcome) compare(b outcome, cfg *haproxy.Config) string {
	if a.status != b.status {
		return fmt.Sprintf("status %d vs %d", a.status, b.status)
	}
	backends := func(o outcome) []string {
		var out []string
		for s := range o.servers {
			be, _, _ := strings.Cut(s, "/")
			if !slices.Contains(out, be) {
				out = append(out, be)
			}
		}
		slices.Sort(out)
		return out
	}
	ba, bb := backends(a), backends(b)
	if !slices.Equal(ba, bb) {
		return fmt.Sprintf("backend %v vs %v", ba, bb)
	}
	if !maps.Equal(a.pp, b.pp) {
		return "PROXY header versions differ"
	}
	if !maps.Equal(a.xff, b.xff) {
		return "X-Forwarded-For differs"
	}
	if len(ba) == 1 {
		be, _ := cfg.Backend(ba[0])
		eligible := map[string]bool{}
		for _, s := range be.Servers {
			if !(s.Backup.Val || s.Disabled.Val || s.Weight.Set && s.Weight.Val == 0) {
				eligible[be.Name+"/"+s.Name] = true
			}
		}
		for s := range b.servers {
			if !eligible[s] {
				return fmt.Sprintf("%s reached, which HAProxy never uses while the others are up", s)
			}
		}
		for s := range a.servers {
			if !eligible[s] {
				return fmt.Sprintf("haproxy reached %s, outside the eligible servers %v (the test's model is wrong)", s, eligible)
			}
		}
		algo := "roundrobin"
		if be.Balance.Set {
			algo = be.Balance.Val[0]
		}
		if algo == "roundrobin" && !maps.Equal(a.servers, b.servers) {
			return "servers reached differ"
		}
	}
	return ""
}

// probe sends a few requests (HTTP) or ClientHellos (TLS) for host to one
// bind of a frontend and records what answered.
func probe(t *testing.T, s *side, fe string, bind int, host string, tlsMode, acceptProxy bool) outcome {
	t.Helper()
	o := outcome{servers: map[string]bool{}, pp: map[string]bool{}, xff: map[string]bool{}, attempts: 6}
	addr := "127.0.0.1:" + strconv.Itoa(s.binds[fe][bind])
	for range o.attempts {
		c, err := net.DialTimeout("tcp", addr, probeTimeout)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		_ = c.SetDeadline(time.Now().Add(probeTimeout))
		if acceptProxy {
			fmt.Fprintf(c, "PROXY TCP4 192.0.2.200 127.0.0.1 40000 %d\r\n", s.binds[fe][bind])
		}
		var answer string
		if tlsMode {
			if _, err := c.Write(clientHello(t, host)); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			data, err := io.ReadAll(c)
			if err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err) {
				t.Fatalf("%s: reading the answer for %s: %v", s.name, host, err)
			}
			o.status = 0
			if line, ok := strings.CutPrefix(string(data), "S "); ok {
				o.status = 1
				answer = strings.TrimSpace(line)
			}
		} else {
			fmt.Fprintf(c, "GET /roundtrip HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("%s: no HTTP answer for %s: %v", s.name, host, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			o.status = resp.StatusCode
			if resp.StatusCode == http.StatusOK {
				answer = string(body)
			}
		}
		c.Close()
		if answer != "" {
			f := strings.Fields(answer)
			o.servers[f[0]] = true
			o.pp[f[1]] = true
			if len(f) > 2 {
				o.xff[f[2]] = true
			}
		}
	}
	return o
}

func isReset(err error) bool {
	return strings.Contains(err.Error(), "connection reset")
}

var helloCache sync.Map

// clientHello returns the first TLS record Go's client sends for host.
func clientHello(t *testing.T, host string) []byte {
	if b, ok := helloCache.Load(host); ok {
		return b.([]byte)
	}
	c1, c2 := net.Pipe()
	go func() {
		_ = tls.Client(c1, &tls.Config{ServerName: host, InsecureSkipVerify: true}).Handshake()
	}()
	defer c1.Close()
	defer c2.Close()
	_ = c2.SetDeadline(time.Now().Add(probeTimeout))
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c2, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	rec := append(hdr, body...)
	helloCache.Store(host, rec)
	return rec
}

// fakeServer listens on loopback and answers as label: to an HTTP request
// for /roundtrip with "label PROXY-version X-Forwarded-For?", to a TLS
// record with "S label PROXY-version", to anything else (health checks)
// with 200 OK.
func fakeServer(t *testing.T, label string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { serveFake(c, label) })
		}
	})
	return ln.Addr().String()
}

var v2sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

func serveFake(c net.Conn, label string) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(probeTimeout))
	br := bufio.NewReader(c)
	pp := "none"
	first, err := br.Peek(1)
	if err != nil {
		return // a TCP check
	}
	switch first[0] {
	case 'P':
		if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "PROXY ") {
			return
		}
		pp = "v1"
	case '\r':
		hdr := make([]byte, 16)
		if _, err := io.ReadFull(br, hdr); err != nil || !bytes.Equal(hdr[:12], v2sig) {
			return
		}
		if _, err := br.Discard(int(hdr[14])<<8 | int(hdr[15])); err != nil {
			return
		}
		pp = "v2"
	}
	first, err = br.Peek(1)
	if err != nil {
		return
	}
	if first[0] == 0x16 {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(br, hdr); err != nil {
			return
		}
		if _, err := br.Discard(int(hdr[3])<<8 | int(hdr[4])); err != nil {
			return
		}
		fmt.Fprintf(c, "S %s %s\n", label, pp)
		return
	}
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	body := "ok"
	if req.URL.Path == "/roundtrip" {
		body = fmt.Sprintf("%s %s xff=%t", label, pp, req.Header.Get("X-Forwarded-For") != "")
	}
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
}

// portPool hands out loopback ports that are free: each stays bound until
// release, so no two takes return the same port. They come from below the
// kernel's ephemeral range: between release and HAProxy's bind, a port
// from that range can become the local port of any connection another
// test makes (CI saw "cannot bind socket (Address already in use)").
type portPool struct {
	held []net.Listener
}

// portsBelow is where the pool's ports start; they end below the
// ephemeral range.
const portsBelow = 10000

func (p *portPool) take(t *testing.T) int {
	hi := ephemeralLow()
	for range 1000 {
		port := portsBelow + rand.IntN(hi-portsBelow)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // taken
		}
		p.held = append(p.held, ln)
		return port
	}
	t.Fatalf("no free loopback port in %d..%d", portsBelow, hi-1)
	return 0
}

// ephemeralLow is the first port of the kernel's ephemeral range (Linux's
// default when it cannot be read).
func ephemeralLow() int {
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > portsBelow+1000 {
				low = n
			}
		}
	}
	return low
}

func (p *portPool) release() {
	for _, ln := range p.held {
		ln.Close()
	}
	p.held = nil
}

// waitListening polls a loopback port until it accepts, for at most 10s.
func waitListening(t *testing.T, port int, log *testkit.SyncBuffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on port %d after 10s: %v\n%s", port, err, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
