package reconcile

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/internal/testkit"
)

// events records what an Observer hears, one line per event.
type events struct {
	mu  sync.Mutex
	got []string
	ch  chan Event
}

func (e *events) Observe(ev Event) {
	line := string(ev.Kind) + " " + ev.Rev.Commit
	switch ev.Kind {
	case EventApplied:
		a, c, r := ev.Plan.Counts()
		line += fmt.Sprintf(" +%d~%d-%d", a, c, r)
	case EventRefused, EventApplyFailed, EventInfra:
		if ev.Step != "" {
			line += " step=" + ev.Step
		}
		if fe, ok := errors.AsType[*Error](ev.Err); ok {
			line += ": " + fe.Error() // the first located error
		} else if ev.Err != nil {
			line += ": " + firstLineOf(ev.Err.Error())
		}
	}
	e.mu.Lock()
	e.got = append(e.got, line)
	e.mu.Unlock()
	if e.ch != nil {
		e.ch <- ev
	}
}

func (e *events) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	g := e.got
	e.got = nil
	return g
}

type terminalFetch struct{ error }

func (terminalFetch) Transient() bool { return false }

// TestObserverHearsEveryCommit: a new revision is heard fetched then
// applied, refused (with the first error's file:line) or failed (with the
// step); the loop's own passes over the live commit are not "fetched"
// again; a fetch the source retries and a dry run say nothing.
func TestObserverHearsEveryCommit(t *testing.T) {
	homelab := mapFS(t, "../examples/homelab", nil)
	withRoute := mapFS(t, "../examples/homelab", map[string][][2]string{
		"routes/blog.yaml": {{"[blog.domain.tld]", "[blog.domain.tld, www.blog.domain.tld]"}},
	})
	broken := mapFS(t, "../examples/homelab", map[string][][2]string{"backends.yaml": {{"weight: 10", "weight: ten"}}})
	rec := &recorder{}
	ev := &events{}
	l := rec.loop("lb-0")
	l.Observer = ev
	ctx := context.Background()
	steps := []struct {
		name     string
		rev      Revision
		fetchErr error
		fail     map[string]error
		dryRun   bool
		want     []string
	}{
		{name: "first commit", rev: Revision{Commit: "c1", Files: homelab, Trigger: "poll"},
			want: []string{"fetched c1", "applied c1 +15~0-0"}},
		{name: "resync: not fetched, applied with nothing to change", rev: Revision{Commit: "c1", Files: homelab, Trigger: TriggerResync},
			want: []string{"applied c1 +0~0-0"}},
		{name: "refused", rev: Revision{Commit: "c2", Files: broken, Trigger: "webhook: push"},
			want: []string{"fetched c2", "refused c2: backends.yaml:17: Backend \"k8s-http-ingress\": spec.servers[0].weight: expected a number, got a string"}},
		{name: "apply failed", rev: Revision{Commit: "c3", Files: withRoute, Trigger: "poll"}, fail: map[string]error{"dataplane 3 routes": errors.New("bind :80: address in use")},
			want: []string{"fetched c3", "apply-failed c3 step=dataplane: dataplane: bind :80: address in use"}},
		{name: "retry succeeds", rev: Revision{Commit: "c3", Files: withRoute, Trigger: TriggerRetry},
			want: []string{"applied c3 +0~1-0"}},
		{name: "the source refused the head for good", rev: Revision{Commit: "c4", Trigger: "poll"}, fetchErr: terminalFetch{errors.New("commit c4 is not signed by a trusted key")},
			want: []string{"refused c4: commit c4 is not signed by a trusted key"}},
		{name: "the source retries by itself", rev: Revision{Trigger: "poll"}, fetchErr: transientErr{errors.New("dial tcp: connection refused")}},
		{name: "dry run", rev: Revision{Commit: "c5", Files: homelab, Trigger: "poll"}, dryRun: true},
	}
	for _, s := range steps {
		rec.fail = s.fail
		l.DryRun = s.dryRun
		l.Pass(ctx, s.rev, s.fetchErr)
		rec.take()
		if got := ev.take(); strings.Join(got, "\n") != strings.Join(s.want, "\n") {
			t.Errorf("%s: heard\n  %s\nwant\n  %s", s.name, strings.Join(got, "\n  "), strings.Join(s.want, "\n  "))
		}
	}
}

// TestObserverHearsInfraPasses: under Run, the infra worker's passes are
// heard with their result, drift included, after the pass's own events.
func TestObserverHearsInfraPasses(t *testing.T) {
	drift := infra.Action{Op: infra.OpUpdate, VM: infra.VMRef{VMID: 150, Name: "lb-0"},
		Fields: []infra.FieldChange{{Key: "memory", Field: "memory", Old: "2048", New: "4096", Drift: true}}}
	var calls int
	var mu sync.Mutex
	l := &Loop{Node: "lb-0", Retry: Backoff{Min: time.Hour, Max: time.Hour},
		Dataplane: dataplaneFake(func(context.Context, dataplane.Config) error { return nil }),
		Infra: infraApply(func(context.Context, infra.Config, func() bool) (infra.Result, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 {
				return infra.Result{Leader: true, Applied: []infra.Action{drift}}, nil
			}
			return infra.Result{Leader: true}, transientErr{errors.New("proxmox1: 500 internal error")}
		})}
	ev := &events{ch: make(chan Event, 16)}
	l.Observer = ev
	src := make(chanSource)
	l.Source = src
	testkit.Run(t, l.Run)
	next := func() Event {
		t.Helper()
		select {
		case e := <-ev.ch:
			return e
		case <-time.After(testkit.Deadline):
			t.Fatal("no event")
			return Event{}
		}
	}
	src <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil), Trigger: "poll"}
	for _, want := range []EventKind{EventFetched, EventApplied, EventInfra} {
		if e := next(); e.Kind != want {
			t.Fatalf("heard %s, want %s", e.Kind, want)
		} else if e.Kind == EventInfra {
			if e.Rev.Commit != "c1" || e.Err != nil || e.Infra == nil || len(e.Infra.Applied) != 1 || !e.Infra.Applied[0].Fields[0].Drift {
				t.Errorf("infra event %+v", e)
			}
		}
	}
	l.Poke()
	if e := next(); e.Kind != EventApplied {
		t.Fatalf("poke: heard %s", e.Kind)
	}
	if e := next(); e.Kind != EventInfra || e.Err == nil || !strings.Contains(e.Err.Error(), "500 internal error") {
		t.Errorf("failing infra pass: %+v", e)
	}
}

type infraApply func(context.Context, infra.Config, func() bool) (infra.Result, error)

func (f infraApply) Apply(ctx context.Context, c infra.Config, leads func() bool) (infra.Result, error) {
	return f(ctx, c, leads)
}
