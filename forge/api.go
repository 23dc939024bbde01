package forge

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gitedge/gitedge/internal/deliver"
)

// State is what the node says about a commit.
type State string

const (
	// Pending: the node fetched the commit and is validating and applying
	// it. GitLab gets "running" (its "pending" means waiting for a runner).
	Pending State = "pending"
	// Success: the commit is applied and live on the node.
	Success State = "success"
	// Failure: the commit was refused (parse, validation or signature);
	// the node keeps serving its last good commit. GitLab gets "failed".
	Failure State = "failure"
	// Error: the commit was valid but applying it failed. GitLab gets
	// "failed".
	Error State = "error"
)

func (s State) valid() bool {
	switch s {
	case Pending, Success, Failure, Error:
		return true
	}
	return false
}

// defaultDescription is sent when the caller gives none.
func (s State) defaultDescription() string {
	switch s {
	case Pending:
		return "fetched; validating and applying"
	case Success:
		return "applied"
	case Failure:
		return "refused; the node keeps its last good commit"
	default:
		return "apply failed"
	}
}

// forgeState is s in the forge's vocabulary. GitHub and Gitea take
// pending, success, failure and error; GitLab takes pending, running,
// success, failed and canceled.
func forgeState(k Kind, s State) string {
	if k != GitLab {
		return string(s)
	}
	switch s {
	case Pending:
		return "running"
	case Success:
		return "success"
	default:
		return "failed"
	}
}

// GitHubAPIVersion is the REST API version gitedge asks GitHub for. It is
// the first dated version, the one every GitHub Enterprise Server with
// versioned APIs knows, and the commit-status endpoint is the same in
// later versions.
const GitHubAPIVersion = "2022-11-28"

// userAgent is sent on every request; GitHub refuses requests without one.
const userAgent = "gitedge-forge"

// githubBody is the JSON body for GitHub and Gitea (CreateStatusOption).
type githubBody struct {
	State       string `json:"state"`
	Context     string `json:"context"`
	Description string `json:"description,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
}

// gitlabBody is the JSON body for GitLab's POST /projects/:id/statuses/:sha.
type gitlabBody struct {
	State       string `json:"state"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	TargetURL   string `json:"target_url,omitempty"`
}

// endpoint is the URL a status for commit is posted to. Path segments are
// escaped; a GitLab project path keeps its slashes as %2F, as GitLab's
// "URL-encoded path of the project" requires.
func endpoint(c Config, commit string) string {
	switch c.Kind {
	case GitLab:
		return c.API + "/projects/" + url.PathEscape(c.Repository) + "/statuses/" + commit
	default:
		owner, name, _ := strings.Cut(c.Repository, "/")
		return c.API + "/repos/" + url.PathEscape(owner) + "/" + url.PathEscape(name) + "/statuses/" + commit
	}
}

// newRequest builds the POST for one status.
func newRequest(ctx context.Context, c Config, tok token, it item) (*http.Request, error) {
	var body any
	switch c.Kind {
	case GitLab:
		body = gitlabBody{State: forgeState(c.Kind, it.state), Name: c.Context(), Description: it.desc, TargetURL: c.StatusURL}
	default:
		body = githubBody{State: forgeState(c.Kind, it.state), Context: c.Context(), Description: it.desc, TargetURL: c.StatusURL}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint(c, it.commit), bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	switch c.Kind {
	case GitHub:
		// docs.github.com/rest/commits/statuses: Accept, API version, Bearer.
		req.Header.Set("Accept", "application/vnd.github+json")
		req.Header.Set("X-GitHub-Api-Version", GitHubAPIVersion)
		req.Header.Set("Authorization", "Bearer "+tok.v)
	case Gitea:
		// docs.gitea.com/development/api-usage: "Authorization: token …".
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "token "+tok.v)
	case GitLab:
		// docs.gitlab.com/api/rest/authentication: PRIVATE-TOKEN header.
		req.Header.Set("Accept", "application/json")
		req.Header.Set("PRIVATE-TOKEN", tok.v)
	}
	return req, nil
}

// verdict is what to do after one attempt.
type verdict int

