//go:build e2e

package e2e

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A fleet is the product as deployed: every node runs `gitedge run` (the
// built binary) with its own node config and stateDir, following one git
// server in its own namespace, optionally managing VMs on the Proxmox
// simulator in its own, in front of backends in their own; the client is
// the lab's client namespace.
type fleet struct {
	*lab
	git   *gitServer
	pve   *pveLab // nil without infra
	be    *backends
	nodes []*edgeNode
	spec  repoSpec // what the repository holds now
	head  string   // its commit
}

type fleetOpts struct {
	nodes    int
	backends int  // be1..beN; default 6
	pve      bool // the Proxmox simulator, and the nodes' proxmox section
	signed   bool // nodes verify against the lab's key; good commits are signed
	spec     repoSpec
	// first are started first, one by one, each waited for as master of
	// the instances it prefers, before the others start: no other node
	// holds mastership (and writes VMs) for a moment at start-up.
	first []string
	// run names the nodes that run gitedge; nil: all of them.
	run []string
	// setup runs once the lab, the backends and the git server are up,
	// before any node starts (the BGP tests' router).
	setup func(*fleet)
	// poll is the nodes' source.poll; default "@every 1m".
	poll string
}

// edgeNode is one lab node running `gitedge run`.
type edgeNode struct {
	*labNode
	f        *fleet
	dir      string // node config and secrets
	stateDir string
	config   string // the node config file
	admin    *http.Client
	client   *http.Client // the client namespace, one connection per request
	started  time.Time    // when the running process was started
}

func newFleet(t testing.TB, o fleetOpts) *fleet {
	t.Helper()
	if o.backends == 0 {
		o.backends = 6
	}
	f := &fleet{lab: newLab(t, o.nodes)}
	f.be = f.startBackends(o.backends)
	f.git = f.startGit()
	if o.signed {
		f.git.key = signer(t)
	}
	if o.pve {
		f.pve = f.startPvesim()
	}
	for _, ln := range f.lab.nodes {
		n := &edgeNode{labNode: ln, f: f, dir: t.TempDir(),
			admin: nsClient(ln.ns, 2*time.Second, false), client: nsClient(f.cl, 2*time.Second, false)}
		n.stateDir = filepath.Join(n.dir, "state")
		n.writeConfig(t, nodeConfigOpts{keyring: o.signed, pve: o.pve, poll: o.poll})
		f.nodes = append(f.nodes, n)
	}
	f.spec = o.spec
	if o.setup != nil {
		o.setup(f)
	}
	f.head = f.git.commit(t, f.render(o.spec), "initial", o.signed)
	for _, name := range o.first {
		m := f.node(name)
		m.start(t)
		for _, in := range o.spec.instances {
			if best(in.prio) == name {
				m.d.waitState(t, in.name, "MASTER", 5*time.Second)
			}
		}
	}
	for _, n := range f.nodes {
		if !slices.Contains(o.first, n.name) && (o.run == nil || slices.Contains(o.run, n.name)) {
			n.start(t)
		}
	}
	for _, n := range f.nodes {
		if n.d != nil {
			n.waitLive(t, f.head, 15*time.Second)
		}
	}
	return f
}

// best is the node with the highest priority.
func best(prio map[string]int) string {
	var top string
	for n, p := range prio {
		if top == "" || p > prio[top] || (p == prio[top] && n > top) {
			top = n
		}
	}
	return top
}

func (f *fleet) node(name string) *edgeNode { return byName(f.t, f.nodes, name) }

// nodeByAddr names the node with address a ("" if none).
func (f *fleet) nodeByAddr(a string) string {
	for _, n := range f.nodes {
		if n.addr.String() == a {
			return n.name
		}
	}
	return ""
}

type nodeConfigOpts struct {
	keyring bool
	pve     bool
	source  string // instead of the git server's URL (a local path)
	poll    string // default "@every 1m"
}

func (n *edgeNode) writeConfig(t testing.TB, o nodeConfigOpts) {
	t.Helper()
	write := func(name, content string) string {
		p := filepath.Join(n.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var b strings.Builder
	fmt.Fprintf(&b, "node: %s\nsource:\n  url: %q\n  branch: main\n  poll: %q\n", n.name, cmp.Or(o.source, n.f.git.url()), cmp.Or(o.poll, "@every 1m"))
	if o.keyring {
		fmt.Fprintf(&b, "  verify: {keyringFile: %s}\n", write("trusted.asc", n.f.git.key.pub))
	}
	fmt.Fprintf(&b, "webhook: {listen: \":9000\", path: /hook, secretFile: %s}\n", write("webhook.secret", n.f.git.secret+"\n"))
	if o.pve {
		fmt.Fprintf(&b, "proxmox: {url: %q, tokenID: %q, tokenSecretFile: %s}\n", n.f.pve.url(), n.f.pve.token, write("pve.token", n.f.pve.secret+"\n"))
	}
	fmt.Fprintf(&b, "admin: {listen: \"127.0.0.1:9100\"}\nstateDir: %s\n", n.stateDir)
	n.config = write("gitedge.yaml", b.String())
}

// start runs `gitedge run` on the node and waits until its admin server
// answers.
func (n *edgeNode) start(t testing.TB) *daemon {
	t.Helper()
	d := &daemon{kind: "gitedge", node: n.labNode, states: map[string][]stateEvent{}}
	pr, pw := io.Pipe()
	var logw io.Writer = pw
	if dir := os.Getenv("GE_E2E_LOGDIR"); dir != "" {
		// Keep every node's log for a post-mortem.
		name := fmt.Sprintf("%s-%s-%s.log", strings.ReplaceAll(t.Name(), "/", "_"), n.name, time.Now().Format("150405.000"))
		if fl, err := os.Create(filepath.Join(dir, name)); err == nil {
			n.lab.t.Cleanup(func() { fl.Close() })
			logw = io.MultiWriter(pw, fl)
		}
	}
	d.cmd, d.done = n.lab.startProcDone(t, n.ns, nil, io.Discard, logw, gitedgeBin(t), "run", "--config", n.config)
	go func() { <-d.done; pw.Close() }()
	go d.readLog(pr)
	n.d = d
	n.started = time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := n.admin.Get("http://127.0.0.1:9100/healthz")
		if err == nil {
			resp.Body.Close()
			// Up: from now on a VIP it holds counts as held by a live node.
			n.lab.mon.setDead(n.name, false)
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: gitedge run's admin server not up within 10s: %v\n%s", n.name, err, d.logText())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill is SIGKILL: the process dies without a word; its VIPs stay in
// the kernel until their lifetime ends.
func (n *edgeNode) kill() {
	n.lab.mon.setDead(n.name, true)
	n.d.kill()
	<-n.d.done
}

// stop is SIGTERM, waiting for the process to end.
func (n *edgeNode) stop(t testing.TB) {
	t.Helper()
	n.d.stop(t)
}

// stopWithin sends SIGTERM and waits up to d for the process to end; if
// it does not, it fails t and kills the process.
func (n *edgeNode) stopWithin(t testing.TB, d time.Duration) {
	t.Helper()
	start := time.Now()
	n.d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.d.done:
	case <-time.After(d):
		t.Errorf("%s: gitedge run did not stop within %v of SIGTERM; killed\n%s", n.name, d, n.d.logTail(10))
		n.kill()
		return
	}
	if took := time.Since(start); took > d/2 {
		t.Logf("%s took %v to stop on SIGTERM", n.name, took)
	}
}

// nodeStatus is what GET /status says, as far as the tests read it.
type nodeStatus struct {
	Live *struct {
		Commit string `json:"commit"`
	} `json:"live"`
	LastAttempt *struct {
		Commit  string `json:"commit"`
		Trigger string `json:"trigger"`
		Result  string `json:"result"`
		Error   string `json:"error"`
	} `json:"lastAttempt"`
	Conditions map[string]struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	} `json:"conditions"`
	Infra *struct {
		Leader    bool   `json:"leader"`
		Converged bool   `json:"converged"`
		Error     string `json:"error"`
	} `json:"infra"`
	VRRP []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Priority int    `json:"priority"`
	} `json:"vrrp"`
	Relay []struct {
		Name         string `json:"name"`
		Commit       string `json:"commit"`
		Acknowledged bool   `json:"acknowledged"`
		Result       string `json:"result"`
		LastError    string `json:"lastError"`
	} `json:"relay"`
	raw string
}

func (s nodeStatus) live() string {
	if s.Live == nil {
		return ""
	}
	return s.Live.Commit
}

func (n *edgeNode) status() (nodeStatus, error) {
	var s nodeStatus
	resp, err := n.admin.Get("http://127.0.0.1:9100/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return s, err
	}
	s.raw = string(b)
	return s, json.Unmarshal(b, &s)
}

// waitStatus polls /status until ok says yes.
func (n *edgeNode) waitStatus(t testing.TB, what string, timeout time.Duration, ok func(nodeStatus) bool) nodeStatus {
	t.Helper()
	timeout = waitFor(timeout)
	deadline := time.Now().Add(timeout)
	var last nodeStatus
	var err error
	for {
		last, err = n.status()
		if err == nil && ok(last) {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s not seen in /status within %v (err %v):\n%s\nlog:\n%s", n.name, what, timeout, err, last.raw, n.d.logTail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *edgeNode) waitLive(t testing.TB, commit string, timeout time.Duration) {
	t.Helper()
	n.waitStatus(t, "live commit "+short(commit), timeout, func(s nodeStatus) bool { return s.live() == commit })
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// get asks the node itself (its own address, not the VIP) for host.
func (n *edgeNode) get(host string) (echo, int, error) {
	return httpGet(n.client, n.addr.String()+":80", host, "/")
}

// waitRoute waits until the node routes host to backend, and returns how
// long that took.
func (n *edgeNode) waitRoute(t testing.TB, host, backend string, timeout time.Duration) time.Duration {
	t.Helper()
	timeout = waitFor(timeout)
	start := time.Now()
	var last string
	for time.Since(start) < timeout {
		e, _, err := n.get(host)
		if err == nil && e.Backend == backend {
			return time.Since(start)
		}
		last = fmt.Sprint(e.Backend, " ", err)
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s does not route %s to %s within %v (last: %s)\nlog:\n%s", n.name, host, backend, timeout, last, n.d.logTail(30))
	return 0
}

// waitRouteAll polls every running node at once until each routes host to
// backend, and returns for each how long after `since` that was.
func (f *fleet) waitRouteAll(t testing.TB, host, backend string, since time.Time, timeout time.Duration) []time.Duration {
	t.Helper()
	timeout = waitFor(timeout)
	var wg sync.WaitGroup
	out := make([]time.Duration, len(f.nodes))
	errs := make([]string, len(f.nodes))
	for i, n := range f.nodes {
		if n.d == nil || n.d.exited() {
			continue
		}
		wg.Go(func() {
			var last string
			for time.Since(since) < timeout {
				e, _, err := n.get(host)
				if err == nil && e.Backend == backend {
					out[i] = time.Since(since)
					return
				}
				last = fmt.Sprint(e.Backend, " ", err)
				time.Sleep(5 * time.Millisecond)
			}
			errs[i] = fmt.Sprintf("%s does not route %s to %s within %v (last: %s)\nlog:\n%s", n.name, host, backend, timeout, last, n.d.logTail(30))
		})
	}
	wg.Wait()
	var got []time.Duration
	for i := range f.nodes {
		if errs[i] != "" {
			t.Fatal(errs[i])
		}
		if out[i] > 0 {
			got = append(got, out[i])
		}
	}
	return got
}

// commit renders spec, commits and pushes it (signed if sign) and sends
// the webhook to every running node; it returns the commit and when the
// webhooks went out.
// commitLive commits spec signed and waits until every node runs it; it
// returns the commit.
func (f *fleet) commitLive(t testing.TB, spec repoSpec, msg string) string {
	t.Helper()
	head, _ := f.commit(t, spec, msg, true)
	for _, n := range f.nodes {
		n.waitLive(t, head, 5*time.Second)
	}
	return head
}

func (f *fleet) commit(t testing.TB, spec repoSpec, msg string, sign bool) (string, time.Time) {
	t.Helper()
	head := f.git.commit(t, f.render(spec), msg, sign)
	at := time.Now()
	f.hookAll(t, head)
	f.head = head
	return head, at
}

// hookAll sends the push webhook to every node whose process runs, at once.
func (f *fleet) hookAll(t testing.TB, commit string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, len(f.nodes))
	for i, n := range f.nodes {
		if n.d == nil || n.d.exited() {
			continue
		}
		wg.Go(func() { errs[i] = f.git.hook(n.addr.String()+":9000", commit) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// probeVIP has the client GET host on vip:80 every `every`, each attempt
// on a new connection with a 150 ms deadline, and records which node
// proxied it (the backend's TCP peer), until the test ends.
func (f *fleet) probeVIP(vip, host string, every time.Duration) *probes {
	p := &probes{every: every}
	c := nsClient(f.cl, 150*time.Millisecond, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	f.t.Cleanup(func() { cancel(); <-done })
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		tick := time.NewTicker(every)
		defer tick.Stop()
		deadline := time.Now().Add(10 * time.Minute)
		for now := range tick.C {
			if ctx.Err() != nil || now.After(deadline) {
				break
			}
			wg.Go(func() {
				r := probeResult{at: now}
				if e, _, err := httpGet(c, net.JoinHostPort(vip, "80"), host, "/"); err == nil {
					r.who = f.nodeByAddr(e.Via)
				} else {
					r.err = err
				}
				p.mu.Lock()
				p.got = append(p.got, r)
				p.mu.Unlock()
			})
		}
		wg.Wait()
	}()
	return p
}

// logTail is the last n lines of the process's log.
func (d *daemon) logTail(n int) string {
	if d == nil {
		return "(not started)"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	l := d.log
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// mark is a position in the process's log, for linesSince.
func (d *daemon) mark() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.log)
}

// linesSince returns the log lines after mark that contain substr.
func (d *daemon) linesSince(mark int, substr string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, l := range d.log[min(mark, len(d.log)):] {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// exited reports whether the process has ended.
func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

// transitionsSince returns the instance's logged transitions after t.
func (d *daemon) transitionsSince(instance string, at time.Time) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, e := range d.states[instance] {
		if !e.at.Before(at) {
			out = append(out, e.state)
		}
	}
	return out
}

// transitionLog describes the instance's transitions after at, with when
// and why, for a failure message.
func (d *daemon) transitionLog(instance string, at time.Time) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, e := range d.states[instance] {
		if !e.at.Before(at) {
			out = append(out, fmt.Sprintf("%s %s (%s)", e.at.Format("15:04:05.000"), e.state, e.reason))
		}
	}
	return strings.Join(out, "; ")
}

// eventsSince is the instance's transitions after at.
func (d *daemon) eventsSince(instance string, at time.Time) []stateEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []stateEvent
	for _, e := range d.states[instance] {
		if !e.at.Before(at) {
			out = append(out, e)
		}
	}
	return out
}

// starvedTakeovers finds every takeover since at by the master down timer
// (a backup that heard no advert for its Master_Down_Interval) and, from
// the adverts of the other nodes as captured on the wire (adv, by node),
// whether the master had really gone silent that long: its longest gap
// in the 2 s before the takeover was logged, closed by a later advert of
// it (so not a master that stepped down). On a machine starved of CPU a
// live master can miss its adverts that long, and VRRP must then fail
// over. It returns the takeovers so explained, and those not explained.
func (f *fleet) starvedTakeovers(adv map[string]*advertLog, instance string, at time.Time, minDown time.Duration) (explained, unexplained []string) {
	for _, n := range f.nodes {
		if n.d == nil {
			continue
		}
		for _, e := range n.d.eventsSince(instance, at) {
			if e.state != "MASTER" || !strings.Contains(e.reason, "master down timer expired") {
				continue
			}
			var gap time.Duration
			for name, l := range adv {
				if name == n.name {
					continue
				}
				got := l.between(e.at.Add(-2*time.Second), e.at.Add(time.Minute))
				for i := 1; i < len(got); i++ {
					if got[i-1].at.After(e.at) || got[i-1].prio == 0 || got[i].prio == 0 {
						continue
					}
					gap = max(gap, got[i].at.Sub(got[i-1].at))
				}
			}
			what := fmt.Sprintf("%s at %s (the master's adverts stopped for %v)", n.name, e.at.Format("15:04:05.000"), gap.Round(time.Millisecond))
			if gap >= minDown {
				explained = append(explained, what)
			} else {
				unexplained = append(unexplained, what)
			}
		}
	}
	return explained, unexplained
}

// transitionLogs is transitionLog for every node that has run.
func (f *fleet) transitionLogs(instance string, at time.Time) string {
	var b strings.Builder
	for _, n := range f.nodes {
		if n.d != nil {
			fmt.Fprintf(&b, "%s: %s\n", n.name, n.d.transitionLog(instance, at))
		}
	}
	return b.String()
}

var ssUser = regexp.MustCompile(`pid=(\d+),fd=(\d+)`)

// breakListener makes the node's listening socket on port fail under the
// running process: it takes a duplicate of the socket with pidfd_getfd(2)
// and shuts it down, which stops the listener in the kernel; the
// process's accept(2) then fails with EINVAL. (`ss -K` cannot do it:
// Go 1.24+ listens with MPTCP, whose sockets SOCK_DESTROY refuses.) It
// returns when the socket was shut down.
func (n *edgeNode) breakListener(t testing.TB, port int) time.Time {
	t.Helper()
	requireTools(t, "ss")
	out := run(t, "ip", "netns", "exec", n.ns, "ss", "-H", "-t", "-l", "-n", "-p", fmt.Sprintf("sport = :%d", port))
	m := ssUser.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s: no process listening on :%d: %q", n.name, port, out)
	}
	pid, _ := strconv.Atoi(m[1])
	fd, _ := strconv.Atoi(m[2])
	if pid != n.d.cmd.Process.Pid {
		t.Fatalf("%s: :%d is held by pid %d, not gitedge (%d)", n.name, port, pid, n.d.cmd.Process.Pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(pidfd)
	dup, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		t.Fatalf("pidfd_getfd %d/%d: %v", pid, fd, err)
	}
	defer unix.Close(dup)
	if err := unix.Shutdown(dup, unix.SHUT_RD); err != nil {
		t.Fatalf("shutting down %s's listener on :%d: %v", n.name, port, err)
	}
	return time.Now()
}
