package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testRecord() *Record {
	return &Record{Commit: "0123456789abcdef0123456789abcdef01234567", Signer: "ops <ops@example.org> (ABCD)", Author: "A <a@example.org>",
		Message: "add blog", AppliedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		Files: Files{"edge.yaml": []byte(linkEdge), "routes/blog.yaml": []byte(linkRoute), "odd.yaml": {0xff, 0xfe, '\n'}}}
}

func TestStateFileRoundTrip(t *testing.T) {
	s := NewStateFile(filepath.Join(t.TempDir(), "state"))
	if r, err := s.Load(); r != nil || err != nil {
		t.Fatalf("nothing recorded yet: %v %v", r, err)
	}
	want := testRecord()
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	got, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	// A second save replaces the first and leaves no temporary file.
	want.Commit = "fedcba9876543210fedcba9876543210fedcba98"
	if err := s.Save(want); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Load(); got.Commit != want.Commit {
		t.Errorf("second save: %s", got.Commit)
	}
	entries, _ := os.ReadDir(filepath.Dir(s.Path))
	if len(entries) != 1 {
		t.Errorf("state directory holds %d entries, want the record alone", len(entries))
	}
	if st, _ := os.Stat(s.Path); st.Mode().Perm() != 0o600 {
		t.Errorf("record mode %v: it holds the repository (secrets): want 0600", st.Mode().Perm())
	}
}

// TestStateFileRefusesDamage: a half-written, corrupted or foreign record
// is refused with an error naming the file, never half-used.
func TestStateFileRefusesDamage(t *testing.T) {
	good, err := encodeRecord(testRecord())
	if err != nil {
		t.Fatal(err)
	}
	header, _, _ := bytes.Cut(good, []byte("\n"))
	flipped := bytes.Clone(good)
	flipped[len(flipped)-10] ^= 0x20
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "half-written: no header line"},
		{"header only", append(bytes.Clone(header), '\n'), "half-written: 0 bytes of a"},
		{"cut in the body", good[:len(good)-100], "half-written: "},
		{"a byte flipped", flipped, "corrupted: the checksum does not match"},
		{"another file", []byte("hello\nworld"), "not a gitedge state record (bad header line)"},
		{"a newer format", bytes.Replace(good, []byte("last-applied 1 "), []byte("last-applied 2 "), 1), "format version 2, this gitedge reads version 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStateFile(t.TempDir())
			if err := os.WriteFile(s.Path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			r, err := s.Load()
			if r != nil || err == nil || !strings.HasPrefix(err.Error(), "state record "+s.Path+": ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, %v; want an error naming %s: %s", r, err, s.Path, tt.want)
			}
		})
	}
}

func FuzzDecodeRecord(f *testing.F) {
	good, _ := encodeRecord(testRecord())
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("gitedge-last-applied 1 sha256:00 2\n{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRecord(data)
		if err != nil {
			return
		}
		again, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := decodeRecord(again)
		if err != nil || !cmp.Equal(r, r2) {
			t.Fatalf("a decoded record does not round-trip: %v", err)
		}
	})
}

// gatedSource hands over revisions from a channel and notes, on its first
// call, what the subsystems had been asked by then.
type gatedSource struct {
	ch        chan Revision
	rec       *recorder
	once      sync.Once
	firstCall chan []string
}

func newGatedSource(rec *recorder) *gatedSource {
	return &gatedSource{ch: make(chan Revision), rec: rec, firstCall: make(chan []string, 1)}
}

func (g *gatedSource) Next(ctx context.Context) (Revision, error) {
	g.once.Do(func() { g.firstCall <- g.rec.take() })
	select {
	case r := <-g.ch:
		return r, nil
	case <-ctx.Done():
		return Revision{}, ctx.Err()
	}
}

