package forge

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Kind is the forge's API dialect.
type Kind string

const (
	// GitHub and GitHub Enterprise Server: POST {api}/repos/{owner}/{name}/statuses/{sha}.
	GitHub Kind = "github"
	// Gitea and Forgejo: the same path and body as GitHub under /api/v1.
	Gitea Kind = "gitea"
	// GitLab: POST {api}/projects/{id}/statuses/{sha} under /api/v4.
	GitLab Kind = "gitlab"
)

// DefaultGitHubAPI is forge.api when kind is github and api is empty.
const DefaultGitHubAPI = "https://api.github.com"

// Description limits, in characters (Unicode code points), as each forge
// enforces them: GitHub answers 422 "description is too long (maximum is
// 140 characters)"; GitLab validates description and target_url at 255;
// Gitea stores a TEXT column and sets no limit, so 255 is our choice there
// (one line in its status list).
const (
	GitHubDescriptionLimit = 140
	GitLabDescriptionLimit = 255
	GiteaDescriptionLimit  = 255
	// GitLabTargetURLLimit is GitLab's limit on target_url (forge.statusURL).
	GitLabTargetURLLimit = 255
)

// ContextPrefix is put before the node's name to make the status context
// (GitHub, Gitea) or name (GitLab): "gitedge/lb-0". One context per node,
// so nodes never overwrite each other's status.
const ContextPrefix = "gitedge/"

// Config says which forge gets this node's commit statuses (the node
// config's `forge:` section, docs/node-config.md). The JSON names are the node
// config's; the fields tagged "-" are filled by the caller.
type Config struct {
	// Kind is github, gitea (also Forgejo) or gitlab. Required.
	Kind Kind `json:"kind"`
	// API is the base URL of the forge's REST API: https://api.github.com
	// (the default for github), https://ghe.example/api/v3,
	// https://gitea.example/api/v1, https://gitlab.example/api/v4. It must
	// not carry credentials, a query or a fragment.
	API string `json:"api,omitempty"`
	// Repository is OWNER/NAME for github and gitea, and the project's
	// path (group/sub/project) or numeric id for gitlab. Required.
	Repository string `json:"repository"`
	// TokenFile holds the API token. Required. It is read by New and read
	// again whenever the forge answers 401, so a rotated token is picked up
	// without a restart. The token never appears in logs, errors, String,
	// Format or JSON output.
	TokenFile string `json:"tokenFile"`
	// StatusURL is this node's status page, linked from each status
	// (target_url). Optional; "" links nothing.
	StatusURL string `json:"statusURL,omitempty"`

	// Node is this node's name; the status context is "gitedge/<Node>".
	// Required.
	Node string `json:"-"`
	// QueueSize bounds the commits waiting to be posted; when full, the
	// oldest commit's pending status is dropped. Default 64.
	QueueSize int `json:"-"`
	// Timeout bounds one request to the forge. Default 10s.
	Timeout time.Duration `json:"-"`
	// RetryMin and RetryMax bound the jittered exponential backoff between
	// attempts after a 5xx, a timeout or a network error. Defaults 1s and 5m.
	// A Retry-After (or GitHub's rate-limit reset) from the forge replaces
	// the backoff for that attempt.
	RetryMin time.Duration `json:"-"`
	RetryMax time.Duration `json:"-"`
	// GiveUpAfter bounds the time spent on one status: past it the status is
	// dropped with a log line and counted as failed. Default 1h.
	GiveUpAfter time.Duration `json:"-"`
}

// Context is the status context (GitHub, Gitea) or name (GitLab) this node
// posts under: "gitedge/<node>".
func (c Config) Context() string { return ContextPrefix + c.Node }

// DescriptionLimit is the longest description, in characters, this forge
// accepts.
func (c Config) DescriptionLimit() int {
	switch c.Kind {
	case GitHub:
		return GitHubDescriptionLimit
	case GitLab:
		return GitLabDescriptionLimit
	default:
		return GiteaDescriptionLimit
	}
}

