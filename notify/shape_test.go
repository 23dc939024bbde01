package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

const statusURL = "https://lb-0.example.org/"

// The generic webhook: the Event as JSON, X-Gitedge-Event, and with a
// secret X-Gitedge-Signature-256: sha256=<hex HMAC-SHA256 of the body>.
func TestWebhookShape(t *testing.T) {
	t.Parallel()
	const key = "hmac-key-5d2f0a"
	signed, plain := testkit.NewReceiver(), testkit.NewReceiver()
	g := newRig(t, Config{StatusURL: statusURL, Sinks: []SinkConfig{
		{Kind: Webhook, URL: "/hooks/gitedge", SecretFile: testkit.TempFile(t, "key", key+"\n")},
		{Kind: Webhook, URL: "/plain"},
	}}, []*testkit.Receiver{signed, plain}, false)
	at := time.Date(2026, 3, 1, 12, 30, 0, 0, time.UTC)
	e := ServerDown("web", "192.0.2.10:8080", "connect: connection refused", 0)
	e.Time = at
	g.n.Notify(e)

	r := signed.Next(t)
	if r.Method != http.MethodPost || r.Path != "/hooks/gitedge" {
		t.Errorf("%s %s", r.Method, r.Path)
	}
	if r.Header.Get("Content-Type") != "application/json" || r.Header.Get(HeaderEvent) != "server-down" {
		t.Errorf("headers %v", r.Header)
	}
	m := hmac.New(sha256.New, []byte(key))
	m.Write(r.Body)
	if want := "sha256=" + hex.EncodeToString(m.Sum(nil)); r.Header.Get(HeaderSignature) != want {
		t.Errorf("%s %q, want %q", HeaderSignature, r.Header.Get(HeaderSignature), want)
	}
	var body map[string]any
	testkit.DecodeJSON(t, r.Body, &body)
	want := map[string]any{
		"kind": "server-down", "severity": "critical", "node": "lb-0",
		"subject":   map[string]any{"backend": "web", "server": "192.0.2.10:8080"},
		"message":   "connect: connection refused; no healthy server left",
		"time":      "2026-03-01T12:30:00Z",
		"summary":   "lb-0: backend web server 192.0.2.10:8080 down: connect: connection refused; no healthy server left",
		"statusURL": statusURL,
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("body %v\nwant %v", body, want)
	}
	if p := plain.Next(t); p.Header.Get(HeaderSignature) != "" || p.Path != "/plain" {
		t.Errorf("unsigned sink sent %q to %s", p.Header.Get(HeaderSignature), p.Path)
	}
}

// Slack incoming webhooks take {"text", "blocks"}; Mattermost and other
// compatible services read "text". mrkdwn's &, < and > are escaped.
func TestSlackShape(t *testing.T) {
	t.Parallel()
	rc := testkit.NewReceiver()
	g := newRig(t, Config{StatusURL: statusURL, Sinks: []SinkConfig{{Kind: Slack, URL: "/services/T000/B000/XXXX"}}},
		[]*testkit.Receiver{rc}, false)
	commit := "0123456789abcdef0123456789abcdef01234567"
	g.n.Notify(ApplyFailed(commit, &testErr{`vm <lb-1> & "db": 500`}))
	r := rc.Next(t)
	if r.Path != "/services/T000/B000/XXXX" || r.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%s %v", r.Path, r.Header)
	}
	var body map[string]any
	testkit.DecodeJSON(t, r.Body, &body)
	text := ":rotating_light: *CRITICAL* lb-0: apply of commit 0123456789ab failed: vm &lt;lb-1&gt; &amp; \"db\": 500"
	want := map[string]any{
		"text": text,
		"blocks": []any{
			map[string]any{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": text}},
			map[string]any{"type": "context", "elements": []any{map[string]any{"type": "mrkdwn",
				"text": "gitedge · node *lb-0* · commit `0123456789ab` · <" + statusURL + "|status page>"}}},
		},
	}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("body %v\nwant %v", body, want)
	}
}

type testErr struct{ s string }

func (e *testErr) Error() string { return e.s }

// A long Slack message stays under the 3000-character section limit and
// never ends inside an escaped entity.
func TestSlackLongMessage(t *testing.T) {
	t.Parallel()
	e := DriftCorrected("lb-1", 101, strings.Repeat("a<b ", 1000))
	e.Node = "lb-0"
	b, err := encodeSlack(e, "")
	if err != nil {
		t.Fatal(err)
	}
	var body slackBody
	json.Unmarshal(b, &body)
	if n := len([]rune(body.Text)); n > slackTextLimit {
		t.Errorf("text %d characters", n)
	}
	tail := body.Text[len(body.Text)-12:]
	if !strings.HasSuffix(body.Text, "…") || strings.Contains(tail, "&l…") || strings.Contains(tail, "&lt…") {
		t.Errorf("text ends %q", tail)
	}
}

