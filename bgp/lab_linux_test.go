package bgp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"

	"github.com/vishvananda/netns"

	"github.com/gitedge/gitedge/internal/frrlab"
)

// The lab: FRR (zebra, bgpd) in a router namespace with
// a bridge (192.0.2.1/24, 2001:db8::1/64) towards the speaker nodes
// n1..nN (192.0.2.11.., each in its own namespace, a helper process of
// the test binary) and a veth towards a client namespace (198.51.100.2/28
// behind 198.51.100.1, 2001:db8:1::2/64 behind 2001:db8:1::1). The nodes
// announce VIPs from 198.51.100.0/24 outside the client's /28 and from
// 2001:db8:100::/48. ECMP is on (maximum-paths 8) with L4 hashing
// (fib_multipath_hash_policy=1).

const (
	routerASN = 65000
	edgeASN   = 65010
	servePort = 8080
)

var (
	routerAddr  = netip.MustParseAddr("192.0.2.1")
	routerAddr6 = netip.MustParseAddr("2001:db8::1")
	vip1        = netip.MustParsePrefix("198.51.100.100/32")
	vip2        = netip.MustParsePrefix("198.51.100.101/32")
	vip6        = netip.MustParsePrefix("2001:db8:100::10/128")
)

var labSeq atomic.Int32

type lab struct {
	t      *testing.T
	dir    string
	frr    *frrlab.Router
	prefix string
	router string // namespace names
	client string
	made   []string
	procs  []func() // kill and wait, in the teardown
	nodes  []*labNode
	lifeW  *os.File // the helpers' lifeline: closing it ends them
	lifeR  *os.File
	fib    *frrlab.FIB
	pool   *nsPool
	opts   labOptions
}

type labOptions struct {
	nodes int
	v6    bool // IPv6 sessions beside the IPv4 ones
	// password is the router's TCP MD5 key for the nodes' sessions.
	password string
}

type labNode struct {
	name        string
	ns          string
	addr, addr6 netip.Addr
	ctl         string
	pid         int
	proc        *os.Process
	done        <-chan struct{}
	gen         int
	client      *http.Client
	logPath     string
}

// requireLab skips without root (or with -short) and fails when root
// lacks a tool the lab needs: CI runs as root and must not pass by
// skipping.
func requireLab(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("network namespace lab: not with -short")
	}
	if os.Geteuid() != 0 {
		testkit.Missing(t, "needs root for network namespaces (make test runs as root)")
	}
	frrlab.Require(t)
}

// labName is a lab namespace's name: gb<pid>-<seq>-<role>.
var labName = regexp.MustCompile(`^gb(\d+)-\d+-(r|c|n\d+)$`)

// sweepStaleLabs removes the labs of test processes that died without
// their cleanup (a killed or timed-out go test): the processes in their
// namespaces, then the namespaces. FRR's daemons drop their parent-death
// signal when they change user, so nothing else ends them.
func sweepStaleLabs() {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(out), "\n") {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		m := labName.FindStringSubmatch(ns)
		if m == nil {
			continue
		}
		if pid, _ := strconv.Atoi(m[1]); pid == os.Getpid() || syscall.Kill(pid, 0) == nil {
			continue // a live test's
		}
		pids, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, f := range strings.Fields(string(pids)) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
	// The lab's directories and frrlab's: gitedge-bgp-lab-PID-*, gitedge-frr-PID-*.
	for pattern, at := range map[string]int{"gitedge-bgp-lab-*": 3, "gitedge-frr-*": 2} {
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), pattern))
		for _, d := range dirs {
			f := strings.Split(filepath.Base(d), "-")
			if len(f) < at+2 {
				continue
			}
			if pid, err := strconv.Atoi(f[at]); err == nil && pid != os.Getpid() && syscall.Kill(pid, 0) != nil {
				os.RemoveAll(d)
			}
		}
	}
}