// withDefaults returns c with every default applied; the one place
// defaults live.
func (c Config) withDefaults() Config {
	c.Kind = Kind(strings.ToLower(strings.TrimSpace(string(c.Kind))))
	if c.API == "" && c.Kind == GitHub {
		c.API = DefaultGitHubAPI
	}
	c.API = strings.TrimRight(strings.TrimSpace(c.API), "/")
	c.Repository = strings.Trim(strings.TrimSpace(c.Repository), "/")
	c.QueueSize = cmp.Or(c.QueueSize, 64)
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.RetryMin = cmp.Or(c.RetryMin, time.Second)
	c.RetryMax = cmp.Or(c.RetryMax, 5*time.Minute)
	c.GiveUpAfter = cmp.Or(c.GiveUpAfter, time.Hour)
	return c
}

// Validate checks c (after defaults) and returns every problem found, each
// named by its node-config field (forge.kind, forge.api, …).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	switch c.Kind {
	case GitHub, Gitea, GitLab:
	case "":
		add("forge.kind", "missing: github, gitea (also for Forgejo) or gitlab")
	default:
		add("forge.kind", "%q: expected github, gitea (also for Forgejo) or gitlab", c.Kind)
	}
	if c.API == "" {
		add("forge.api", "missing: the forge's API base URL, as https://gitea.example/api/v1 or https://gitlab.example/api/v4")
	} else if err := checkURL(c.API, false); err != nil {
		add("forge.api", "%v", err)
	}
	if err := checkRepository(c.Kind, c.Repository); err != nil {
		add("forge.repository", "%v", err)
	}
	if strings.TrimSpace(c.TokenFile) == "" {
		add("forge.tokenFile", "missing: a file holding an API token allowed to set commit statuses")
	}
	if c.StatusURL != "" {
		if err := checkURL(c.StatusURL, true); err != nil {
			add("forge.statusURL", "%v", err)
		} else if c.Kind == GitLab && utf8.RuneCountInString(c.StatusURL) > GitLabTargetURLLimit {
			add("forge.statusURL", "%d characters: GitLab accepts at most %d", utf8.RuneCountInString(c.StatusURL), GitLabTargetURLLimit)
		}
	}
	if strings.TrimSpace(c.Node) == "" {
		add("node", "missing: the node's name makes the status context gitedge/<node>")
	} else if strings.ContainsAny(c.Node, " \t\r\n") {
		add("node", "%q: no spaces allowed in the status context", c.Node)
	}
	if c.QueueSize < 0 {
		add("forge", "queue size %d: must be positive", c.QueueSize)
	}
	if c.Timeout < 0 || c.RetryMin < 0 || c.RetryMax < 0 || c.GiveUpAfter < 0 {
		add("forge", "negative timeout or retry bound")
	}
	if c.RetryMin > c.RetryMax {
		add("forge", "retry minimum %s above maximum %s", c.RetryMin, c.RetryMax)
	}
	return errors.Join(errs...)
}

// checkURL accepts an absolute http(s) URL without credentials; a query is
// allowed only in a link (the status page), never in the API base.
func checkURL(raw string, link bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("%q: expected an http:// or https:// URL", raw)
	}
	if u.Host == "" {
		return fmt.Errorf("%q: no host", raw)
	}
	if u.User != nil {
		return errors.New("has credentials in it: put the token in forge.tokenFile")
	}
	if !link && (u.RawQuery != "" || u.Fragment != "") {
		return fmt.Errorf("%q: no query or fragment allowed in the API base URL", raw)
	}
	return nil
}

// checkRepository checks the repository's form for the forge's API.
func checkRepository(kind Kind, repo string) error {
	if repo == "" {
		if kind == GitLab {
			return errors.New("missing: the project's path (group/project) or numeric id")
		}
		return errors.New("missing: OWNER/NAME")
	}
	if strings.ContainsAny(repo, " \t\r\n?#%") {
		return fmt.Errorf("%q: no spaces, '?', '#' or '%%' allowed", repo)
	}
	parts := strings.Split(repo, "/")
	for _, p := range parts {
		if p == "" || p == "." || p == ".." {
			return fmt.Errorf("%q: empty or dot path segment", repo)
		}
	}
	switch kind {
	case GitLab:
		if len(parts) == 1 {
			if _, err := strconv.ParseUint(repo, 10, 64); err != nil {
				return fmt.Errorf("%q: expected a project path (group/project) or a numeric id", repo)
			}
		}
	default:
		if len(parts) != 2 {
			return fmt.Errorf("%q: expected OWNER/NAME", repo)
		}
		if strings.HasSuffix(parts[1], ".git") {
			return fmt.Errorf("%q: the name without .git", repo)
		}
	}
	return nil
}
