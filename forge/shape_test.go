package forge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gitedge/gitedge/internal/testkit"
)

// The requests as each forge documents them:
//   - GitHub: POST /repos/{owner}/{repo}/statuses/{sha}, body {state,
//     target_url, description, context}, "Accept: application/vnd.github+json",
//     "X-GitHub-Api-Version", "Authorization: Bearer" (docs.github.com/rest/
//     commits/statuses#create-a-commit-status).
//   - Gitea/Forgejo: POST /repos/{owner}/{repo}/statuses/{sha}, body
//     CreateStatusOption {context, description, state, target_url},
//     "Authorization: token" (Gitea's swagger and api-usage page).
//   - GitLab: POST /projects/:id/statuses/:sha, id a number or the
//     URL-encoded path, body {state, name, target_url, description},
//     PRIVATE-TOKEN (docs.gitlab.com/api/commits#set-the-pipeline-status-of-a-commit).
func TestRequestShape(t *testing.T) {
	t.Parallel()
	type want struct {
		path    string
		headers map[string]string
		absent  []string // headers that must not be sent
		body    map[string]any
	}
	statusURL := "https://lb-0.example.org/status"
	tests := []struct {
		name  string
		cfg   Config
		state State
		desc  string
		want  want
	}{
		{"github pending", Config{Kind: GitHub, API: "/api/v3", Repository: "infra/edge", StatusURL: statusURL}, Pending, "", want{
			path: "/api/v3/repos/infra/edge/statuses/" + commitA,
			headers: map[string]string{
				"Authorization": "Bearer " + testToken, "Accept": "application/vnd.github+json",
				"X-Github-Api-Version": "2022-11-28", "Content-Type": "application/json", "User-Agent": "gitedge-forge",
			},
			absent: []string{"Private-Token"},
			body: map[string]any{"state": "pending", "context": "gitedge/lb-0",
				"description": "fetched; validating and applying", "target_url": statusURL},
		}},
		{"github failure", Config{Kind: GitHub, API: "/api/v3", Repository: "infra/edge"}, Failure, "routes/a.yaml:3: bad", want{
			path:    "/api/v3/repos/infra/edge/statuses/" + commitA,
			headers: map[string]string{"Authorization": "Bearer " + testToken},
			body:    map[string]any{"state": "failure", "context": "gitedge/lb-0", "description": "routes/a.yaml:3: bad"},
		}},
		{"gitea success", Config{Kind: Gitea, API: "/api/v1", Repository: "infra/edge", StatusURL: statusURL}, Success, "applied", want{
			path: "/api/v1/repos/infra/edge/statuses/" + commitA,
			headers: map[string]string{
				"Authorization": "token " + testToken, "Accept": "application/json", "Content-Type": "application/json",
			},
			absent: []string{"X-Github-Api-Version", "Private-Token"},
			body:   map[string]any{"state": "success", "context": "gitedge/lb-0", "description": "applied", "target_url": statusURL},
		}},
		{"gitea error", Config{Kind: Gitea, API: "/api/v1", Repository: "infra/edge"}, Error, "vm 101: 500", want{
			path: "/api/v1/repos/infra/edge/statuses/" + commitA,
			body: map[string]any{"state": "error", "context": "gitedge/lb-0", "description": "vm 101: 500"},
		}},
		{"gitlab path pending is running", Config{Kind: GitLab, API: "/api/v4", Repository: "infra/net/edge", StatusURL: statusURL}, Pending, "", want{
			path: "/api/v4/projects/infra%2Fnet%2Fedge/statuses/" + commitA,
			headers: map[string]string{
				"Private-Token": testToken, "Accept": "application/json", "Content-Type": "application/json",
			},
			absent: []string{"Authorization", "X-Github-Api-Version"},
			body: map[string]any{"state": "running", "name": "gitedge/lb-0",
				"description": "fetched; validating and applying", "target_url": statusURL},
		}},
		{"gitlab id failure is failed", Config{Kind: GitLab, API: "/api/v4", Repository: "42"}, Failure, "refused", want{
			path: "/api/v4/projects/42/statuses/" + commitA,
			body: map[string]any{"state": "failed", "name": "gitedge/lb-0", "description": "refused"},
		}},
		{"gitlab error is failed", Config{Kind: GitLab, API: "/api/v4", Repository: "infra/edge"}, Error, "x", want{
			path: "/api/v4/projects/infra%2Fedge/statuses/" + commitA,
			body: map[string]any{"state": "failed", "name": "gitedge/lb-0", "description": "x"},
		}},
		{"gitlab success", Config{Kind: GitLab, API: "/api/v4", Repository: "infra/edge"}, Success, "", want{
			path: "/api/v4/projects/infra%2Fedge/statuses/" + commitA,
			body: map[string]any{"state": "success", "name": "gitedge/lb-0", "description": "applied"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeForge()
			g := newRig(t, tt.cfg, f, false)
			g.r.Report(commitA, tt.state, tt.desc)
			s := f.Next(t)
			if s.Method != http.MethodPost {
				t.Errorf("method %s, want POST", s.Method)
			}
			if s.Path != tt.want.path {
				t.Errorf("path %s\nwant %s", s.Path, tt.want.path)
			}
			for k, v := range tt.want.headers {
				if got := s.Header.Get(k); got != v {
					t.Errorf("header %s: %q, want %q", k, got, v)
				}
			}
			for _, k := range tt.want.absent {
				if _, ok := s.Header[k]; ok {
					t.Errorf("header %s sent, want absent", k)
				}
			}
			body := decode(t, s.Body)
			if !reflect.DeepEqual(body, tt.want.body) {
				t.Errorf("body %v\nwant %v", body, tt.want.body)
			}
			for k, v := range body {
				if _, ok := v.(string); !ok {
					t.Errorf("body field %s is %T, want a string", k, v)
				}
			}
			waitLog(t, g.log, "forge status posted")
			snap := g.r.Snapshot()
			if len(snap.Statuses) != 1 || snap.Statuses[0].Commit != commitA || snap.Statuses[0].State != tt.state ||
				snap.Statuses[0].ForgeState != tt.want.body["state"] || snap.QueueLength != 0 || snap.LastError != "" {
				t.Errorf("snapshot %+v", snap)
			}
			if g.count(t, ResultPosted) != 1 {
				t.Errorf("%s{result=posted} = %v, want 1", MetricStatuses, g.count(t, ResultPosted))
			}
		})
	}
}

// GitHub answers 422 "description is too long (maximum is 140
// characters)"; GitLab validates at 255. A long multi-line error must
// arrive as one line of at most the limit, cut between characters.
func TestDescriptionCutToLimit(t *testing.T) {
	t.Parallel()
	first := `routes/blog.yaml:12: Route "blog": spec.http.backend: no Backend named "wéb-日本-🚀"`
	var lines []string
	for i := range 40 {
		lines = append(lines, fmt.Sprintf("  routes/r%02d.yaml:%d: Route \"r%d\": spec.http.host: «%s» taken", i, i+1, i, strings.Repeat("ü", i)))
	}
	long := first + "\n" + strings.Join(lines, "\n")
	for _, kind := range []Kind{GitHub, Gitea, GitLab} {
		t.Run(string(kind), func(t *testing.T) {
			t.Parallel()
			cfg := Config{Kind: kind, API: "/api", Repository: "infra/edge"}
			f := newFakeForge()
			g := newRig(t, cfg, f, false)
			g.r.Report(commitA, Failure, long)
			var body map[string]any
			json.Unmarshal(f.Next(t).Body, &body)
			d, _ := body["description"].(string)
			limit := cfg.DescriptionLimit()
			if !utf8.ValidString(d) || utf8.RuneCountInString(d) != limit || !strings.HasSuffix(d, "…") {
				t.Errorf("description (%d chars, valid %v) %q: want %d valid chars ending in …",
					utf8.RuneCountInString(d), utf8.ValidString(d), d, limit)
			}
			if strings.ContainsAny(d, "\n\r\t") || strings.Contains(d, "  ") {
				t.Errorf("description not one line: %q", d)
			}
			if !strings.HasPrefix(d, first+" routes/r00.yaml:1:") {
				t.Errorf("description %q does not start with the first error", d)
			}
		})
	}
}

// 4xx answers other than 401-with-a-new-token, 408, 409, 425 and 429 are
// given up at once: one request, a log line, a metric, and the Reporter
// keeps posting the next commits.
func TestRefusedIsGivenUp(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		code    int
		wantErr string
	}{
		{"401 same token", answer(401, `{"message":"Bad credentials"}`), 401,
			"answered 401 Unauthorized: Bad credentials: the forge refused the token; check forge.tokenFile"},
		{"403 no permission", answer(403, `{"message":"Resource not accessible by personal access token"}`), 403,
			"answered 403 Forbidden: Resource not accessible by personal access token: the token may not set commit statuses"},
		{"404", answer(404, `{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}`), 404,
			"answered 404 Not Found: Not Found: check forge.api and forge.repository"},
		{"422", answer(422, `{"message":"Validation Failed","errors":[{"resource":"Status","code":"custom","field":"description","message":"description is too long (maximum is 140 characters)"}]}`), 422,
			"answered 422 Unprocessable Entity: Validation Failed; description is too long (maximum is 140 characters)"},
		{"gitlab 400 validation", answer(400, `{"message":{"target_url":["is blocked"]}}`), 400,
			"answered 400 Bad Request: target_url: is blocked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeForge(tt.handler, created)
			g := newRig(t, Config{Kind: GitHub, API: "/api/v3", Repository: "infra/edge"}, f, false)
			g.r.Report(commitA, Success, "")
			f.Next(t)
			waitLog(t, g.log, "forge status given up")
			snap := g.r.Snapshot()
			if !strings.Contains(snap.LastError, tt.wantErr) || !strings.HasPrefix(snap.LastError, "success for 0123456789ab: ") || snap.LastErrorAt.IsZero() {
				t.Errorf("LastError %q at %v\nwant it to contain %q, with a time", snap.LastError, snap.LastErrorAt, tt.wantErr)
			}
			g.r.Report(commitB, Success, "")
			if s := f.Next(t); !strings.Contains(s.Path, commitB) {
				t.Fatalf("second request for %s, want %s", s.Path, commitB)
			}
			waitLog(t, g.log, "forge status posted")
			if n := len(f.Requests()); n != 2 {
				t.Errorf("%d requests, want 2 (no retry of the refused one)", n)
			}
			if g.count(t, ResultFailed) != 1 || g.count(t, ResultRetry) != 0 || g.count(t, ResultPosted) != 1 {
				t.Errorf("metrics failed=%v retry=%v posted=%v, want 1 0 1",
					g.count(t, ResultFailed), g.count(t, ResultRetry), g.count(t, ResultPosted))
			}
			// The next status was posted: the forge works again, the error
			// is history (log, metric), no longer shown.
			if snap := g.r.Snapshot(); snap.LastError != "" || !snap.LastErrorAt.IsZero() {
				t.Errorf("after a later success: LastError %q at %v, want none", snap.LastError, snap.LastErrorAt)
			}
			log := g.log.Text()
			if !strings.Contains(log, fmt.Sprintf(`"code":%d`, tt.code)) || !strings.Contains(log, `"commit":"`+commitA) {
				t.Errorf("give-up log line lacks code or commit:\n%s", log)
			}
		})
	}
}

