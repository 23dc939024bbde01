package reconcile

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// mapFS reads a directory into memory, applying edits as testkit.CopyTree does.
func mapFS(t *testing.T, dir string, edits map[string][][2]string) fstest.MapFS {
	t.Helper()
	out := fstest.MapFS{}
	err := fs.WalkDir(os.DirFS(dir), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			return err
		}
		for _, e := range edits[p] {
			if !strings.Contains(string(data), e[0]) {
				t.Fatalf("%s lacks %q", p, e[0])
			}
			data = []byte(strings.Replace(string(data), e[0], e[1], 1))
		}
		out[p] = &fstest.MapFile{Data: data}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// recorder is a fake of all three subsystems that records every call.
type recorder struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
}

func (r *recorder) record(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, name)
	return r.fail[name]
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

func (r *recorder) loop(node string) *Loop {
	return &Loop{
		Node: node,
		Dataplane: dataplaneFake(func(_ context.Context, c dataplane.Config) error {
			return r.record("dataplane " + itoa(len(c.Routes)) + " routes")
		}),
		Failover: failoverFake(func(_ context.Context, c failover.Config) error {
			return r.record("failover priority " + itoa(int(c.Instances[0].Priority)))
		}),
		Infra: infraFake(func(_ context.Context, c infra.Config, lead bool) error {
			l := "follower"
			if lead {
				l = "leader"
			}
			return r.record("infra " + itoa(len(c.VMs)) + " VMs " + l)
		}),
	}
}

// Fakes of the appliers, as functions; infraFake asks leads once, at the
// start, as the real reconciler does before its first write.
type (
	dataplaneFake func(context.Context, dataplane.Config) error
	failoverFake  func(context.Context, failover.Config) error
	infraFake     func(ctx context.Context, c infra.Config, lead bool) error
)

func (f dataplaneFake) Apply(ctx context.Context, c dataplane.Config) error { return f(ctx, c) }
func (f failoverFake) Apply(ctx context.Context, c failover.Config) error   { return f(ctx, c) }
func (f infraFake) Apply(ctx context.Context, c infra.Config, leads func() bool) (infra.Result, error) {
	lead := leads()
	return infra.Result{Leader: lead}, f(ctx, c, lead)
}

type transientErr struct{ error }

func (transientErr) Transient() bool { return true }

