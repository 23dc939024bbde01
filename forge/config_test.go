package forge

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	long := "https://lb-0.example.org/" + strings.Repeat("x", 240)
	base := Config{Kind: GitHub, Repository: "infra/edge", TokenFile: "/etc/gitedge/forge.token", Node: "lb-0"}
	with := func(f func(*Config)) Config { c := base; f(&c); return c }
	tests := []struct {
		name string
		cfg  Config
		want []string // every substring must be in the error; none means valid
	}{
		{"github defaults its api", base, nil},
		{"gitea", with(func(c *Config) { c.Kind = Gitea; c.API = "https://git.example.org/api/v1/" }), nil},
		{"gitlab path", with(func(c *Config) {
			c.Kind = GitLab
			c.API = "https://gitlab.example.org/api/v4"
			c.Repository = "infra/net/edge"
		}), nil},
		{"gitlab id", with(func(c *Config) { c.Kind = GitLab; c.API = "https://gitlab.example.org/api/v4"; c.Repository = "42" }), nil},
		{"kind is case-insensitive", with(func(c *Config) { c.Kind = "GitHub" }), nil},
		{"missing kind", with(func(c *Config) { c.Kind = "" }), []string{"forge.kind: missing: github, gitea (also for Forgejo) or gitlab"}},
		{"unknown kind", with(func(c *Config) { c.Kind = "bitbucket" }), []string{`forge.kind: "bitbucket": expected github, gitea`}},
		{"gitea needs api", with(func(c *Config) { c.Kind = Gitea }), []string{"forge.api: missing: the forge's API base URL"}},
		{"api scheme", with(func(c *Config) { c.API = "ftp://git.example.org" }), []string{`forge.api: "ftp://git.example.org": expected an http:// or https:// URL`}},
		{"api credentials", with(func(c *Config) { c.API = "https://user:pw@git.example.org/api/v1" }), []string{"forge.api: has credentials in it: put the token in forge.tokenFile"}},
		{"api query", with(func(c *Config) { c.API = "https://git.example.org/api/v1?x=1" }), []string{"forge.api:", "no query or fragment"}},
		{"api not a url", with(func(c *Config) { c.API = "https://[::1" }), []string{"forge.api: not a URL"}},
		{"missing repository", with(func(c *Config) { c.Repository = "" }), []string{"forge.repository: missing: OWNER/NAME"}},
		{"github repository one part", with(func(c *Config) { c.Repository = "edge" }), []string{`forge.repository: "edge": expected OWNER/NAME`}},
		{"github repository three parts", with(func(c *Config) { c.Repository = "a/b/c" }), []string{`forge.repository: "a/b/c": expected OWNER/NAME`}},
		{"repository .git", with(func(c *Config) { c.Repository = "infra/edge.git" }), []string{"the name without .git"}},
		{"repository empty segment", with(func(c *Config) { c.Kind = GitLab; c.API = "https://g.example/api/v4"; c.Repository = "a//b" }), []string{"empty or dot path segment"}},
		{"gitlab single word", with(func(c *Config) { c.Kind = GitLab; c.API = "https://g.example/api/v4"; c.Repository = "edge" }), []string{`forge.repository: "edge": expected a project path (group/project) or a numeric id`}},
		{"repository space", with(func(c *Config) { c.Repository = "infra/my edge" }), []string{"no spaces"}},
		{"missing token file", with(func(c *Config) { c.TokenFile = "" }), []string{"forge.tokenFile: missing"}},
		{"status url", with(func(c *Config) { c.StatusURL = "lb-0.example.org" }), []string{"forge.statusURL:", "expected an http:// or https:// URL"}},
		{"gitlab status url too long", with(func(c *Config) {
			c.Kind = GitLab
			c.API = "https://g.example/api/v4"
			c.Repository = "a/b"
			c.StatusURL = long
		}), []string{"forge.statusURL: 265 characters: GitLab accepts at most 255"}},
		{"github long status url", with(func(c *Config) { c.StatusURL = long }), nil},
		{"missing node", with(func(c *Config) { c.Node = "" }), []string{"node: missing: the node's name makes the status context gitedge/<node>"}},
		{"every problem at once", Config{Kind: "svn", API: "x://y"}, []string{
			"forge.kind:", "forge.api:", "forge.repository: missing", "forge.tokenFile: missing", "node: missing",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate: nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := Config{Kind: "GitHub", Repository: "/infra/edge/", Node: "lb-1"}.withDefaults()
	if c.API != DefaultGitHubAPI || c.Kind != GitHub || c.Repository != "infra/edge" {
		t.Errorf("defaults: api %q kind %q repository %q", c.API, c.Kind, c.Repository)
	}
	if c.Context() != "gitedge/lb-1" {
		t.Errorf("Context() = %q", c.Context())
	}
	if c.QueueSize != 64 || c.Timeout.String() != "10s" || c.RetryMin.String() != "1s" || c.RetryMax.String() != "5m0s" || c.GiveUpAfter.String() != "1h0m0s" {
		t.Errorf("tuning defaults: %+v", c)
	}
	for k, want := range map[Kind]int{GitHub: 140, GitLab: 255, Gitea: 255} {
		if got := (Config{Kind: k}).DescriptionLimit(); got != want {
			t.Errorf("%s DescriptionLimit = %d, want %d", k, got, want)
		}
	}
}

func TestNewReadsToken(t *testing.T) {
	t.Parallel()
	base := Config{Kind: GitHub, Repository: "infra/edge", Node: "lb-0"}
	for _, tt := range []struct {
		name, content, want string
	}{
		{"empty", " \n", "empty"},
		{"two lines", "a\nb\n", "more than one line"},
	} {
		c := base
		c.TokenFile = testkit.TempFile(t, "token", tt.content)
		if _, err := New(c, Options{}); err == nil || !strings.Contains(err.Error(), "forge.tokenFile "+c.TokenFile+": "+tt.want) {
			t.Errorf("%s: New error %v, want %q", tt.name, err, tt.want)
		}
	}
	// A token every user of the node may read is refused, as ssh refuses
	// such a key; readable by the owner's group is fine (0640 root:gitedge).
	for _, mode := range []os.FileMode{0o644, 0o604} {
		c := base
		c.TokenFile = testkit.TempFile(t, "token", "tok\n")
		if err := os.Chmod(c.TokenFile, mode); err != nil {
			t.Fatal(err)
		}
		_, err := New(c, Options{})
		if want := fmt.Sprintf("forge.tokenFile %s: readable by every user (mode %04o): chmod 0640 %s", c.TokenFile, mode, c.TokenFile); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("mode %04o: New error %v, want %q", mode, err, want)
		}
	}
	c := base
	c.TokenFile = testkit.TempFile(t, "token", "tok\n")
	if err := os.Chmod(c.TokenFile, 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := New(c, Options{}); err != nil {
		t.Errorf("mode 0640: %v", err)
	}
	c.TokenFile = "/nonexistent/forge.token"
	if _, err := New(c, Options{}); err == nil || err.Error() != "forge.tokenFile /nonexistent/forge.token: no such file or directory" {
		t.Errorf("missing file: %v", err)
	}
}
