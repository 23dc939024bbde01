package dataplane

import (
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// idlePollChildEnv starts TestIdlePollChild's role: "BACKEND WINDOW LOAD".
const idlePollChildEnv = "GITEDGE_IDLEPOLL_CHILD"

// TestIdlePollChild is TestIdlePoll's proxy, in a process of its own so
// that the parent can count its threads' sleeps; it does nothing in a
// normal test run.
func TestIdlePollChild(t *testing.T) {
	spec := os.Getenv(idlePollChildEnv)
	if spec == "" {
		return // only the parent test runs it, as a child process
	}
	f := strings.Fields(spec)
	if len(f) != 3 {
		t.Fatalf("%s=%q: want BACKEND WINDOW LOAD", idlePollChildEnv, spec)
	}
	backend := f[0]
	d, err := time.ParseDuration(f[1])
	if err == nil {
		pollLoad, err = strconv.ParseFloat(f[2], 64)
		pollUnload = min(pollUnload, pollLoad)
	}
	if err != nil {
		t.Fatalf("%s=%q: %v", idlePollChildEnv, spec, err)
	}
	p := startProxy(t, Config{
		Listeners: []Listener{httpListener("http", "a")},
		Backends:  []Backend{backendOf("a", srv("a1", netip.MustParseAddrPort(backend)))},
	}, func(o *Options) { o.IdlePoll = d })
	fmt.Println("listening", p.addr(t, "http"))
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
}

// TestIdlePoll: a proxy on one thread (GOMAXPROCS=1) serving kept-alive
// requests one after the other sleeps about twice a request without the
// idle poll (waiting for the client, then for the server). With the poll
// and a load threshold of 0 it hardly sleeps, the next event coming
// within the window; with the default threshold this light load leaves
// the poll out, and the proxy sleeps and spends as it did without. Once
// requests stop, no poll is left running: the proxy spends no CPU.
func TestIdlePoll(t *testing.T) {
	b := startHTTPBackend(t, "a1", false)
	const requests = 400
	type result struct{ sleeps, cpu float64 } // a request
	got := map[string]result{}
	for _, c := range []struct {
		name   string
		window time.Duration
		load   float64
	}{
		{"off", -1, pollLoad},
		{"on, any load", 5 * time.Millisecond, 0},
		{"on, light load", 5 * time.Millisecond, pollLoad},
	} {
		pid, addr := startIdlePollChild(t, fmt.Sprint(b.addr, " ", c.window, " ", c.load))
		cl := dialClient(t, addr)
		for range 20 { // warm: the pooled server connection, the window
			if r := cl.do("GET", "a.test", "/", ""); r.StatusCode != 200 {
				t.Fatalf("%s: %d", c.name, r.StatusCode)
			}
		}
		before := threads(t, pid)
		for range requests {
			if r := cl.do("GET", "a.test", "/", ""); r.StatusCode != 200 {
				t.Fatalf("%s: %d", c.name, r.StatusCode)
			}
		}
		sleeps, cpu := busiestThread(before, threads(t, pid))
		got[c.name] = result{
			sleeps: float64(sleeps) / requests,
			cpu:    float64(cpu) / requests / float64(time.Microsecond),
		}
		// Idle now: after its window, the poller sleeps.
		time.Sleep(50 * time.Millisecond)
		cpu0 := taskCPU(t, pid)
		time.Sleep(300 * time.Millisecond)
		if cpu := taskCPU(t, pid) - cpu0; cpu > 30*time.Millisecond {
			t.Errorf("%s: the idle proxy spent %v of CPU in 300ms", c.name, cpu)
		}
	}
	t.Logf("a request, the proxy's busiest thread: %+v (sleeps, CPU in µs)", got)
	off, on, light := got["off"], got["on, any load"], got["on, light load"]
	if off.sleeps < 0.5 {
		t.Errorf("without the poll the proxy slept %.2f times a request: the test no longer tells", off.sleeps)
	}
	if on.sleeps > off.sleeps/4 {
		t.Errorf("with the poll the proxy slept %.2f times a request (%.2f without)", on.sleeps, off.sleeps)
	}
	if light.sleeps < off.sleeps/2 {
		t.Errorf("under a light load the poll ran: %.2f sleeps a request (%.2f without)", light.sleeps, off.sleeps)
	}
}

// startIdlePollChild runs TestIdlePollChild on one P and returns its pid
// and its listener's address.
func startIdlePollChild(t *testing.T, spec string) (int, string) {
	t.Helper()
	ch := startChild(t, "TestIdlePollChild", idlePollChildEnv+"="+spec, "GOMAXPROCS=1")
	return ch.cmd.Process.Pid, ch.next(t, "listening ")
}

// threadStat is one thread's count of sleeps (voluntary context
// switches: the times it blocked) and its CPU time.
type threadStat struct {
	sleeps int64
	cpu    time.Duration
}

// threads reads pid's threads' sleeps and CPU times, by thread id.
func threads(t *testing.T, pid int) map[string]threadStat {
	t.Helper()
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]threadStat{}
	for _, task := range tasks {
		var st threadStat
		if b, err := os.ReadFile(dir + "/" + task.Name() + "/status"); err == nil {
			for l := range strings.SplitSeq(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
					st.sleeps, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				}
			}
		}
		if b, err := os.ReadFile(dir + "/" + task.Name() + "/schedstat"); err == nil {
			if f := strings.Fields(string(b)); len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				st.cpu = time.Duration(n)
			}
		}
		m[task.Name()] = st
	}
	return m
}

// busiestThread returns the sleeps and CPU time, between two readings,
// of the thread that ran most: the one that held the proxy's one P. The
// runtime's other threads (its monitor, the race detector's) sleep on
// their own schedule, polling or not.
func busiestThread(before, after map[string]threadStat) (sleeps int64, cpu time.Duration) {
	for id, a := range after {
		b := before[id]
		if d := a.cpu - b.cpu; d > cpu {
			sleeps, cpu = a.sleeps-b.sleeps, d
		}
	}
	return sleeps, cpu
}

// taskCPU sums the time pid's threads ran.
func taskCPU(t *testing.T, pid int) time.Duration {
	var sum time.Duration
	for _, st := range threads(t, pid) {
		sum += st.cpu
	}
	return sum
}
