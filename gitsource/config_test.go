package gitsource

import (
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	ok := Config{URL: "https://git.example.org/infra/edge.git", StateDir: "/var/lib/gitedge"}
	cases := []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"ssh", func(c *Config) { c.URL = "ssh://git@git.example.org:2222/infra/edge.git" }, ""},
		{"scp", func(c *Config) { c.URL = "git@git.example.org:infra/edge.git" }, ""},
		{"path", func(c *Config) { c.URL = "./routes-repo" }, ""},
		{"no url", func(c *Config) { c.URL = "" }, "source.url: missing"},
		{"password in url", func(c *Config) { c.URL = "https://bob:hunter2@git.example.org/r.git" }, "has a password in it"},
		{"scheme", func(c *Config) { c.URL = "ftp://git.example.org/r.git" }, `scheme "ftp"`},
		{"two pins", func(c *Config) { c.Branch, c.Tag = "main", "v1" }, "only one of branch, tag and commit"},
		{"short commit", func(c *Config) { c.Commit = "abc123" }, "full 40-hex"},
		{"policy", func(c *Config) { c.ForcePush = "sometimes" }, `"sometimes": expected follow or refuse`},
		{"shallow refuse", func(c *Config) { c.Depth, c.ForcePush = 1, ForcePushRefuse }, "cannot prove a fast-forward"},
		{"poll", func(c *Config) { c.Poll = "every minute" }, "source.poll"},
		{"no state", func(c *Config) { c.StateDir = "" }, "stateDir: missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if err != nil && strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
	if got := (Config{}).Ref(); got != "refs/heads/main" {
		t.Fatal(got)
	}
	if got := (Config{Tag: "v1"}).Ref(); got != "refs/tags/v1" {
		t.Fatal(got)
	}
}

func TestNormalizeURL(t *testing.T) {
	t.Parallel()
	for in, proto := range map[string]string{
		"git@git.example.org:infra/edge.git": "ssh",
		"git.example.org:infra/edge.git":     "ssh",
		"ssh://git@h:2222/r.git":             "ssh",
		"https://h/r.git":                    "https",
		"/srv/git/edge.git":                  "file",
		"relative/edge.git":                  "file",
	} {
		u, err := normalizeURL(in)
		if err != nil {
			t.Fatal(err)
		}
		ep, err := transport.NewEndpoint(u)
		if err != nil || ep.Protocol != proto {
			t.Errorf("%s → %s: protocol %v (%v), want %s", in, u, ep, err, proto)
		}
		if proto == "file" && !strings.HasPrefix(u, "/") {
			t.Errorf("%s → %s: not absolute", in, u)
		}
	}
	if got := displayURL("https://bob@h/r.git"); got != "https://bob@h/r.git" {
		t.Fatal(got)
	}
}