// A 401 re-reads forge.tokenFile: a rotated token is used at once.
func TestTokenRotatedAfter401(t *testing.T) {
	t.Parallel()
	const newToken = "tok-ROTATED-8d1e44c0b6a2"
	auth := func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "token "+newToken {
			answer(401, `{"message":"token is required"}`)(w, r)
			return
		}
		created(w, r)
	}
	tokenFile := testkit.TempFile(t, "token", testToken)
	f := newFakeForge(auth)
	g := newRig(t, Config{Kind: Gitea, API: "/api/v1", Repository: "infra/edge", TokenFile: tokenFile}, f, false)
	if err := writeTokenFile(tokenFile, newToken+"\n"); err != nil {
		t.Fatal(err)
	}
	g.r.Report(commitA, Pending, "")
	first, second := f.Next(t), f.Next(t)
	if first.Header.Get("Authorization") != "token "+testToken || second.Header.Get("Authorization") != "token "+newToken {
		t.Errorf("Authorization %q then %q; want the old token then the rotated one",
			first.Header.Get("Authorization"), second.Header.Get("Authorization"))
	}
	waitLog(t, g.log, "forge status posted")
	if g.count(t, ResultPosted) != 1 || g.count(t, ResultFailed) != 0 {
		t.Errorf("posted=%v failed=%v", g.count(t, ResultPosted), g.count(t, ResultFailed))
	}
}

