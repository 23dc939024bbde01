package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/forge"
	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/reconcile"
)

// forgeStatus is a GitHub commit status as the fake forge received it.
type forgeStatus struct {
	Commit      string `json:"-"`
	Auth        string `json:"-"`
	State       string `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description"`
	TargetURL   string `json:"target_url"`
}

// webhookEvent is a notification as the generic webhook receiver got it.
type webhookEvent struct {
	Kind     string `json:"kind"`
	Severity string `json:"severity"`
	Node     string `json:"node"`
	Commit   string `json:"commit"`
	Subject  struct {
		Backend string `json:"backend"`
		Server  string `json:"server"`
	} `json:"subject"`
	Message string `json:"message"`
}

// feedbackRig is a node pulling from a git daemon, posting statuses to a
// fake GitHub and notifications to two webhook receivers: one from
// warning up, one critical only.
type feedbackRig struct {
	*fleetNode
	forge, warn, crit *testkit.Receiver
	token             string
}

func newFeedbackRig(t *testing.T) *feedbackRig {
	r := &feedbackRig{fleetNode: newFleetNode(t), forge: testkit.NewReceiver(testkit.Answer(http.StatusCreated, `{"id":1}`, "Content-Type", "application/json")),
		warn: testkit.NewReceiver(), crit: testkit.NewReceiver(), token: "ghp-SECRET-feedback-7c1e"}
	forgeSrv, warnSrv, critSrv := httptest.NewServer(r.forge), httptest.NewServer(r.warn), httptest.NewServer(r.crit)
	t.Cleanup(forgeSrv.Close)
	t.Cleanup(warnSrv.Close)
	t.Cleanup(critSrv.Close)
	tokenFile := testkit.TempFile(t, "forge.token", r.token+"\n")
	testkit.WriteFile(t, r.config, fmt.Sprintf(`node: lb-0
source: {url: %q, branch: main, path: edge/, poll: "@every 1s"}
admin: {listen: %q}
stateDir: %s
forge: {kind: github, api: %q, repository: infra/edge, tokenFile: %s, statusURL: "http://%s/"}
notify:
  - {kind: webhook, url: %q, minSeverity: warning}
  - {kind: webhook, url: %q, minSeverity: critical}
`, r.remote.URL(), r.admin, r.state, forgeSrv.URL+"/api/v3", tokenFile, r.admin, warnSrv.URL+"/hook", critSrv.URL+"/hook"))
	return r
}

// statuses waits until the fake forge holds a status of commit in state
// final, and returns every status of that commit in the order received.
func (r *feedbackRig) statuses(t *testing.T, commit, final string) []forgeStatus {
	t.Helper()
	var got []forgeStatus
	testkit.WaitFor(t, "status "+final+" of "+commit[:12], func() bool {
		got = nil
		for _, q := range r.forge.Requests() {
			if q.Path != "/api/v3/repos/infra/edge/statuses/"+commit {
				continue
			}
			var s forgeStatus
			testkit.DecodeJSON(t, q.Body, &s)
			s.Commit, s.Auth = commit, q.Header.Get("Authorization")
			got = append(got, s)
		}
		return len(got) > 0 && got[len(got)-1].State == final
	})
	return got
}

// events decodes what a receiver got so far.
func events(t *testing.T, rc *testkit.Receiver) []webhookEvent {
	t.Helper()
	var out []webhookEvent
	for _, q := range rc.Requests() {
		var e webhookEvent
		testkit.DecodeJSON(t, q.Body, &e)
		out = append(out, e)
	}
	return out
}

func waitEvent(t *testing.T, rc *testkit.Receiver, what string, match func(webhookEvent) bool) webhookEvent {
	t.Helper()
	var found webhookEvent
	testkit.WaitFor(t, what, func() bool {
		for _, e := range events(t, rc) {
			if match(e) {
				found = e
				return true
			}
		}
		return false
	})
	return found
}