func newLab(t *testing.T, o labOptions) *lab {
	requireLab(t)
	sweepStaleLabs()
	l := &lab{t: t, opts: o, prefix: fmt.Sprintf("gb%d-%d-", os.Getpid(), labSeq.Add(1))}
	l.router, l.client = l.prefix+"r", l.prefix+"c"
	// Not t.TempDir: its parent is private to root, and FRR runs as frr.
	dir, err := os.MkdirTemp("", fmt.Sprintf("gitedge-bgp-lab-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	l.dir = dir
	// One teardown, whatever happens: the logs of a failure while all is
	// still there, then every process, then the namespaces.
	t.Cleanup(func() {
		if l.lifeW != nil {
			l.lifeW.Close()
			l.lifeR.Close()
		}
		for _, stop := range slices.Backward(l.procs) {
			stop()
		}
		for _, ns := range slices.Backward(l.made) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
		os.RemoveAll(dir)
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	l.addNS(l.router)
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1"} {
		l.run("ip", "netns", "exec", l.router, "sysctl", "-q", "-w", s)
	}
	l.run("ip", "-n", l.router, "link", "add", "br0", "type", "bridge")
	l.run("ip", "-n", l.router, "addr", "add", routerAddr.String()+"/24", "dev", "br0")
	l.run("ip", "-n", l.router, "addr", "add", routerAddr6.String()+"/64", "dev", "br0", "nodad")
	l.run("ip", "-n", l.router, "link", "set", "br0", "up")

	l.addNS(l.client)
	l.run("ip", "link", "add", "eth0", "netns", l.client, "type", "veth", "peer", "name", "eth1", "netns", l.router)
	l.run("ip", "-n", l.client, "addr", "add", "198.51.100.2/28", "dev", "eth0")
	l.run("ip", "-n", l.router, "addr", "add", "198.51.100.1/28", "dev", "eth1")
	l.run("ip", "-n", l.client, "link", "set", "eth0", "up")
	l.run("ip", "-n", l.router, "link", "set", "eth1", "up")
	l.run("ip", "-n", l.client, "route", "add", "default", "via", "198.51.100.1")
	l.run("ip", "-n", l.client, "addr", "add", "2001:db8:1::2/64", "dev", "eth0", "nodad")
	l.run("ip", "-n", l.router, "addr", "add", "2001:db8:1::1/64", "dev", "eth1", "nodad")
	l.run("ip", "-n", l.client, "-6", "route", "add", "default", "via", "2001:db8:1::1")

	for i := 1; i <= o.nodes; i++ {
		n := &labNode{name: fmt.Sprintf("n%d", i), ns: fmt.Sprintf("%sn%d", l.prefix, i),
			addr:  netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}),
			addr6: netip.MustParseAddr(fmt.Sprintf("2001:db8::%d", 10+i))}
		l.addNS(n.ns)
		port := fmt.Sprintf("p%d", i)
		l.run("ip", "link", "add", "eth0", "netns", n.ns, "type", "veth", "peer", "name", port, "netns", l.router)
		l.run("ip", "-n", l.router, "link", "set", port, "master", "br0", "up")
		l.run("ip", "-n", n.ns, "addr", "add", n.addr.String()+"/24", "dev", "eth0")
		l.run("ip", "-n", n.ns, "addr", "add", n.addr6.String()+"/64", "dev", "eth0", "nodad")
		l.run("ip", "-n", n.ns, "link", "set", "eth0", "up")
		l.run("ip", "-n", n.ns, "route", "add", "default", "via", routerAddr.String())
		l.run("ip", "-n", n.ns, "-6", "route", "add", "default", "via", routerAddr6.String())
		l.nodes = append(l.nodes, n)
	}
	l.lifeR, l.lifeW, err = os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cfg := frrlab.Config{NS: l.router, RouterASN: routerASN, EdgeASN: edgeASN, RouterID: routerAddr, Password: o.password}
	for _, n := range l.nodes {
		cfg.Nodes = append(cfg.Nodes, n.addr)
		if o.v6 {
			cfg.Nodes6 = append(cfg.Nodes6, n.addr6)
		}
	}
	l.frr = frrlab.Start(t, cfg)
	// Registered after FRR, so it runs while FRR still answers.
	t.Cleanup(func() {
		if t.Failed() {
			l.dumpLogs()
		}
	})
	l.fib = frrlab.WatchFIB(t, l.router, vip1, vip2, vip6)
	l.pool = newNSPool(t, l.client, 24)
	for _, n := range l.nodes {
		l.startSpeaker(n)
	}
	return l
}

func (l *lab) run(name string, args ...string) string {
	l.t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (l *lab) addNS(ns string) {
	l.run("ip", "netns", "add", ns)
	l.made = append(l.made, ns)
	l.run("ip", "-n", ns, "link", "set", "lo", "up")
	l.run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
}

// start runs a command in a namespace; it is killed when the test ends.
func (l *lab) start(ns, logPath string, env []string, extra []*os.File, name string, args ...string) (*os.Process, <-chan struct{}) {
	l.t.Helper()
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		l.t.Fatalf("starting %s in %s: %v", name, ns, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		logf.Close()
		close(done)
	}()
	l.procs = append(l.procs, func() {
		cmd.Process.Kill()
		<-done
	})
	return cmd.Process, done
}

func (l *lab) vtysh(cmd string) string { l.t.Helper(); return l.frr.Vtysh(l.t, cmd) }

func (l *lab) neighbors() map[string]frrlab.Neighbor { l.t.Helper(); return l.frr.Neighbors(l.t) }

// waitEstablished waits until the router has every given neighbour up.
func (l *lab) waitEstablished(within time.Duration, addrs ...netip.Addr) {
	l.t.Helper()
	l.frr.WaitEstablished(l.t, within, addrs...)
}

// startSpeaker starts a node's helper process.
func (l *lab) startSpeaker(n *labNode) {
	l.t.Helper()
	n.gen++
	n.ctl = filepath.Join(l.dir, fmt.Sprintf("%s-%d.sock", n.name, n.gen))
	n.logPath = filepath.Join(l.dir, n.name+".log")
	proc, done := l.start(n.ns, n.logPath,
		[]string{envHelper + "=speaker", envNode + "=" + n.name, envCtl + "=" + n.ctl, envPort + "=" + strconv.Itoa(servePort)},
		[]*os.File{l.lifeR}, os.Args[0], "-test.run=^$")
	n.proc, n.pid, n.done = proc, proc.Pid, done
	n.client = unixClient(n.ctl)
	testkit.Poll(l.t, 20*time.Second, func() string {
		select {
		case <-done:
			return "the helper exited"
		default:
		}
		if _, err := os.Stat(n.ctl); err != nil {
			return "control socket: " + err.Error()
		}
		return ""
	})
}

func unixClient(path string) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		}}}
}