func TestLoopPasses(t *testing.T) {
	homelab := mapFS(t, "../examples/homelab", nil)
	withRoute := mapFS(t, "../examples/homelab", map[string][][2]string{
		"routes/blog.yaml": {{"name: blog", "name: blog"}, {"[blog.domain.tld]", "[blog.domain.tld, www.blog.domain.tld]"}},
	})
	broken := mapFS(t, "../examples/homelab", map[string][][2]string{"backends.yaml": {{"weight: 10", "weight: ten"}}})
	pruned := mapFS(t, "../examples/homelab", map[string][][2]string{
		"vms.yaml":  {{"---\napiVersion: gitedge/v1\nkind: VirtualMachine\nmetadata:\n  name: lb-1", "---\napiVersion: gitedge/v1\nkind: VirtualMachine\nmetadata:\n  name: lb-9"}, {"vmid: 151", "vmid: 159"}},
		"edge.yaml": {{"prune: false", "prune: true"}},
	})

	rec := &recorder{}
	reg := prometheus.NewRegistry()
	l := rec.loop("lb-1")
	l.Metrics = NewMetrics(reg)
	leader := true
	l.Leadership = Leadership{Master: func(instance string) bool { return instance == "VI_1" && leader }}
	ctx := context.Background()

	steps := []struct {
		name      string
		rev       Revision
		fetchErr  error
		fail      map[string]error
		leader    bool
		want      Result
		wantCalls []string
		wantLive  string
	}{
		{name: "first commit", rev: Revision{Commit: "c1", Files: homelab}, leader: true, want: ResultApplied,
			wantCalls: []string{"dataplane 3 routes", "failover priority 101", "infra 2 VMs leader"}, wantLive: "c1"},
		{name: "same content again: only infra re-observes", rev: Revision{Commit: "c2", Files: homelab}, leader: true, want: ResultUnchanged,
			wantCalls: []string{"infra 2 VMs leader"}, wantLive: "c2"},
		{name: "invalid commit keeps the last good", rev: Revision{Commit: "c3", Files: broken}, leader: true, want: ResultInvalid, wantLive: "c2"},
		{name: "unreachable remote", fetchErr: transientErr{errors.New("dial tcp: connection refused")}, leader: true, want: ResultFetchErr, wantLive: "c2"},
		{name: "dataplane fails: nothing recorded as live", rev: Revision{Commit: "c4", Files: withRoute}, leader: false,
			fail: map[string]error{"dataplane 3 routes": errors.New("bind :80: address in use")}, want: ResultFailed,
			wantCalls: []string{"dataplane 3 routes", "infra 2 VMs follower"}, wantLive: "c2"},
		{name: "retry succeeds", rev: Revision{Commit: "c4", Files: withRoute}, leader: false, want: ResultApplied,
			wantCalls: []string{"dataplane 3 routes", "infra 2 VMs follower"}, wantLive: "c4"},
		{name: "prune: routing changes before VMs go", rev: Revision{Commit: "c5", Files: pruned}, leader: true, want: ResultApplied,
			wantCalls: []string{"dataplane 3 routes", "infra 2 VMs leader"}, wantLive: "c5"},
	}
	for _, s := range steps {
		rec.fail = s.fail
		leader = s.leader
		got, err := l.Pass(ctx, s.rev, s.fetchErr)
		if got != s.want {
			t.Fatalf("%s: result %s (%v), want %s", s.name, got, err, s.want)
		}
		if calls := rec.take(); !slices.Equal(calls, s.wantCalls) {
			t.Errorf("%s: calls %q, want %q", s.name, calls, s.wantCalls)
		}
		st := l.Status()
		if st.Live == nil || st.Live.Commit != s.wantLive {
			t.Errorf("%s: live %+v, want %s", s.name, st.Live, s.wantLive)
		}
		if st.LastAttempt.Result != s.want {
			t.Errorf("%s: last attempt %+v", s.name, st.LastAttempt)
		}
	}
	st := l.Status()
	if st.Conditions["dataplane"].Status != CondReady || st.Conditions["config"].Status != CondReady {
		t.Errorf("conditions after recovery: %+v", st.Conditions)
	}
	if got := testutil.ToFloat64(l.Metrics.passes.WithLabelValues("invalid")); got != 1 {
		t.Errorf("%s{result=invalid} = %v", MetricPasses, got)
	}
	if got := testutil.ToFloat64(l.Metrics.live.WithLabelValues("c5")); got != 1 {
		t.Errorf("%s{commit=c5} = %v", MetricLiveCommit, got)
	}
}

func TestLoopInvalidThenStalled(t *testing.T) {
	rec := &recorder{}
	l := rec.loop("lb-0")
	broken := mapFS(t, "../examples/homelab", map[string][][2]string{"routes/blog.yaml": {{"k3s-http-ingress", "nope"}}})
	res, err := l.Pass(context.Background(), Revision{Commit: "bad", Files: broken}, nil)
	if res != ResultInvalid || err == nil || !strings.Contains(err.Error(), `routes/blog.yaml:7: Route "blog": spec.http.backend: no Backend named "nope"`) {
		t.Fatalf("result %s, err %v", res, err)
	}
	if calls := rec.take(); len(calls) != 0 {
		t.Errorf("an invalid commit reached the subsystems: %q", calls)
	}
	st := l.Status()
	if st.Live != nil || st.Conditions["config"].Status != CondStalled || !strings.Contains(st.Conditions["config"].Message, "nope") {
		t.Errorf("status %+v", st)
	}
}