func countEvents(t *testing.T, rc *testkit.Receiver, kind string) int {
	n := 0
	for _, e := range events(t, rc) {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

// TestRunReportsToForgeAndNotifies runs `gitedge run` against a git daemon
// with a forge and two notification sinks configured, and pushes a good
// commit, a refused one and one that fails to apply. It proves the loop's
// events reach the forge as per-node commit statuses (pending then
// success; failure with the first error's file:line; error with the apply
// failure), that notifications follow each sink's minimum severity, that
// a repeated identical failure (the retries) is rate-limited, that a
// backend server failing its health checks is notified, and that the
// forge token shows nowhere.
func TestRunReportsToForgeAndNotifies(t *testing.T) {
	r := newFeedbackRig(t)
	// A backend whose only server never answers its health checks: a
	// server-down notification without root.
	files := maps.Clone(r.goodFiles)
	dead := testkit.QuietPort(t)
	files["dead.yaml"] = fmt.Sprintf("apiVersion: gitedge/v1\nkind: Backend\nmetadata: {name: dead}\nspec:\n"+
		"  healthCheck: {type: tcp, interval: 100ms, timeout: 100ms, rise: 1, fall: 1}\n  servers: [{name: gone, address: %q}]\n", dead)
	r.good = r.remote.commit("main", "good", files)
	r.remote.start()
	n := startNode(t, r.admin, "--config", r.config)

	t.Run("good commit: pending, then success", func(t *testing.T) {
		got := r.statuses(t, r.good, "success")
		// pending may be merged into success when both wait in the
		// forge queue at once (the latest state of a commit wins); it is
		// never after it.
		if len(got) > 2 || (len(got) == 2 && got[0].State != "pending") {
			t.Errorf("statuses of the good commit: %+v", got)
		}
		for _, s := range got {
			if s.Context != "gitedge/lb-0" || s.TargetURL != "http://"+r.admin+"/" || (s.Auth != "Bearer "+r.token && s.Auth != "token "+r.token) {
				t.Errorf("status %+v: want context gitedge/lb-0, target_url the node's status page, the token", s)
			}
		}
		t.Logf("statuses: %+v", got)
	})

	t.Run("server down", func(t *testing.T) {
		e := waitEvent(t, r.crit, "server down at the critical sink", func(e webhookEvent) bool { return e.Kind == "server-down" })
		if e.Subject.Backend != "dead" || e.Subject.Server != "gone" || e.Severity != "critical" || e.Node != "lb-0" ||
			!strings.Contains(e.Message, "no healthy server left") {
			t.Errorf("server-down event %+v", e)
		}
		t.Logf("server down: %+v", e)
	})

	t.Run("refused commit: failure with file:line", func(t *testing.T) {
		bad := maps.Clone(files)
		maps.Copy(bad, r.badFiles())
		r.bad = r.remote.commit("main", "dangling backend", bad)
		got := r.statuses(t, r.bad, "failure")
		last := got[len(got)-1]
		if !strings.HasPrefix(last.Description, `routes/a.yaml:6: Route "a": spec.http.backend: no Backend named "nope"`) {
			t.Errorf("failure description %q: want the first error with file:line", last.Description)
		}
		e := waitEvent(t, r.warn, "commit refused at the warning sink", func(e webhookEvent) bool { return e.Kind == "commit-refused" })
		if e.Commit != r.bad || e.Severity != "warning" || !strings.Contains(e.Message, `routes/a.yaml:6:`) {
			t.Errorf("commit-refused event %+v", e)
		}
		t.Logf("failure: %q; notified: %+v", last.Description, e)
	})

	t.Run("apply failure: error, notified once", func(t *testing.T) {
		// Another listener on a port someone else holds: the dataplane
		// cannot bind it, and the pass is retried.
		held := testkit.Listen(t)
		failing := maps.Clone(files)
		failing["edge.yaml"] = fmt.Sprintf("apiVersion: gitedge/v1\nkind: Edge\nmetadata: {name: test}\nspec:\n  listeners:\n"+
			"    - {name: http, bind: %q, mode: http, defaultBackend: one, drainTimeout: 2s}\n"+
			"    - {name: taken, bind: %q, mode: http, defaultBackend: two}\n", r.bind, held.Addr().String())
		commit := r.remote.commit("main", "a listener on a taken port", failing)
		got := r.statuses(t, commit, "error")
		if d := got[len(got)-1].Description; !strings.Contains(d, held.Addr().String()) || !strings.Contains(d, "address already in use") {
			t.Errorf("error description %q", d)
		}
		e := waitEvent(t, r.crit, "apply failed at the critical sink", func(e webhookEvent) bool { return e.Kind == "apply-failed" })
		if e.Commit != commit || e.Severity != "critical" {
			t.Errorf("apply-failed event %+v", e)
		}
		// The pass is retried and fails the same way: the repeat is held
		// back, not sent (notify's window is 5m).
		s, raw := n.waitStatus("the failed pass retried", func(s nodeStatus) bool {
			return s.LastAttempt != nil && s.LastAttempt.Commit == commit && s.LastAttempt.Trigger == reconcile.TriggerRetry &&
				s.Notify != nil && s.Notify.Sinks[1].Suppressed > 0
		})
		if c := countEvents(t, r.crit, "apply-failed"); c != 1 {
			t.Errorf("%d apply-failed notifications, want 1 (the retries' repeats held back)\n%s", c, indentJSON(raw))
		}
		if s.Live == nil || s.Live.Commit != r.good {
			t.Errorf("the node must keep serving the good commit: %+v", s.Live)
		}
		askUntil(t, r.bind, "one")
		t.Logf("error: %q; notified once: %+v", got[len(got)-1].Description, e)
	})

	t.Run("minimum severity", func(t *testing.T) {
		if c := countEvents(t, r.crit, "commit-refused"); c != 0 {
			t.Errorf("the critical-only sink got %d commit-refused (warning) notifications", c)
		}
		if c := countEvents(t, r.warn, "apply-failed"); c != 1 {
			t.Errorf("the warning sink got %d apply-failed notifications, want 1", c)
		}
	})

	t.Run("the token shows nowhere", func(t *testing.T) {
		_, raw := n.status()
		for what, s := range map[string]string{"the log": n.logs.String(), "/status": raw} {
			if strings.Contains(s, r.token) {
				t.Errorf("%s holds the forge token", what)
			}
		}
		var st struct {
			Forge json.RawMessage `json:"forge"`
		}
		if json.Unmarshal([]byte(raw), &st) != nil || len(st.Forge) == 0 {
			t.Errorf("/status has no forge section: %s", raw)
		}
		resp, err := http.Get("http://" + r.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), r.token) {
			t.Error("/metrics holds the forge token")
		}
	})
}

// fakeRevisions is a revisionSource answering one error.
type fakeRevisions struct{ err error }

func (f fakeRevisions) Next(context.Context) (gitsource.Revision, error) {
	return gitsource.Revision{}, f.err
}
func (fakeRevisions) Trigger(gitsource.Trigger) {}

// TestSourceAdapterNamesTheRefusedCommit: a head the source refuses for
// good (a bad signature) reaches the loop with its commit, so the forge
// gets its failure status; a transient failure names none (the source
// retries it by itself, and it is no verdict on a commit).
func TestSourceAdapterNamesTheRefusedCommit(t *testing.T) {
	const c = "0123456789abcdef0123456789abcdef01234567"
	for _, tt := range []struct {
		reason, want string
	}{
		{gitsource.ReasonUntrusted, c},
		{gitsource.ReasonUnreachable, ""},
	} {
		err := &gitsource.Error{Step: gitsource.StepVerify, Reason: tt.reason, Commit: c, Err: errors.New("x")}
		rev, got := sourceAdapter{src: fakeRevisions{err}}.Next(context.Background())
		if rev.Commit != tt.want || !errors.Is(got, err) {
			t.Errorf("%s: revision commit %q, error %v; want %q", tt.reason, rev.Commit, got, tt.want)
		}
	}
}

// TestFeedbackKeepsInfraErrorsVisible: a commit whose VM pass failed
// stays "error" on the forge through resyncs of its routes, and turns
// "success" again once a VM pass converges.
func TestFeedbackKeepsInfraErrorsVisible(t *testing.T) {
	hook := testkit.NewReceiver(testkit.Answer(http.StatusCreated, `{"id":1}`))
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	fr, err := forge.New(forge.Config{Kind: forge.GitHub, API: srv.URL, Repository: "infra/edge", Node: "lb-0",
		TokenFile: testkit.TempFile(t, "token", "tok\n")}, forge.Options{})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Run(t, fr.Run)
	fb := &feedback{forge: fr}
	c1, c2 := strings.Repeat("1", 40), strings.Repeat("2", 40)
	next := func() string {
		t.Helper()
		q := hook.Next(t)
		var s forgeStatus
		testkit.DecodeJSON(t, q.Body, &s)
		return q.Path[strings.LastIndex(q.Path, "/")+1:][:1] + " " + s.State + " " + s.Description
	}
	steps := []struct {
		e    reconcile.Event
		want string // the next status posted; "" none
	}{
		{reconcile.Event{Kind: reconcile.EventFetched, Rev: reconcile.Revision{Commit: c1}}, "1 pending fetched; validating and applying"},
		{reconcile.Event{Kind: reconcile.EventApplied, Rev: reconcile.Revision{Commit: c1}}, "1 success applied"},
		{reconcile.Event{Kind: reconcile.EventInfra, Rev: reconcile.Revision{Commit: c1}, Err: errors.New("proxmox1: 500 internal error"), Infra: &infra.Result{Leader: true}},
			"1 error infra: proxmox1: 500 internal error"},
		{reconcile.Event{Kind: reconcile.EventApplied, Rev: reconcile.Revision{Commit: c1, Trigger: reconcile.TriggerResync}}, ""},
		{reconcile.Event{Kind: reconcile.EventFetched, Rev: reconcile.Revision{Commit: c2}}, "2 pending fetched; validating and applying"},
		{reconcile.Event{Kind: reconcile.EventInfra, Rev: reconcile.Revision{Commit: c1}, Infra: &infra.Result{Leader: true}}, "1 success applied"},
	}
	for i, s := range steps {
		fb.Observe(s.e)
		if s.want == "" {
			continue
		}
		if got := next(); got != s.want {
			t.Errorf("step %d (%s): posted %q, want %q", i, s.e.Kind, got, s.want)
		}
	}
}

// TestRunWithoutForgeToken: a forge token file that is missing keeps the
// forge quiet, never the node: it starts, serves the commit and says why
// no status is posted (review of issue 14: it refused to start).
func TestRunWithoutForgeToken(t *testing.T) {
	r := newFeedbackRig(t)
	cfg, err := os.ReadFile(r.config)
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "nope.token")
	cfg = regexp.MustCompile(`tokenFile: [^,]+,`).ReplaceAll(cfg, []byte("tokenFile: "+missing+","))
	testkit.WriteFile(t, r.config, string(cfg))
	r.good = r.remote.commit("main", "good", r.goodFiles)
	r.remote.start()
	n := startNode(t, r.admin, "--config", r.config)
	n.waitStatus("the good commit live", func(s nodeStatus) bool { return s.Live != nil && s.Live.Commit == r.good })
	n.waitLog("commit statuses are off until the node config is fixed")
	if !strings.Contains(n.logs.String(), missing) {
		t.Errorf("the log does not name the missing token file %s", missing)
	}
	if got := len(r.forge.Requests()); got != 0 {
		t.Errorf("%d requests reached the forge without a token", got)
	}
}
