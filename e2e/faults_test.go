//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestFaults puts one `gitedge run` node (no VRRP) through the
// process-level faults of issue 10, each bounded in time, on one lab: a
// flood of unsigned webhooks, a restart with a full state directory (over
// the git server and over a local path), and a backend that loops back to
// the node's own listener.
func TestFaults(t *testing.T) {
	spec := webSpec()
	// No X-Forwarded-For: with it, a request looping through the node
	// grows its head at every hop and is cut off by the header size limit
	// (431), which hides whether the proxy detects the loop itself.
	spec.listeners[0].forwardFor = false
	f := newFleet(t, fleetOpts{nodes: 1, spec: spec})
	t.Run("a-webhook-flood", func(t *testing.T) { faultWebhookFlood(t, f) })
	t.Run("b-full-state-dir-git", func(t *testing.T) { faultFullStateDir(t, f, "") })
	t.Run("b-full-state-dir-local-path", func(t *testing.T) { faultFullStateDir(t, f, f.git.bare()) })
	t.Run("c-self-pointing-backend", func(t *testing.T) { faultSelfLoop(t, f) })
}

// restart stops the node's process if it runs, writes its node config
// and starts it again.
func (n *edgeNode) restart(t testing.TB, o nodeConfigOpts) {
	t.Helper()
	if n.d != nil && !n.d.exited() {
		n.stop(t)
	}
	n.writeConfig(t, o)
	n.start(t)
}

// procStatusKB reads a field (VmRSS, VmHWM) of /proc/PID/status, in KiB.
func procStatusKB(pid int, field string) (int, error) {
	fl, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer fl.Close()
	sc := bufio.NewScanner(fl)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
	return 0, fmt.Errorf("/proc/%d/status has no %s", pid, field)
}

// The bound on the node's peak RSS (VmHWM) through the flood. Unbounded,
// 300 bodies of 5 MiB held at once need 1.5 GiB (issue 10 measured a 2.98
// GB peak). 256 MiB is about 8 times the idle process (~30 MiB) and
// leaves room for a bounded design — say 64 MiB of unauthenticated bytes
// in flight, doubled by Go's collector pacing (GOGC=100), plus 300
// connections' goroutines and buffers — while any design that holds each
// body until it can check the signature exceeds it five times over.
const floodRSSBound = 256 << 20