// call posts to a node's helper and decodes the answer into out (if set).
func (l *lab) call(n *labNode, method, path string, body any, out any) {
	l.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			l.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://node"+path, rd)
	if err != nil {
		l.t.Fatal(err)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		l.t.Fatalf("%s %s %s: %v", n.name, method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		l.t.Fatalf("%s %s %s: %s: %s", n.name, method, path, resp.Status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			l.t.Fatalf("%s %s %s: %v: %s", n.name, method, path, err, b)
		}
	}
}

// config is a node's Config announcing the given prefixes (track proxy).
func (l *lab) config(n *labNode, holdTime time.Duration, prefixes ...netip.Prefix) Config {
	c := Config{ASN: edgeASN, Node: n.name, NodeAddress: n.addr,
		Peers: []Peer{{Address: routerAddr, ASN: routerASN, HoldTime: holdTime}}}
	if l.opts.v6 {
		c.Peers = append(c.Peers, Peer{Address: routerAddr6, ASN: routerASN, HoldTime: holdTime})
	}
	for _, p := range prefixes {
		c.Announce = append(c.Announce, Announcement{Prefix: p, TrackProxy: true, Communities: []Community{edgeASN<<16 | 100}})
	}
	return c
}

func (l *lab) apply(n *labNode, c Config) { l.t.Helper(); l.call(n, "POST", "/apply", c, nil) }
func (l *lab) serve(n *labNode)           { l.t.Helper(); l.call(n, "POST", "/serve", nil, nil) }
func (l *lab) healthy(n *labNode, ok bool) {
	l.t.Helper()
	v := "0"
	if ok {
		v = "1"
	}
	l.call(n, "POST", "/healthy?ok="+v, nil, nil)
}

func (l *lab) status(n *labNode) Status {
	l.t.Helper()
	var st Status
	l.call(n, "GET", "/status", nil, &st)
	return st
}

// up configures and starts serving on every node, and waits until the
// router's FIB has the prefixes through every node.
func (l *lab) up(holdTime time.Duration, prefixes ...netip.Prefix) {
	l.t.Helper()
	for _, n := range l.nodes {
		l.apply(n, l.config(n, holdTime, prefixes...))
		l.serve(n)
	}
	var all, all6 []netip.Addr
	for _, n := range l.nodes {
		all = append(all, n.addr)
		all6 = append(all6, n.addr6)
	}
	if l.opts.v6 {
		l.waitEstablished(20*time.Second, append(all, all6...)...)
	} else {
		l.waitEstablished(20*time.Second, all...)
	}
	for _, p := range prefixes {
		if p.Addr().Is4() {
			l.fib.WaitFor(l.t, p, 10*time.Second, sameSet(all...))
		} else {
			l.fib.WaitFor(l.t, p, 10*time.Second, sameSet(all6...))
		}
	}
}

func (l *lab) dumpLogs() {
	l.frr.Dump(l.t)
	files, _ := filepath.Glob(filepath.Join(l.dir, "*.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		l.t.Logf("--- %s:\n%s", filepath.Base(f), b)
	}
}

func sameSet(want ...netip.Addr) func([]netip.Addr) bool { return frrlab.SameSet(want...) }

// nsPool runs functions on OS threads moved into a namespace: a socket
// belongs to the namespace of the thread that created it, so a
// connection dialled in the pool is the client's, whatever goroutine
// uses it afterwards.
type nsPool struct {
	jobs chan func()
	wg   sync.WaitGroup
}

func newNSPool(t *testing.T, ns string, workers int) *nsPool {
	p := &nsPool{jobs: make(chan func())}
	for range workers {
		ready := make(chan error, 1)
		p.wg.Go(func() { p.work(ns, ready) })
		if err := <-ready; err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { close(p.jobs); p.wg.Wait() })
	return p
}

// work moves its thread into ns and back at the end; only when moving
// back fails does the thread stay locked, to exit with the goroutine.
func (p *nsPool) work(ns string, ready chan<- error) {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		ready <- err
		return
	}
	defer orig.Close()
	h, err := netns.GetFromName(ns)
	if err != nil {
		runtime.UnlockOSThread()
		ready <- err
		return
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		netns.Set(orig)
		ready <- err
		return
	}
	ready <- nil
	for f := range p.jobs {
		f()
	}
	if netns.Set(orig) == nil {
		runtime.UnlockOSThread()
	}
}

// dial connects from the namespace.
func (p *nsPool) dial(addr string, timeout time.Duration) (net.Conn, error) {
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	p.jobs <- func() {
		c, err := net.DialTimeout("tcp", addr, timeout)
		ch <- res{c, err}
	}
	r := <-ch
	return r.c, r.err
}

// hello connects to addr and returns the node that answers.
func (p *nsPool) hello(addr string, timeout time.Duration) (string, net.Conn, error) {
	c, err := p.dial(addr, timeout)
	if err != nil {
		return "", nil, err
	}
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 0, 16)
	one := make([]byte, 1)
	for {
		n, err := c.Read(one)
		if err != nil {
			c.Close()
			return "", nil, err
		}
		if n == 1 {
			if one[0] == '\n' {
				break
			}
			buf = append(buf, one[0])
		}
	}
	_ = c.SetReadDeadline(time.Time{})
	return string(buf), c, nil
}