// TestRestartServesLastApplied is issue 9's defect 1 at the loop: a node
// applied c1, refused c2; restarted, it applies c1 from its record before
// it asks the source for anything, and the refused tip changes nothing.
func TestRestartServesLastApplied(t *testing.T) {
	state := NewStateFile(t.TempDir())
	good := mapFS(t, "../examples/homelab", nil)
	bad := mapFS(t, "../examples/homelab", map[string][][2]string{"routes/blog.yaml": {{"k3s-http-ingress", "nope"}}})

	// First life: c1 applied and recorded, c2 refused.
	rec := &recorder{}
	l := rec.loop("lb-0")
	l.State = state
	if res, err := l.Pass(context.Background(), Revision{Commit: "c1", Files: good, Author: "A", Message: "good"}, nil); res != ResultApplied {
		t.Fatal(res, err)
	}
	if res, _ := l.Pass(context.Background(), Revision{Commit: "c2", Files: bad}, nil); res != ResultInvalid {
		t.Fatal(res)
	}
	r, err := state.Load()
	if err != nil || r.Commit != "c1" || r.Author != "A" || r.Message != "good" || !cmp.Equal(r.Files, Files(filesOf(t, good))) {
		t.Fatalf("record after c1, c2: %v, %v", r != nil && r.Commit == "c1", err)
	}

	// Second life: the source hands over the refused tip (from its cache,
	// or fetched: the same to the loop).
	rec = &recorder{}
	l = rec.loop("lb-0")
	l.State = state
	reg := prometheus.NewRegistry()
	l.Metrics = NewMetrics(reg)
	src := newGatedSource(rec)
	l.Source = src
	testkit.Run(t, l.Run)
	select {
	case before := <-src.firstCall:
		// Infra has its own worker: it may or may not have run yet.
		before = slices.DeleteFunc(before, func(c string) bool { return strings.HasPrefix(c, "infra") })
		if want := []string{"dataplane 3 routes", "failover priority 100"}; !cmp.Equal(before, want) {
			t.Fatalf("applied before the first fetch: %q, want %q", before, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the source was never asked")
	}
	st := l.Status()
	if st.Live == nil || st.Live.Commit != "c1" || !st.Live.Restored || st.LastAttempt.Trigger != TriggerRestart {
		t.Fatalf("after the restore: live %+v, last attempt %+v", st.Live, st.LastAttempt)
	}
	if c := st.Conditions["state"]; c.Status != CondReady || !strings.HasPrefix(c.Message, "restored commit c1, recorded ") {
		t.Errorf("state condition %+v", c)
	}
	src.ch <- Revision{Commit: "c2", Files: bad, Trigger: "start: from cache: remote unreachable"}
	testkit.WaitFor(t, "the refused tip", func() bool { return l.Status().LastAttempt.Commit == "c2" })
	st = l.Status()
	if st.Live.Commit != "c1" || st.Conditions["config"].Status != CondStalled || st.Conditions["live"].Status != CondReady {
		t.Errorf("after the refused tip: live %+v, conditions %+v", st.Live, st.Conditions)
	}
	// The tip fixed: it applies and is recorded.
	src.ch <- Revision{Commit: "c3", Files: good, Trigger: "poll"}
	testkit.WaitFor(t, "c3", func() bool { return l.Status().Live.Commit == "c3" })
	if r, _ := state.Load(); r.Commit != "c3" {
		t.Errorf("record holds %s after c3", r.Commit)
	}
	if l.Status().Live.Restored {
		t.Error("live still marked restored after a fetched commit applied")
	}
	// The pass's counters follow its status (Pass updates them after
	// releasing the status lock): wait for c3's.
	unchanged := func() float64 { return testutil.ToFloat64(l.Metrics.passes.WithLabelValues("unchanged")) }
	testkit.WaitFor(t, "c3's pass counted", func() bool { return unchanged() >= 1 })
	if a, u := testutil.ToFloat64(l.Metrics.passes.WithLabelValues("applied")), unchanged(); a != 1 || u != 1 {
		t.Errorf("applied passes %v, unchanged %v, want 1 (the restore) and 1 (c3, the same content)", a, u)
	}
}

// TestRestartWithADamagedRecord: a corrupted record is logged naming the
// file, reported, and the node fetches as on a first start.
func TestRestartWithADamagedRecord(t *testing.T) {
	state := NewStateFile(t.TempDir())
	good, _ := encodeRecord(testRecord())
	if err := os.WriteFile(state.Path, good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testkit.SyncBuffer
	rec := &recorder{}
	l := rec.loop("lb-0")
	l.State = state
	l.Metrics = NewMetrics(prometheus.NewRegistry())
	l.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	src := newGatedSource(rec)
	l.Source = src
	testkit.Run(t, l.Run)
	if before := <-src.firstCall; len(before) != 0 {
		t.Fatalf("applied something from a damaged record: %q", before)
	}
	if c := l.Status().Conditions["state"]; c.Status != CondFailed || !strings.Contains(c.Message, state.Path+": half-written") {
		t.Errorf("state condition %+v", c)
	}
	if want := `level=ERROR msg="the last applied record cannot be used; fetching instead" subsystem=reconcile error="state record ` + state.Path + `: half-written: `; !strings.Contains(logs.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logs.String())
	}
	if n := testutil.ToFloat64(l.Metrics.stateErrors.WithLabelValues("load")); n != 1 {
		t.Errorf("%s{op=load} = %v", MetricStateErrors, n)
	}
	src.ch <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}
	testkit.WaitFor(t, "c1", func() bool { st := l.Status(); return st.Live != nil && st.Live.Commit == "c1" })
	if r, err := state.Load(); err != nil || r.Commit != "c1" {
		t.Errorf("the damaged record was not replaced: %v %v", r, err)
	}
}

// TestFirstStartWithABadTip: nothing to serve; the status says so and the
// loop keeps waiting for a better commit.
func TestFirstStartWithABadTip(t *testing.T) {
	rec := &recorder{}
	l := rec.loop("lb-0")
	l.State = NewStateFile(t.TempDir())
	src := newGatedSource(rec)
	l.Source = src
	testkit.Run(t, l.Run)
	src.ch <- Revision{Commit: "bad1234567890", Files: mapFS(t, "../examples/homelab", map[string][][2]string{"routes/blog.yaml": {{"k3s-http-ingress", "nope"}}})}
	testkit.WaitFor(t, "the refusal", func() bool { return l.Status().LastAttempt != nil })
	st := l.Status()
	b, _ := json.Marshal(st)
	if !strings.Contains(string(b), `"live":null`) {
		t.Errorf("status JSON lacks \"live\":null: %s", b)
	}
	if c := st.Conditions["live"]; c.Status != CondStalled || c.Message != "no commit applied yet: commit bad123456789 was refused (see config); waiting for a new commit" {
		t.Errorf("live condition %+v", c)
	}
	if calls := rec.take(); len(calls) != 0 {
		t.Errorf("a refused commit reached the subsystems: %q", calls)
	}
	// Still running: a good commit is applied.
	src.ch <- Revision{Commit: "good", Files: mapFS(t, "../examples/homelab", nil)}
	testkit.WaitFor(t, "the good commit", func() bool { st := l.Status(); return st.Live != nil && st.Live.Commit == "good" })
	if c := l.Status().Conditions["live"]; c.Status != CondReady {
		t.Errorf("live condition after a good commit: %+v", c)
	}
}

// TestRecordFailureNeverFailsAPass: a state directory that cannot be
// written (here a regular file stands where the directory should be; a
// full disk is tested through gitedge run) is reported and the commit is
// applied all the same; the write is retried on the next pass.
func TestRecordFailureNeverFailsAPass(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "state")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var logs testkit.SyncBuffer
	rec := &recorder{}
	l := rec.loop("lb-0")
	l.State = NewStateFile(blocker)
	l.Metrics = NewMetrics(prometheus.NewRegistry())
	l.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	good := Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}
	if res, err := l.Pass(context.Background(), good, nil); res != ResultApplied || err != nil {
		t.Fatalf("%s %v", res, err)
	}
	c := l.Status().Conditions["state"]
	if c.Status != CondFailed || !strings.Contains(c.Message, "cannot record commit c1: state record "+blocker+"/last-applied: ") ||
		!strings.HasSuffix(c.Message, "a restart would apply the last commit fetched and valid instead; retried on the next pass") {
		t.Errorf("state condition %+v", c)
	}
	if !strings.Contains(logs.String(), `msg="recording the last applied commit failed; serving it anyway"`) {
		t.Errorf("log:\n%s", logs.String())
	}
	if n := testutil.ToFloat64(l.Metrics.stateErrors.WithLabelValues("save")); n != 1 {
		t.Errorf("%s{op=save} = %v", MetricStateErrors, n)
	}
	// Space is back: the next pass (a resync) records it.
	os.Remove(blocker)
	good.Trigger = TriggerResync
	if res, _ := l.Pass(context.Background(), good, nil); res != ResultUnchanged {
		t.Fatal(res)
	}
	if r, err := l.State.Load(); err != nil || r == nil || r.Commit != "c1" {
		t.Fatalf("not recorded on the next pass: %v %v", r, err)
	}
	if c := l.Status().Conditions["state"]; c.Status != CondReady {
		t.Errorf("state condition after the retry %+v", c)
	}
}

// TestRecordOnlyAfterEveryStep: a commit that a subsystem failed to apply
// is not recorded: the record is the last good *applied* state.
func TestRecordOnlyAfterEveryStep(t *testing.T) {
	state := NewStateFile(t.TempDir())
	l := &Loop{Node: "lb-0", State: state,
		Dataplane: dataplaneFake(func(context.Context, dataplane.Config) error { return errors.New("bind :80: address in use") })}
	if res, _ := l.Pass(context.Background(), Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}, nil); res != ResultFailed {
		t.Fatal(res)
	}
	if r, err := state.Load(); r != nil || err != nil {
		t.Fatalf("a commit that failed to apply was recorded: %+v %v", r, err)
	}
	l.DryRun = true
	l.Dataplane = nil
	if res, _ := l.Pass(context.Background(), Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}, nil); res != ResultPlanned {
		t.Fatal(res)
	}
	if r, _ := state.Load(); r != nil {
		t.Fatal("a dry run recorded")
	}
}

func filesOf(t *testing.T, fsys fs.FS) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		out[p], err = fs.ReadFile(fsys, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