// (a) 300 connections each try to send an unsigned 5 MiB − 1 byte push
// slowly (64 KiB every 75 ms, so ~6 s each; the flood stops after 10 s
// whatever happens). Meanwhile a correctly signed delivery must be served
// and its commit go live, and the node's peak RSS stay under the bound.
func faultWebhookFlood(t *testing.T, f *fleet) {
	n := f.nodes[0]
	n.restart(t, nodeConfigOpts{})
	pid := n.d.cmd.Process.Pid
	idle, err := procStatusKB(pid, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	mark := n.d.mark()
	const conns, body, chunk = 300, 5<<20 - 1, 64 << 10
	floodEnd := time.Now().Add(10 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), floodEnd)
	defer cancel()
	var connected, dialErr, cutOff, sentAll atomic.Int64
	var bytesSent atomic.Int64
	var statusMu sync.Mutex
	statuses := map[string]int{}
	var wg sync.WaitGroup
	pad := make([]byte, chunk)
	for i := range pad {
		pad[i] = 'a'
	}
	for i := range conns {
		wg.Go(func() {
			c, err := nsDialer(f.cl)(ctx, "tcp", n.addr.String()+":9000")
			if err != nil {
				dialErr.Add(1)
				return
			}
			connected.Add(1)
			defer c.Close()
			c.SetDeadline(floodEnd)
			fmt.Fprintf(c, "POST /hook HTTP/1.1\r\nHost: %s:9000\r\nContent-Type: application/json\r\nX-GitHub-Event: push\r\n"+
				"X-GitHub-Delivery: flood-%d\r\nX-Hub-Signature-256: sha256=%064d\r\nContent-Length: %d\r\n\r\n", n.addr, i, 0, body)
			tick := time.NewTicker(75 * time.Millisecond)
			defer tick.Stop()
			sent := 0
			for sent < body {
				k, err := c.Write(pad[:min(chunk, body-sent)])
				sent += k
				bytesSent.Add(int64(k))
				if err != nil {
					cutOff.Add(1)
					break
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
				}
				if ctx.Err() != nil {
					break
				}
			}
			if sent == body {
				sentAll.Add(1)
			}
			// Whatever the node answered, if it did.
			st := "no answer"
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				st = resp.Status
				resp.Body.Close()
			}
			statusMu.Lock()
			statuses[st]++
			statusMu.Unlock()
		})
	}

	// RSS every 100 ms while the flood runs.
	var peakRSS atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			if kb, err := procStatusKB(pid, "VmRSS"); err == nil && int64(kb) > peakRSS.Load() {
				peakRSS.Store(int64(kb))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()

	// Two seconds in, a real push and its signed webhook.
	time.Sleep(2 * time.Second)
	spec := f.spec.clone()
	spec.setBackend(backendSpec{name: "flood", servers: []string{"be5:80"}})
	spec.setRoute(routeSpec{name: "flood", hosts: []string{"flood.lab"}, http: "flood"})
	head := f.git.commit(t, f.render(spec), "pushed during the flood", false)
	hookAt := time.Now()
	hookErr := f.git.hook(n.addr.String()+":9000", head)
	hookTook := time.Since(hookAt)
	var live time.Duration
	liveErr := ""
	for time.Since(hookAt) < minWait {
		if e, _, err := n.get("flood.lab"); err == nil && e.Backend == "be5" {
			live = time.Since(hookAt)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if live == 0 {
		liveErr = fmt.Sprintf("not live within %v", minWait)
	}
	wg.Wait()
	cancel()
	<-sampled
	hwm, err := procStatusKB(pid, "VmHWM")
	if err != nil {
		t.Fatalf("the node died in the flood: %v\n%s", err, n.d.logTail(20))
	}
	f.spec = spec

	figure("a webhook flood", "node RSS idle → peak VmHWM (bound 256 MiB)", "%d MiB → %d MiB", idle>>10, hwm>>10)
	figure("a webhook flood", "flood: conns / bytes sent / complete bodies", "%d of %d connected, %d MiB, %d sent whole, %d cut off", connected.Load(), conns, bytesSent.Load()>>20, sentAll.Load(), cutOff.Load())
	figure("a webhook flood", "answers to the flood", "%v", statuses)
	figure("a webhook flood", "signed delivery during the flood", "answered in %v (err %v), live after %v %s", hookTook.Round(time.Millisecond), hookErr, live.Round(time.Millisecond), liveErr)
	if hookErr != nil {
		t.Errorf("the signed delivery sent during the flood was not served: %v", hookErr)
	}
	if live == 0 {
		t.Errorf("the commit pushed during the flood did not go live within %v of its signed webhook", minWait)
	}
	if int64(hwm)<<10 > floodRSSBound {
		t.Errorf("the node's peak RSS (VmHWM) reached %d MiB under 300 unsigned 5 MiB webhooks (idle %d MiB, sampled peak %d MiB), bound %d MiB: unauthenticated bodies are not bounded",
			hwm>>10, idle>>10, peakRSS.Load()>>10, floodRSSBound>>20)
	}
	if resp, err := n.admin.Get("http://127.0.0.1:9100/healthz"); err != nil {
		t.Errorf("the node's /healthz after the flood: %v", err)
	} else {
		resp.Body.Close()
	}
	defer n.stopWithin(t, 10*time.Second) // and the node still stops cleanly
	// Refused deliveries are counted and logged at a bounded rate, not one
	// line each: at most 30 webhook warnings for the whole flood.
	var warns int
	for _, l := range n.d.linesSince(mark, `"level":"WARN"`) {
		if strings.Contains(l, "webhook") {
			warns++
		}
	}
	figure("a webhook flood", "webhook WARN log lines during the flood", "%d", warns)
	if warns > 30 {
		t.Errorf("the flood produced %d webhook WARN lines for %d unsigned deliveries; refusals should be counted and logged at a bounded rate", warns, conns)
	}
}

// mountTmpfs mounts a tmpfs of size MiB on a fresh directory, unmounted
// when the test ends.
func mountTmpfs(t testing.TB, mib int) string {
	t.Helper()
	dir := t.TempDir()
	run(t, "mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm,mode=0700", mib), "gitedge-e2e-state", dir)
	t.Cleanup(func() { runQuiet("umount", "-l", dir) })
	return dir
}

// fill writes a file in dir until the filesystem is full.
func fill(t testing.TB, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	fl, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	buf := make([]byte, 1<<20)
	for {
		if _, err := fl.Write(buf); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			t.Fatal(err)
		}
	}
	// Whatever is left smaller than the buffer.
	for {
		if _, err := fl.Write(buf[:512]); err != nil {
			break
		}
	}
	fl.Sync()
	return p
}