// probe opens a connection every 10 ms, each on its own, and records who
// answered or the error, until stop.
type probe struct {
	once    sync.Once
	mu      sync.Mutex
	results []probeResult
	stop    chan struct{}
	done    chan struct{}
}

type probeResult struct {
	at   time.Time
	node string
	err  error
}

func (l *lab) startProbe(addr string) *probe {
	pr := &probe{stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	go func() {
		defer close(pr.done)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		deadline := time.Now().Add(2 * time.Minute)
		for {
			select {
			case <-pr.stop:
				wg.Wait()
				return
			case now := <-tick.C:
				if now.After(deadline) {
					wg.Wait()
					return
				}
				wg.Go(func() {
					node, c, err := l.pool.hello(addr, 500*time.Millisecond)
					if c != nil {
						c.Close()
					}
					pr.mu.Lock()
					pr.results = append(pr.results, probeResult{at: now, node: node, err: err})
					pr.mu.Unlock()
				})
			}
		}
	}()
	l.t.Cleanup(pr.end)
	return pr
}

func (pr *probe) end() {
	pr.once.Do(func() { close(pr.stop) })
	<-pr.done
}

// finishPeek returns the results so far.
func (pr *probe) finishPeek() []probeResult {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return slices.Clone(pr.results)
}

// finish stops the probe and returns its results in time order.
func (pr *probe) finish() []probeResult {
	pr.end()
	pr.mu.Lock()
	defer pr.mu.Unlock()
	out := slices.Clone(pr.results)
	slices.SortFunc(out, func(a, b probeResult) int { return a.at.Compare(b.at) })
	return out
}

func failures(rs []probeResult) []probeResult {
	var out []probeResult
	for _, r := range rs {
		if r.err != nil {
			out = append(out, r)
		}
	}
	return out
}

func countBy(rs []probeResult) map[string]int {
	m := map[string]int{}
	for _, r := range rs {
		if r.err == nil {
			m[r.node]++
		}
	}
	return m
}