const (
	posted verdict = iota // accepted
	noop                  // the forge already had this state
	retry                 // try again after a wait
	reauth                // 401: re-read the token, then maybe try again
	fail                  // give up
)

// outcome is the result of one attempt.
type outcome struct {
	v    verdict
	code int           // HTTP status; 0 for a network error or timeout
	wait time.Duration // what the forge asked for (Retry-After, rate-limit reset); 0 when nothing
	err  error         // why it did not post; never holds the token
}

// maxErrorBody bounds the bytes of an error response read for its message.
const maxErrorBody = 8 << 10

// classify maps a response onto a verdict. Only 5xx, 408, 409 (GitLab's
// "another update to this commit status is in progress"), 425, 429, and a
// 403 that carries a rate-limit wait are retried: any other 4xx will not
// change by trying again.
func classify(k Kind, resp *http.Response, body []byte, now time.Time) outcome {
	code := resp.StatusCode
	o := outcome{code: code}
	if code >= 200 && code < 300 {
		o.v = posted
		return o
	}
	msg := apiMessage(body)
	wait, asked := serverWait(resp.Header, now)
	if asked {
		o.wait = wait
	}
	answer := fmt.Sprintf("answered %s", resp.Status)
	if msg != "" {
		answer += ": " + msg
	}
	switch {
	case code >= 300 && code < 400:
		o.v = fail
		o.err = fmt.Errorf("%s to %q: redirects are not followed (the token must not travel); set forge.api to the final URL", answer, resp.Header.Get("Location"))
	case code == http.StatusBadRequest && k == GitLab && strings.Contains(msg, "Cannot transition status"):
		// GitLab refuses running → running (and pending → pending) with
		// 400 "Cannot transition status via :run from :running": the
		// commit already shows this state.
		o.v = noop
	case code == http.StatusUnauthorized:
		o.v = reauth
		o.err = fmt.Errorf("%s: the forge refused the token; check forge.tokenFile", answer)
	case code == http.StatusForbidden && asked:
		o.v = retry
		o.err = fmt.Errorf("%s (rate limited)", answer)
	case code == http.StatusForbidden:
		o.v = fail
		o.err = fmt.Errorf("%s: the token may not set commit statuses (GitHub: statuses write; Gitea: write:repository; GitLab: api scope with the Developer role)", answer)
	case code == http.StatusNotFound:
		o.v = fail
		o.err = fmt.Errorf("%s: check forge.api and forge.repository, and that the commit was pushed to this forge", answer)
	case code == http.StatusRequestTimeout, code == http.StatusConflict, code == http.StatusTooEarly,
		code == http.StatusTooManyRequests, code >= 500:
		o.v = retry
		o.err = fmt.Errorf("%s", answer)
	default:
		o.v = fail
		o.err = fmt.Errorf("%s", answer)
	}
	return o
}

// readBody reads at most maxErrorBody bytes of an error response.
func readBody(resp *http.Response) []byte {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	return b
}

// apiMessage extracts the human part of a forge's error body: GitHub's
// {"message", "errors": [{"message"}]}, Gitea's {"message"} and GitLab's
// {"message": "…"} or {"message": {"field": ["…"]}}; any other body gives
// its first 200 characters on one line.
func apiMessage(body []byte) string {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return ""
	}
	var doc struct {
		Message any `json:"message"`
		Errors  any `json:"errors"`
		Error   any `json:"error"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return deliver.Cut(string(body), 200)
	}
	var parts []string
	for _, v := range []any{doc.Message, doc.Error, doc.Errors} {
		flatten(v, "", &parts)
	}
	parts = slices.Compact(parts)
	return deliver.Cut(strings.Join(parts, "; "), 300)
}

// flatten collects the strings in a decoded JSON value, prefixing those
// under an object key with the key ("description: is too long").
func flatten(v any, key string, out *[]string) {
	switch x := v.(type) {
	case string:
		if x == "" {
			return
		}
		if key != "" {
			x = key + ": " + x
		}
		*out = append(*out, x)
	case []any:
		for _, e := range x {
			flatten(e, key, out)
		}
	case map[string]any:
		if m, ok := x["message"].(string); ok { // GitHub's errors[] items
			flatten(m, key, out)
			return
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			flatten(x[k], k, out)
		}
	}
}