// (b) The node's stateDir is a tmpfs. A commit is applied; the node stops;
// the branch moves on while it is down; the tmpfs is filled; the node
// restarts. It must serve its last applied commit (how soon, well under
// 2 s on an idle machine, goes to the figures) and say "disk full" in
// /status; after space is freed it catches up.
func faultFullStateDir(t *testing.T, f *fleet, source string) {
	n := f.nodes[0]
	kind := "git server"
	if source != "" {
		kind = "local path"
	}
	n.stateDir = mountTmpfs(t, 16)
	defer func() { n.stateDir = filepath.Join(n.dir, "state") }()
	n.restart(t, nodeConfigOpts{source: source, poll: "@every 2s"})
	defer func() {
		if n.d != nil && !n.d.exited() {
			n.kill()
		}
	}()
	a := f.spec.clone()
	a.setBackend(backendSpec{name: "full", servers: []string{"be3:80"}})
	a.setRoute(routeSpec{name: "full", hosts: []string{"full.lab"}, http: "full"})
	head, _ := f.commit(t, a, "applied before the disk filled", false)
	n.waitLive(t, head, 10*time.Second)
	n.waitRoute(t, "full.lab", "be3", 2*time.Second)
	n.stop(t)

	b := a.clone()
	b.setBackend(backendSpec{name: "full", servers: []string{"be4:80"}})
	newer := f.git.commit(t, f.render(b), "pushed while the node was down", false)
	filler := fill(t, n.stateDir)

	n.start(t)
	served := time.Duration(0)
	for time.Since(n.started) < minWait {
		if e, _, err := n.get("full.lab"); err == nil && e.Backend == "be3" {
			served = time.Since(n.started)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if served == 0 {
		st, _ := n.status()
		t.Errorf("over a %s, restarted with a full state directory: the node does not serve its last applied commit %s within %v (live %q)\n%s\nlog:\n%s",
			kind, short(head), minWait, short(st.live()), st.raw, n.d.logTail(15))
		figure("b full stateDir ("+kind+")", "restart → last applied served", "not within %v", minWait)
	} else {
		figure("b full stateDir ("+kind+")", "restart → last applied served", "%v", served.Round(time.Millisecond))
	}
	var said bool
	for deadline := time.Now().Add(minWait); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if st, err := n.status(); err == nil && strings.Contains(strings.ToLower(st.raw), "disk full") {
			said = true
			break
		}
	}
	if !said {
		st, _ := n.status()
		t.Errorf("over a %s with a full state directory, /status does not say \"disk full\":\n%s", kind, st.raw)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	for time.Since(freed) < 10*time.Second {
		if e, _, err := n.get("full.lab"); err == nil && e.Backend == "be4" {
			figure("b full stateDir ("+kind+")", "space freed → newer commit live", "%v", time.Since(freed).Round(time.Millisecond))
			f.spec, f.head = b, newer
			n.stop(t)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	st, _ := n.status()
	figure("b full stateDir ("+kind+")", "space freed → newer commit live", "not within 10 s")
	t.Errorf("over a %s, the node did not catch up with %s within 10 s of space being freed (live %q):\n%s\nlog:\n%s",
		kind, short(newer), short(st.live()), st.raw, n.d.logTail(15))
	f.spec, f.head = b, newer
}

// (c) A backend that points back at the node's own listener. Validation
// cannot see every such loop: here the server is 192.0.2.61, an address
// an operator put on the node's eth0 by hand (a service address, say),
// which the node's `bind: ":80"` listener accepts — the run-time guard
// must catch it. The node must keep answering /healthz and its other
// routes, and answer the looping request with an error (508/502) rather
// than recurse. Then the loop validation can see — a server equal to the
// node's own address and listener port — must be refused at validation.
// The node keeps the descriptor limit it inherits (20,000 here, as in
// issue 10's report); a loop that is not caught is bounded by it.
func faultSelfLoop(t *testing.T, f *fleet) {
	n := f.nodes[0]
	n.restart(t, nodeConfigOpts{})
	defer func() {
		if n.d != nil && !n.d.exited() {
			n.kill()
		}
	}()
	run(t, "ip", "-n", n.ns, "addr", "add", "192.0.2.61/24", "dev", "eth0")
	defer runQuiet("ip", "-n", n.ns, "addr", "del", "192.0.2.61/24", "dev", "eth0")
	s := f.spec.clone()
	s.setBackend(backendSpec{name: "selfaddr", servers: []string{"192.0.2.61:80"}})
	s.setBackend(backendSpec{name: "selfaddr-tls", servers: []string{"192.0.2.61:443"}})
	s.setRoute(routeSpec{name: "selfaddr", hosts: []string{"self.lab"}, http: "selfaddr", tls: "selfaddr-tls"})
	s.setBackend(backendSpec{name: "ok", servers: []string{"be3:80"}})
	s.setRoute(routeSpec{name: "ok", hosts: []string{"ok.lab"}, http: "ok"})
	head, _ := f.commit(t, s, "a backend on the node's own (hand-added) address", false)
	n.waitLive(t, head, 5*time.Second)
	n.waitRoute(t, "ok.lab", "be3", 2*time.Second)

	type answer struct {
		status int
		err    error
		took   time.Duration
	}
	httpLoop, tlsLoop := make(chan answer, 1), make(chan answer, 1)
	go func() {
		c := nsClient(f.cl, 3*time.Second, false)
		start := time.Now()
		_, st, err := httpGet(c, n.addr.String()+":80", "self.lab", "/")
		httpLoop <- answer{st, err, time.Since(start)}
	}()
	go func() {
		start := time.Now()
		_, err := tlsGet(f.cl, n.addr.String()+":443", "self.lab", 3*time.Second)
		tlsLoop <- answer{0, err, time.Since(start)}
	}()
	quick := nsClient(n.ns, time.Second, false)
	okc := nsClient(f.cl, time.Second, false)
	var healthFails, routeFails []string
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if resp, err := quick.Get("http://127.0.0.1:9100/healthz"); err != nil {
			healthFails = append(healthFails, err.Error())
		} else {
			resp.Body.Close()
		}
		if e, _, err := httpGet(okc, n.addr.String()+":80", "ok.lab", "/"); err != nil || e.Backend != "be3" {
			routeFails = append(routeFails, fmt.Sprint(e.Backend, " ", err))
		}
	}
	a, b := <-httpLoop, <-tlsLoop
	figure("c self-pointing backend", "HTTP request to the looping route", "status %d after %v", a.status, a.took.Round(time.Millisecond))
	figure("c self-pointing backend", "TLS connection to the looping route", "ended after %v (%v)", b.took.Round(time.Millisecond), b.err)
	figure("c self-pointing backend", "healthz / other route failures in the 3 s after", "%d / %d of 30", len(healthFails), len(routeFails))
	if len(healthFails) > 0 {
		t.Errorf("/healthz failed %d times in the 3 s after a request looped through the node's own address: %s", len(healthFails), healthFails[0])
	}
	if len(routeFails) > 0 {
		t.Errorf("another route (ok.lab) failed %d times in the 3 s after a looping request: %s", len(routeFails), routeFails[0])
	}
	if a.status != http.StatusLoopDetected && a.status != http.StatusBadGateway || a.took > time.Second {
		t.Errorf("the looping HTTP request got status %d (err %v) after %v, want 508 or 502 at once", a.status, a.err, a.took)
	}
	if b.err == nil || b.took > time.Second {
		t.Errorf("the looping TLS connection was not cut at once: %v after %v", b.err, b.took)
	}
	if len(n.d.linesSince(0, "loop")) == 0 {
		t.Errorf("no log line says a loop was detected:\n%s", n.d.logTail(10))
	}

	// The loop validation can see: the node's own address and listener.
	n.kill()
	n.start(t)
	v := s.clone()
	v.setBackend(backendSpec{name: "selfaddr", servers: []string{n.addr.String() + ":80"}})
	head, _ = f.commit(t, v, "a backend on the node's own listener", false)
	st := n.waitStatus(t, "the self-pointing commit's outcome", 5*time.Second, func(s nodeStatus) bool {
		return s.LastAttempt != nil && s.LastAttempt.Commit == head && s.LastAttempt.Result != ""
	})
	if st.LastAttempt.Result != "invalid" || !strings.Contains(st.LastAttempt.Error, n.addr.String()+":80") {
		t.Errorf("a backend server at the node's own listener (%s:80) was not refused at validation: result %q, error %q",
			n.addr, st.LastAttempt.Result, st.LastAttempt.Error)
	}
	// Back to a sane repository for whatever follows.
	s.setBackend(backendSpec{name: "selfaddr", servers: []string{"be4:80"}})
	s.setBackend(backendSpec{name: "selfaddr-tls", servers: []string{"be4:443"}})
	f.commit(t, s, "loop removed", false)
	f.spec = s
}

// runQuiet runs a command, ignoring its outcome (cleanups).
func runQuiet(name string, args ...string) { exec.Command(name, args...).Run() }
