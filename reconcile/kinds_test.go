package reconcile

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/internal/testkit"
)

type terminalErr struct{ error }

func (terminalErr) Transient() bool { return false }

func TestIsTransient(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"untyped: retried", errors.New("bind :80: address in use"), true},
		{"says transient", fmt.Errorf("fetch: %w", transientErr{errors.New("refused")}), true},
		{"says terminal", fmt.Errorf("verify: %w", terminalErr{errors.New("untrusted")}), false},
		{"validation", Errors{{File: "a.yaml", Msg: "bad"}}, false},
		{"infra terminal", &infra.Error{Kind: infra.Terminal, Reason: infra.ReasonConflict, Err: errors.New("not ours")}, false},
		{"infra transient", &infra.Error{Kind: infra.Transient, Reason: infra.ReasonAPI, Err: errors.New("500")}, true},
		{"infra: one transient among terminal ones", infra.Errors{
			&infra.Error{Kind: infra.Terminal, Err: errors.New("a")}, &infra.Error{Kind: infra.Transient, Err: errors.New("b")}}, true},
		{"steps: any transient step", stepErrors{&StepError{"dataplane", terminalErr{errors.New("x")}}, &StepError{"failover", errors.New("y")}}, true},
		{"steps: all terminal", stepErrors{&StepError{"dataplane", terminalErr{errors.New("x")}}}, false},
	}
	for _, tt := range tests {
		if got := IsTransient(tt.err); got != tt.want {
			t.Errorf("%s: IsTransient(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestLeadership(t *testing.T) {
	master := func(in string) bool { return in == "VI_1" }
	tests := []struct {
		name string
		s    Leadership
		ld   Leader
		want bool
	}{
		{"no leader named", Leadership{}, Leader{}, true},
		{"this node named", Leadership{}, Leader{Node: "lb-0"}, true},
		{"another node named", Leadership{}, Leader{Node: "lb-1"}, false},
		{"vrrp without failover", Leadership{}, Leader{VRRP: "VI_1"}, false},
		{"vrrp master", Leadership{Master: master}, Leader{VRRP: "VI_1"}, true},
		{"vrrp backup", Leadership{Master: master}, Leader{VRRP: "VI_2"}, false},
		{"always", Leadership{Always: true}, Leader{Node: "lb-1"}, true},
	}
	for _, tt := range tests {
		if got := tt.s.Leads("lb-0", tt.ld); got != tt.want {
			t.Errorf("%s: Leads = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	for n, hi := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 40: time.Second} {
		for range 20 {
			if d := b.Delay(n); d < hi/2 || d > hi {
				t.Errorf("Delay(%d) = %s, want in [%s, %s]", n, d, hi/2, hi)
			}
		}
	}
}

// TestAfterPass: a transient failure is retried with backoff, a terminal
// one is not, and a pass that succeeds (or a newer revision) ends the
// retries.
func TestAfterPass(t *testing.T) {
	l := &Loop{Retry: Backoff{Min: time.Hour}}
	var r retrier
	defer r.stop()
	c1 := Revision{Commit: "c1", Trigger: "poll"}
	l.after(&r, c1, ResultFailed, stepErrors{&StepError{"dataplane", errors.New("bind :80: address in use")}})
	if rev, ok := r.pending(); !ok || rev.Commit != "c1" || r.c == nil || r.n != 1 {
		t.Fatalf("transient failure: pending %v %v, timer %v", rev, ok, r.c != nil)
	}
	l.after(&r, c1, ResultFailed, stepErrors{&StepError{"dataplane", errors.New("again")}})
	if r.n != 2 {
		t.Errorf("failures %d, want 2", r.n)
	}
	l.after(&r, Revision{Commit: "c1"}, ResultFetchErr, transientErr{errors.New("unreachable")})
	if _, ok := r.pending(); !ok {
		t.Error("a fetch error (retried by the source) cancelled the pass retry")
	}
	l.after(&r, c1, ResultApplied, nil)
	if _, ok := r.pending(); ok || r.c != nil || r.n != 0 {
		t.Error("success did not end the retries")
	}
	l.after(&r, c1, ResultFailed, stepErrors{&StepError{"failover", terminalErr{errors.New("invalid")}}})
	if _, ok := r.pending(); ok || r.c != nil {
		t.Error("a terminal failure is retried")
	}
}

// TestTransientStepRetried: under Run, a step that failed transiently is
// retried after a short backoff, not at the next resync (off here), and
// the commit goes live; its condition says Failed meanwhile, and a
// terminal failure says Stalled.
func TestTransientStepRetried(t *testing.T) {
	var calls atomic.Int32
	l := &Loop{Node: "lb-0", Retry: Backoff{Min: 5 * time.Millisecond, Max: 10 * time.Millisecond},
		Dataplane: dataplaneFake(func(context.Context, dataplane.Config) error {
			if calls.Add(1) < 3 {
				return errors.New("bind :80: address in use")
			}
			return nil
		})}
	src := make(chanSource)
	l.Source = src
	testkit.Run(t, l.Run)
	src <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil), Trigger: "poll"}
	testkit.WaitFor(t, "c1 live", func() bool { s := l.Status(); return s.Live != nil && s.Live.Commit == "c1" })
	if n := calls.Load(); n != 3 {
		t.Errorf("dataplane applied %d times, want 3 (two failures, one success)", n)
	}
	st := l.Status()
	if st.Conditions["dataplane"].Status != CondReady || st.LastAttempt.Trigger != TriggerRetry || st.LastAttempt.Result != ResultApplied {
		t.Errorf("after the retry: %+v, last attempt %+v", st.Conditions["dataplane"], st.LastAttempt)
	}

	stalled := &Loop{Node: "lb-0", Dataplane: dataplaneFake(func(context.Context, dataplane.Config) error {
		return terminalErr{errors.New("listener: mode quic: not supported")}
	})}
	if res, _ := stalled.Pass(context.Background(), Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}, nil); res != ResultFailed {
		t.Fatal(res)
	}
	if c := stalled.Status().Conditions["dataplane"]; c.Status != CondStalled {
		t.Errorf("terminal step failure: condition %+v, want Stalled", c)
	}
}

// TestInfraRetriedByKind: the infra worker retries a transient failure
// with backoff by itself, and leaves a terminal one Stalled until the next
// job (here a poke).
func TestInfraRetriedByKind(t *testing.T) {
	var calls atomic.Int32
	var terminal atomic.Bool
	l := &Loop{Node: "lb-0", Retry: Backoff{Min: time.Millisecond, Max: 2 * time.Millisecond},
		Infra: infraFake(func(context.Context, infra.Config, bool) error {
			if calls.Add(1) == 1 {
				if terminal.Load() {
					return &infra.Error{Kind: infra.Terminal, Reason: infra.ReasonConflict, VMID: 150, Err: errors.New("a VM gitedge does not own holds VMID 150")}
				}
				return transientErr{errors.New("proxmox1: 500 internal error")}
			}
			return nil
		})}
	src := make(chanSource)
	l.Source = src
	testkit.Run(t, l.Run)
	src <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}
	testkit.WaitFor(t, "infra retried to Ready", func() bool { return l.Status().Conditions["infra"].Status == CondReady })
	if n := calls.Load(); n != 2 {
		t.Errorf("infra applied %d times, want 2", n)
	}

	calls.Store(0)
	terminal.Store(true)
	l.Poke()
	testkit.WaitFor(t, "infra Stalled", func() bool { return l.Status().Conditions["infra"].Status == CondStalled })
	l.Poke()
	testkit.WaitFor(t, "the poke's infra pass", func() bool { return l.Status().Conditions["infra"].Status == CondReady })
	if n := calls.Load(); n != 2 {
		t.Errorf("infra applied %d times, want 2: the terminal failure, then the poke", n)
	}
}