func TestLoopDryRun(t *testing.T) {
	rec := &recorder{}
	l := rec.loop("lb-0")
	l.DryRun = true
	res, err := l.Pass(context.Background(), Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}, nil)
	if res != ResultPlanned || err != nil {
		t.Fatalf("%s %v", res, err)
	}
	if calls := rec.take(); len(calls) != 0 {
		t.Errorf("dry run applied: %q", calls)
	}
	if p := l.Status().LastAttempt.Plan; p != "15 to add, 0 to change, 0 to remove" {
		t.Errorf("plan summary %q", p)
	}
}

// chanSource serves revisions from a channel.
type chanSource chan Revision

func (c chanSource) Next(ctx context.Context) (Revision, error) {
	select {
	case r := <-c:
		return r, nil
	case <-ctx.Done():
		return Revision{}, ctx.Err()
	}
}

func TestLoopRunAndResync(t *testing.T) {
	rec := &recorder{}
	l := rec.loop("lb-0")
	src := make(chanSource)
	l.Source = src
	l.Resync = 20 * time.Millisecond
	testkit.Run(t, l.Run)
	src <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil), Trigger: "start"}
	// Resync re-applies infra without a new commit; wait for two of them.
	deadline := time.After(testkit.Deadline)
	var infraCalls int
	for infraCalls < 3 {
		select {
		case <-deadline:
			t.Fatalf("only %d infra passes", infraCalls)
		case <-time.After(5 * time.Millisecond):
		}
		for _, c := range rec.take() {
			if strings.HasPrefix(c, "infra") {
				infraCalls++
			}
		}
	}
	if st := l.Status(); st.LastResync == nil || st.LastResync.Trigger != TriggerResync || st.LastAttempt.Trigger != "start" {
		t.Errorf("resync passes must be reported apart from the last new revision: %+v / %+v", st.LastAttempt, st.LastResync)
	}
	// A poke re-applies at once, well before the next resync.
	deadline = time.After(testkit.Deadline)
	for r := l.Status().LastResync; r == nil || r.Trigger != TriggerPoke; r = l.Status().LastResync {
		l.Poke()
		select {
		case <-deadline:
			t.Fatal("a poke never made a pass")
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// TestResyncKeepsTheRefusal: a resync over the live commit must not hide
// that the newest head was refused (a node says why anything failed).
func TestResyncKeepsTheRefusal(t *testing.T) {
	rec := &recorder{}
	l := rec.loop("lb-0")
	ctx := context.Background()
	good := Revision{Commit: "good", Files: mapFS(t, "../examples/homelab", nil)}
	if res, err := l.Pass(ctx, good, nil); res != ResultApplied {
		t.Fatal(res, err)
	}
	bad := mapFS(t, "../examples/homelab", map[string][][2]string{"routes/blog.yaml": {{"k3s-http-ingress", "nope"}}})
	if res, _ := l.Pass(ctx, Revision{Commit: "bad", Files: bad}, nil); res != ResultInvalid {
		t.Fatal(res)
	}
	good.Trigger = TriggerResync
	if res, err := l.Pass(ctx, good, nil); res != ResultUnchanged {
		t.Fatal(res, err)
	}
	st := l.Status()
	if st.LastAttempt.Commit != "bad" || st.Conditions["config"].Status != CondStalled || st.Live.Commit != "good" || st.LastResync.Commit != "good" {
		t.Errorf("after a resync: last attempt %+v, config %+v, live %+v", st.LastAttempt, st.Conditions["config"], st.Live)
	}
}

// TestLoopInfraDoesNotHoldBackRoutes: under Run, a slow infra apply (a
// clone takes minutes on a real Proxmox) does not delay the next commit's
// routes, and the infra worker then applies only the newest state.
func TestLoopInfraDoesNotHoldBackRoutes(t *testing.T) {
	release := make(chan struct{})
	infraCalls := make(chan int, 10)
	routes := make(chan int, 10)
	l := &Loop{
		Node: "lb-0",
		Dataplane: dataplaneFake(func(_ context.Context, c dataplane.Config) error {
			routes <- len(c.Routes)
			return nil
		}),
		Infra: infraFake(func(ctx context.Context, c infra.Config, _ bool) error {
			infraCalls <- c.VMs[0].Memory
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}),
	}
	src := make(chanSource)
	l.Source = src
	testkit.Run(t, l.Run)
	wait := func(ch chan int, what string) int {
		t.Helper()
		select {
		case v := <-ch:
			return v
		case <-time.After(testkit.Deadline):
			t.Fatalf("no %s", what)
			return 0
		}
	}
	src <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}
	if n := wait(routes, "first dataplane apply"); n != 3 {
		t.Fatalf("routes %d", n)
	}
	if m := wait(infraCalls, "first infra apply"); m != 4096 {
		t.Fatalf("memory %d", m)
	}
	// Infra is stuck; two more commits arrive.
	extra := map[string][][2]string{"routes/blog.yaml": {{"name: blog", "name: blog2"}, {"[blog.domain.tld]", "[blog2.domain.tld]"}}}
	src <- Revision{Commit: "c2", Files: mapFS(t, "../examples/homelab", map[string][][2]string{"vms.yaml": {{"memory: 4096", "memory: 2048"}}})}
	c3 := mapFS(t, "../examples/homelab", map[string][][2]string{"vms.yaml": {{"memory: 4096", "memory: 8192"}}})
	for k, v := range mapFS(t, "../examples/homelab", extra) {
		if k == "routes/blog.yaml" {
			c3["routes/blog2.yaml"] = v
		}
	}
	src <- Revision{Commit: "c3", Files: c3}
	if n := wait(routes, "routes of c3 while infra is busy"); n != 4 {
		t.Fatalf("routes %d, want 4", n)
	}
	testkit.WaitFor(t, "c3's infra step", func() bool { return l.Status().Conditions["infra"].Message == "applying commit c3" })
	// c3's job replaces c2's in the queue when c3's pass ends, after the
	// condition above is set. Two resyncs of c3 make sure it has: the
	// source's reader reads one revision ahead, so the second send returns
	// only once the loop has finished c3's pass.
	for range 2 {
		src <- Revision{Commit: "c3", Files: c3, Trigger: TriggerResync}
	}
	if c := l.Status().Conditions["infra"]; c.Status != CondProgressing {
		t.Errorf("infra condition %+v, want Progressing", c)
	}
	close(release)
	if m := wait(infraCalls, "infra apply of the newest state"); m != 8192 {
		t.Errorf("infra applied memory %d, want the newest (8192), not c2's", m)
	}
}

// TestStepErrorOnePrefix: a subsystem error that names its package is not
// prefixed again ("dataplane: dataplane: …" in issue 10).
func TestStepErrorOnePrefix(t *testing.T) {
	l := &Loop{Node: "lb-0", Dataplane: dataplaneFake(func(context.Context, dataplane.Config) error {
		return errors.New(`dataplane: listener "http": cannot listen on :80: address in use`)
	}), Failover: failoverFake(func(context.Context, failover.Config) error {
		return errors.New(`instance "VI_1": interface "eth9": no such interface`)
	})}
	_, err := l.Pass(context.Background(), Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}, nil)
	want := "dataplane: listener \"http\": cannot listen on :80: address in use\nfailover: instance \"VI_1\": interface \"eth9\": no such interface"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v\nwant %s", err, want)
	}
	// The condition is named after the step: its message does not say it
	// again (the status page listed "dataplane Failed: dataplane: …").
	if c := l.Status().Conditions["dataplane"]; c.Message != `listener "http": cannot listen on :80: address in use` {
		t.Errorf("dataplane condition %q", c.Message)
	}
	if c := l.Status().Conditions["failover"]; c.Message != `instance "VI_1": interface "eth9": no such interface` {
		t.Errorf("failover condition %q", c.Message)
	}
}