// Alertmanager API v2: POST /api/v2/alerts with an array of
// postableAlerts (labels, annotations, startsAt, endsAt, generatorURL); a
// server back up resolves the alert it fired, with the same labels.
func TestAlertmanagerShape(t *testing.T) {
	t.Parallel()
	rc, full := testkit.NewReceiver(), testkit.NewReceiver()
	g := newRig(t, Config{StatusURL: statusURL, Sinks: []SinkConfig{
		{Kind: Alertmanager, URL: "", SecretFile: testkit.TempFile(t, "am", "am-token-77\n")},
		{Kind: Alertmanager, URL: "/api/v2/alerts/"},
	}}, []*testkit.Receiver{rc, full}, false)
	down := ServerDown("web", "192.0.2.10:8080", "timeout", 0)
	down.Time = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	g.n.Notify(down)
	r := rc.Next(t)
	if r.Method != http.MethodPost || r.Path != "/api/v2/alerts" || r.Header.Get("Content-Type") != "application/json" ||
		r.Header.Get("Authorization") != "Bearer am-token-77" {
		t.Errorf("%s %s %v", r.Method, r.Path, r.Header)
	}
	if p := full.Next(t).Path; p != "/api/v2/alerts" {
		t.Errorf("a URL ending in /api/v2/alerts/ posted to %s", p)
	}
	labels := map[string]any{"alertname": "GitedgeServerDown", "severity": "critical", "node": "lb-0",
		"backend": "web", "server": "192.0.2.10:8080"}
	var alerts []map[string]any
	testkit.DecodeJSON(t, r.Body, &alerts)
	want := []map[string]any{{
		"labels": labels,
		"annotations": map[string]any{
			"summary":     "lb-0: backend web server 192.0.2.10:8080 down: timeout; no healthy server left",
			"description": "timeout; no healthy server left",
		},
		"startsAt":     "2026-03-01T12:00:00Z",
		"generatorURL": statusURL,
	}}
	if !reflect.DeepEqual(alerts, want) {
		t.Errorf("alerts %v\nwant %v", alerts, want)
	}

	up := ServerUp("web", "192.0.2.10:8080")
	up.Time = down.Time.Add(90 * time.Second)
	g.n.Notify(up)
	testkit.DecodeJSON(t, rc.Next(t).Body, &alerts)
	if len(alerts) != 1 || !reflect.DeepEqual(alerts[0]["labels"], labels) ||
		alerts[0]["startsAt"] != "2026-03-01T12:00:00Z" || alerts[0]["endsAt"] != "2026-03-01T12:01:30Z" {
		t.Errorf("resolving alert %v; want the firing labels and endsAt", alerts)
	}

	// Label names are Prometheus label names; a VRRP instance is
	// vrrp_instance, a commit event carries its commit.
	for _, tt := range []struct {
		e    Event
		want map[string]string
	}{
		{VRRPTransition("vi_1", "BACKUP", "FAULT"), map[string]string{"alertname": "GitedgeVRRPTransition", "severity": "critical", "node": "n", "vrrp_instance": "vi_1"}},
		{DriftCorrected("lb-1", 101, "x"), map[string]string{"alertname": "GitedgeDriftCorrected", "severity": "warning", "node": "n", "vm": "lb-1", "vmid": "101"}},
		{CommitRefused("abc", nil), map[string]string{"alertname": "GitedgeCommitRefused", "severity": "warning", "node": "n", "commit": "abc"}},
		{ApplyFailed("abc", nil), map[string]string{"alertname": "GitedgeApplyFailed", "severity": "critical", "node": "n", "commit": "abc"}},
	} {
		tt.e.Node = "n"
		if got := amLabels(tt.e); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s labels %v, want %v", tt.e.Kind, got, tt.want)
		}
		for k := range tt.want {
			if !validLabelName(k) {
				t.Errorf("label name %q", k)
			}
		}
	}
}

// validLabelName is Prometheus's classic [a-zA-Z_][a-zA-Z0-9_]*.
func validLabelName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// Each sink sends what reaches its minimum severity; a server back up is
// sent to the sinks that were told it was down, whatever their minimum.
func TestMinSeverity(t *testing.T) {
	t.Parallel()
	warn, crit, info := testkit.NewReceiver(), testkit.NewReceiver(), testkit.NewReceiver()
	g := newRig(t, Config{Sinks: []SinkConfig{
		{Kind: Webhook, URL: "/w"}, // default warning
		{Kind: Webhook, URL: "/c", MinSeverity: Critical},
		{Kind: Webhook, URL: "/i", MinSeverity: Info},
	}}, []*testkit.Receiver{warn, crit, info}, false)
	events := []Event{
		VRRPTransition("vi_1", "INIT", "BACKUP"),                                    // info
		ServerDown("web", "192.0.2.10:80", "timeout", 1),                            // warning
		ServerUp("web", "192.0.2.10:80"),                                            // info, resolves
		ServerDown("api", "192.0.2.20:80", "refused", 0),                            // critical
		ServerUp("api", "192.0.2.20:80"),                                            // info, resolves
		ServerUp("db", "192.0.2.30:5432"),                                           // info, nothing open
		ApplyFailed("0123456789abcdef0123456789abcdef01234567", &testErr{"marker"}), // critical, last
	}
	for _, e := range events {
		g.n.Notify(e)
	}
	kinds := func(rc *testkit.Receiver) []string {
		var out []string
		for {
			r := rc.Next(t)
			e := event(t, r.Body)
			out = append(out, string(e.Kind)+":"+e.Subject.Backend)
			if e.Kind == KindApplyFailed {
				return out
			}
		}
	}
	for _, tt := range []struct {
		name string
		rc   *testkit.Receiver
		want []string
	}{
		{"warning", warn, []string{"server-down:web", "server-up:web", "server-down:api", "server-up:api", "apply-failed:"}},
		{"critical", crit, []string{"server-down:api", "server-up:api", "apply-failed:"}},
		{"info", info, []string{"vrrp-transition:", "server-down:web", "server-up:web", "server-down:api", "server-up:api", "server-up:db", "apply-failed:"}},
	} {
		if got := kinds(tt.rc); !slices.Equal(got, tt.want) {
			t.Errorf("%s sink got %v\nwant %v", tt.name, got, tt.want)
		}
	}
}