// TestPokeRetriesATerminalFailure: a commit whose apply failed for good
// (terminal: a capability) is not retried by itself, but a poke (SIGHUP:
// the operator fixed the node) tries it again: at first start with nothing
// live, and for a newer commit beside the live one. A transient failure
// (a port taken, an interface missing) waiting for its backoff is tried
// at once by a poke too.
func TestPokeRetriesATerminalFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		live      bool // c1 applies first; the failing commit is c2
		transient bool
	}{{"first start", false, false}, {"newer commit", true, false}, {"transient, long backoff", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			const broken = "192.0.2.77:8080"
			var fixed atomic.Bool
			var calls atomic.Int32
			l := &Loop{Node: "lb-0", Retry: Backoff{Min: time.Hour, Max: time.Hour}, Dataplane: dataplaneFake(func(_ context.Context, cfg dataplane.Config) error {
				calls.Add(1)
				if !fixed.Load() && slices.ContainsFunc(cfg.Listeners, func(ln dataplane.Listener) bool { return ln.Bind.String() == broken }) {
					err := errors.New(`listener "http": no such address ` + broken)
					if tc.transient {
						return err
					}
					return terminalErr{err}
				}
				return nil
			})}
			src := make(chanSource)
			l.Source = src
			testkit.Run(t, l.Run)
			bad := mapFS(t, "../examples/homelab", map[string][][2]string{"edge.yaml": {{`bind: ":80"`, `bind: "` + broken + `"`}}})
			want := "c1"
			if tc.live {
				src <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil), Trigger: "poll"}
				testkit.WaitFor(t, "c1 live", func() bool { s := l.Status(); return s.Live != nil && s.Live.Commit == "c1" })
				want = "c2"
			}
			src <- Revision{Commit: want, Files: bad, Trigger: "poll"}
			testkit.WaitFor(t, want+" failed", func() bool {
				s := l.Status()
				return s.LastAttempt != nil && s.LastAttempt.Commit == want && s.LastAttempt.Result == ResultFailed
			})
			if c := l.Status().Conditions["dataplane"]; c.Status != map[bool]CondStatus{false: CondStalled, true: CondFailed}[tc.transient] {
				t.Fatalf("dataplane condition %+v", c)
			}
			before := calls.Load()
			fixed.Store(true) // the operator creates the address, then: systemctl reload
			l.Poke()
			testkit.WaitFor(t, want+" live after the poke", func() bool { s := l.Status(); return s.Live != nil && s.Live.Commit == want })
			st := l.Status()
			if st.LastAttempt.Trigger != TriggerRetry || st.Conditions["dataplane"].Status != CondReady {
				t.Errorf("after the poke: last attempt %+v, dataplane %+v", st.LastAttempt, st.Conditions["dataplane"])
			}
			if n := calls.Load() - before; n != 1 {
				t.Errorf("dataplane applied %d times for the poke, want 1 (the failed commit, once)", n)
			}
		})
	}
}