// TestInfraLeadershipAtApplyTime: a node that becomes the leader while an
// infra job waits leads that job, and its log says "leader":true (issue
// 10: an infra error on the leader logged "leader":false, the leadership
// of when the pass queued the job).
func TestInfraLeadershipAtApplyTime(t *testing.T) {
	var logs testkit.SyncBuffer
	var leading atomic.Bool
	release := make(chan struct{})
	leads := make(chan bool, 4)
	var calls atomic.Int32
	l := &Loop{Node: "lb-0", Logger: slog.New(slog.NewJSONHandler(&logs, nil)),
		Leadership: Leadership{Master: func(string) bool { return leading.Load() }},
		Retry:      Backoff{Min: time.Hour, Max: time.Hour}, // one failure is enough here
		Infra: infraFake(func(ctx context.Context, c infra.Config, lead bool) error {
			leads <- lead
			if calls.Add(1) == 1 {
				<-release // a long clone
				return nil
			}
			return errors.New("proxmox1: 500 internal error")
		}),
	}
	src := make(chanSource)
	l.Source = src
	testkit.Run(t, l.Run)
	src <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}
	if <-leads {
		t.Fatal("c1 led before the node was master")
	}
	src <- Revision{Commit: "c2", Files: mapFS(t, "../examples/homelab", map[string][][2]string{"vms.yaml": {{"memory: 4096", "memory: 2048"}}})}
	testkit.WaitFor(t, "c2 queued", func() bool { a := l.Status().LastAttempt; return a != nil && a.Commit == "c2" })
	leading.Store(true) // VRRP made this node master while c1's clone ran
	close(release)
	if !<-leads {
		t.Fatal("c2's infra job ran as a follower on the master")
	}
	testkit.WaitFor(t, "the infra error logged", func() bool { return strings.Contains(logs.String(), "infra apply failed") })
	if !strings.Contains(logs.String(), `"msg":"infra apply failed","subsystem":"reconcile","commit":"c2","leader":true,"error":"proxmox1: 500 internal error"`) {
		t.Errorf("log:\n%s", logs.String())
	}
}

