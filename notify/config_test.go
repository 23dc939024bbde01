package notify

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

func TestValidate(t *testing.T) {
	t.Parallel()
	sink := func(kind SinkKind, url string) SinkConfig { return SinkConfig{Kind: kind, URL: url} }
	tests := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"no sinks", Config{}, nil},
		{"three sinks", Config{Node: "lb-0", StatusURL: "https://lb-0.example/", Sinks: []SinkConfig{
			sink(Webhook, "https://hooks.example/gitedge"),
			{Kind: "Slack", URL: "https://hooks.slack.com/services/T/B/X", MinSeverity: "Critical"},
			{Kind: Alertmanager, URL: "http://am.example:9093", MinSeverity: Info, SecretFile: "/etc/gitedge/am.token"},
		}}, nil},
		{"node", Config{Sinks: []SinkConfig{sink(Webhook, "https://h.example/")}}, []string{"node: missing"}},
		{"kind", Config{Node: "n", Sinks: []SinkConfig{sink("", "https://h.example/"), sink("email", "https://h.example/")}},
			[]string{"notify[0].kind: missing: webhook, slack or alertmanager", `notify[1].kind: "email": expected webhook, slack or alertmanager`}},
		{"url missing", Config{Node: "n", Sinks: []SinkConfig{sink(Webhook, "")}}, []string{"notify[0].url: missing"}},
		{"url scheme", Config{Node: "n", Sinks: []SinkConfig{sink(Webhook, "hooks.example/x")}}, []string{"notify[0].url: expected an http:// or https:// URL"}},
		{"url credentials", Config{Node: "n", Sinks: []SinkConfig{sink(Alertmanager, "https://u:p@am.example")}}, []string{"notify[0].url: has credentials in it: put a token in secretFile"}},
		{"url parse error hides the url", Config{Node: "n", Sinks: []SinkConfig{sink(Slack, "https://hooks.slack.com/services/T0/B0/SECRET\x7f")}},
			[]string{"notify[0].url: not a URL"}},
		{"severity", Config{Node: "n", Sinks: []SinkConfig{{Kind: Webhook, URL: "https://h.example", MinSeverity: "error"}}},
			[]string{`notify[0].minSeverity: "error": expected info, warning or critical`}},
		{"slack secret", Config{Node: "n", Sinks: []SinkConfig{{Kind: Slack, URL: "https://h.example", SecretFile: "/x"}}},
			[]string{"notify[0].secretFile: a Slack webhook is authorised by its URL; remove secretFile"}},
		{"status url", Config{Node: "n", StatusURL: "lb-0:9100"}, []string{"statusURL:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
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
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error shows the URL's secret path: %v", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := Config{Sinks: []SinkConfig{{Kind: "Webhook", URL: " https://h.example "}}}.withDefaults()
	s := c.Sinks[0]
	if s.Kind != Webhook || s.MinSeverity != Warning || s.URL != "https://h.example" {
		t.Errorf("sink defaults %+v", s)
	}
	if c.Window.String() != "5m0s" || c.QueueSize != 100 || c.Timeout.String() != "10s" || c.RetryMin.String() != "1s" ||
		c.RetryMax.String() != "1m0s" || c.MaxAttempts != 10 || c.ResendInterval.String() != "1m0s" {
		t.Errorf("defaults %+v", c)
	}
}

func TestNewReadsSecrets(t *testing.T) {
	t.Parallel()
	_, err := New(Config{Node: "n", Sinks: []SinkConfig{
		{Kind: Webhook, URL: "https://h.example", SecretFile: "/nonexistent/secret"},
		{Kind: Alertmanager, URL: "https://am.example", SecretFile: testkit.TempFile(t, "empty", "\n")},
	}}, Options{})
	if err == nil || !strings.Contains(err.Error(), "notify[0].secretFile /nonexistent/secret: no such file or directory") ||
		!strings.Contains(err.Error(), "notify[1].secretFile ") || !strings.Contains(err.Error(), ": empty") {
		t.Errorf("New: %v", err)
	}
	// A secret every user may read is refused, as ssh refuses such a key.
	open := testkit.TempFile(t, "secret", "s3cret\n")
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = New(Config{Node: "n", Sinks: []SinkConfig{{Kind: Webhook, URL: "https://h.example", SecretFile: open}}}, Options{})
	if want := "notify[0].secretFile " + open + ": readable by every user (mode 0644): chmod 0640 " + open; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("world-readable secret: %v, want %q", err, want)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind      SinkKind
		raw, want string
	}{
		{Slack, "https://hooks.slack.com/services/T000/B000/XXXX", "https://hooks.slack.com/…"},
		{Webhook, "https://hooks.example/gitedge?token=abc#x", "https://hooks.example/…"},
		{Webhook, "https://hooks.example/", "https://hooks.example"},
		{Alertmanager, "http://am.example:9093/api/v2/alerts?x=1", "http://am.example:9093/api/v2/alerts"},
		{Alertmanager, "http://u:p@am.example:9093", "http://am.example:9093"},
		{Slack, "::", "<url>"},
	} {
		if got := redactURL(tt.kind, tt.raw); got != tt.want {
			t.Errorf("redactURL(%s, %q) = %q, want %q", tt.kind, tt.raw, got, tt.want)
		}
	}
}