// GitLab refuses a repeated running (or pending) with 400 "Cannot
// transition status via :run from :running": the commit already shows it.
func TestGitLabRepeatedStateIsNoop(t *testing.T) {
	t.Parallel()
	f := newFakeForge(answer(400, `{"message":"Cannot transition status via :run from :running (Reason(s): Status cannot transition via \"run\")"}`))
	g := newRig(t, Config{Kind: GitLab, API: "/api/v4", Repository: "infra/edge"}, f, false)
	g.r.Report(commitA, Pending, "")
	f.Next(t)
	waitLog(t, g.log, "forge status posted")
	if g.count(t, ResultNoop) != 1 || g.count(t, ResultFailed) != 0 {
		t.Errorf("noop=%v failed=%v, want 1 0", g.count(t, ResultNoop), g.count(t, ResultFailed))
	}
	snap := g.r.Snapshot()
	if snap.LastError != "" || len(snap.Statuses) != 1 || snap.Statuses[0].ForgeState != "running" {
		t.Errorf("snapshot %+v", snap)
	}
	// The same 400 from GitHub is a refusal, not a no-op.
	f2 := newFakeForge(answer(400, `{"message":"Cannot transition status"}`))
	g2 := newRig(t, Config{Kind: GitHub, API: "", Repository: "infra/edge"}, f2, false)
	g2.r.Report(commitA, Pending, "")
	f2.Next(t)
	waitLog(t, g2.log, "forge status given up")
}