// TestResyncKeepsTheFailedApply: a newer commit whose apply failed for
// good stays reported after a resync re-applies the live commit: the
// step's condition used to flip back to Ready while lastAttempt kept the
// error, so the node looked healthy with the newest commit not applied.
func TestResyncKeepsTheFailedApply(t *testing.T) {
	l := &Loop{Node: "lb-0", Dataplane: dataplaneFake(func(_ context.Context, c dataplane.Config) error {
		if c.Listeners[0].ClientTimeout == 3000*time.Second {
			return terminalErr{errors.New(`listener "http": mode quic: not supported`)}
		}
		return nil
	})}
	ctx := context.Background()
	good := Revision{Commit: "good", Files: mapFS(t, "../examples/homelab", nil)}
	if res, err := l.Pass(ctx, good, nil); res != ResultApplied {
		t.Fatal(res, err)
	}
	more := mapFS(t, "../examples/homelab", map[string][][2]string{"edge.yaml": {{"clientTimeout: 3600s", "clientTimeout: 3000s"}}})
	if res, _ := l.Pass(ctx, Revision{Commit: "newer", Files: more}, nil); res != ResultFailed {
		t.Fatal(res)
	}
	good.Trigger = TriggerResync
	if res, err := l.Pass(ctx, good, nil); res != ResultUnchanged {
		t.Fatal(res, err)
	}
	st := l.Status()
	if c := st.Conditions["dataplane"]; c.Status != CondStalled || st.LastAttempt.Commit != "newer" {
		t.Errorf("after a resync of the live commit: dataplane %+v, last attempt %+v; want Stalled, newer", c, st.LastAttempt)
	}
}