func TestConstructors(t *testing.T) {
	t.Parallel()
	list := errors.Join(errors.New("routes/a.yaml:3: bad"), errors.New("routes/b.yaml:4: worse"))
	commit := "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		e        Event
		kind     Kind
		severity Severity
		summary  string
	}{
		{CommitRefused(commit, list), KindCommitRefused, Warning, "n: commit 0123456789ab refused: 2 errors, first: routes/a.yaml:3: bad"},
		{ApplyFailed(commit, fmt.Errorf("infra: %w", errors.New("vm 101: 500"))), KindApplyFailed, Critical, "n: apply of commit 0123456789ab failed: infra: vm 101: 500"},
		{VRRPTransition("vi_1", "INIT", "BACKUP"), KindVRRPTransition, Info, "n: VRRP instance vi_1: INIT → BACKUP"},
		{VRRPTransition("vi_1", "init", "master"), KindVRRPTransition, Info, "n: VRRP instance vi_1: INIT → MASTER"},
		{VRRPTransition("vi_1", "BACKUP", "MASTER"), KindVRRPTransition, Warning, "n: VRRP instance vi_1: BACKUP → MASTER"},
		{VRRPTransition("vi_1", "MASTER", "BACKUP"), KindVRRPTransition, Warning, "n: VRRP instance vi_1: MASTER → BACKUP"},
		{VRRPTransition("vi_1", "BACKUP", "FAULT"), KindVRRPTransition, Critical, "n: VRRP instance vi_1: BACKUP → FAULT"},
		{DriftCorrected("lb-1", 101, "memory 2048 → 4096 MiB"), KindDriftCorrected, Warning, "n: VM lb-1 (101): drift corrected: memory 2048 → 4096 MiB"},
		{ServerDown("web", "192.0.2.10:80", "timeout", 2), KindServerDown, Warning, "n: backend web server 192.0.2.10:80 down: timeout; 2 healthy left"},
		{ServerDown("web", "192.0.2.10:80", "", 0), KindServerDown, Critical, "n: backend web server 192.0.2.10:80 down: no healthy server left"},
		{ServerUp("web", "192.0.2.10:80"), KindServerUp, Info, "n: backend web server 192.0.2.10:80 up: healthy again"},
	}
	for _, tt := range tests {
		tt.e.Node = "n"
		if tt.e.Kind != tt.kind || tt.e.Severity != tt.severity || tt.e.Summary() != tt.summary {
			t.Errorf("%s %s %q\nwant %s %s %q", tt.e.Kind, tt.e.Severity, tt.e.Summary(), tt.kind, tt.severity, tt.summary)
		}
	}
	e := ServerUp("web", "192.0.2.10:80")
	e.Node, e.Repeats = "n", 3
	if want := "n: backend web server 192.0.2.10:80 up: healthy again (and 3 more like it since the last notice)"; e.Summary() != want {
		t.Errorf("Summary with repeats %q", e.Summary())
	}
}