// Redirects are not followed: the token must reach forge.api only.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	elsewhere := newFakeForge()
	other := httptest.NewServer(elsewhere)
	t.Cleanup(other.Close)
	f := newFakeForge(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	})
	g := newRig(t, Config{Kind: GitLab, API: "/api/v4", Repository: "infra/edge"}, f, false)
	g.r.Report(commitA, Success, "")
	f.Next(t)
	waitLog(t, g.log, "forge status given up")
	if n := len(elsewhere.Requests()); n != 0 {
		t.Fatalf("the redirect target got %d requests (the token travelled)", n)
	}
	if !strings.Contains(g.r.Snapshot().LastError, "redirects are not followed") {
		t.Errorf("LastError %q", g.r.Snapshot().LastError)
	}
}

// Reporting the state a commit already shows posts nothing.
func TestReportIsIdempotent(t *testing.T) {
	t.Parallel()
	f := newFakeForge()
	g := newRig(t, Config{Kind: GitHub, API: "", Repository: "infra/edge"}, f, false)
	g.r.Report(commitA, Success, "applied")
	f.Next(t)
	waitLog(t, g.log, "forge status posted")
	g.r.Report(commitA, Success, "applied")
	g.r.Report(commitA, Success, "") // "" is the same default text
	g.r.Report(commitB, Pending, "") // a marker: when it is posted, the others were considered
	if s := f.Next(t); !strings.Contains(s.Path, commitB) {
		t.Fatalf("posted %s again", s.Path)
	}
	g.r.Report(commitA, Error, "apply failed: vm 101") // a new state is posted
	if s := f.Next(t); !strings.Contains(s.Path, commitA) || decode(t, s.Body)["state"] != "error" {
		t.Fatalf("got %s %s", s.Path, s.Body)
	}
}
