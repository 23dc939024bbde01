package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/gitedge/gitedge/internal/deliver"
)

// Headers of webhook deliveries.
const (
	// HeaderEvent carries the event's Kind.
	HeaderEvent = "X-Gitedge-Event"
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of the
	// body keyed with the sink's secret, as GitHub's X-Hub-Signature-256;
	// gitedge's own generic webhook endpoint checks the same header.
	HeaderSignature = "X-Gitedge-Signature-256"
)

// AlertmanagerPath is appended to an alertmanager sink's URL.
const AlertmanagerPath = "/api/v2/alerts"

// sign is the HeaderSignature value of body under key.
func sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// webhookBody is a generic webhook's JSON: the Event's fields, its
// one-line summary and the node's status page.
type webhookBody struct {
	Event
	Summary   string `json:"summary"`
	StatusURL string `json:"statusURL,omitempty"`
}

func encodeWebhook(e Event, statusURL string) ([]byte, error) {
	return json.Marshal(webhookBody{Event: e, Summary: e.Summary(), StatusURL: statusURL})
}

// Slack limits: a section block's text is at most 3000 characters.
const slackTextLimit = 3000

// slackBody is an incoming-webhook message: text (shown by every
// Slack-compatible service and in notifications) and blocks (Slack's
// richer layout; others ignore them).
type slackBody struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks,omitempty"`
}

type slackBlock struct {
	Type     string      `json:"type"`
	Text     *slackText  `json:"text,omitempty"`
	Elements []slackText `json:"elements,omitempty"`
}

type slackText struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

// slackEmoji marks the severity at the start of a message.
var slackEmoji = map[Severity]string{Info: ":information_source:", Warning: ":warning:", Critical: ":rotating_light:"}

func encodeSlack(e Event, statusURL string) ([]byte, error) {
	head := slackEmoji[e.Severity] + " *" + strings.ToUpper(string(e.Severity)) + "* "
	text := head + slackCut(slackEscape(e.Summary()), slackTextLimit-len(head))
	ctx := []string{"gitedge", "node *" + slackEscape(e.Node) + "*"}
	if e.Commit != "" {
		ctx = append(ctx, "commit `"+slackEscape(shortID(e.Commit))+"`")
	}
	if statusURL != "" {
		ctx = append(ctx, "<"+slackEscape(statusURL)+"|status page>")
	}
	return json.Marshal(slackBody{
		Text: text,
		Blocks: []slackBlock{
			{Type: "section", Text: &slackText{Type: "mrkdwn", Text: text}},
			{Type: "context", Elements: []slackText{{Type: "mrkdwn", Text: strings.Join(ctx, " · ")}}},
		},
	})
}

// slackEscape escapes the three characters Slack's mrkdwn treats as
// markup (&, <, >).
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// slackCut cuts escaped text without splitting an entity (&amp;).
func slackCut(s string, limit int) string {
	out := deliver.Cut(s, limit)
	if !strings.HasSuffix(out, "…") {
		return out
	}
	body := strings.TrimSuffix(out, "…")
	if amp := strings.LastIndexByte(body, '&'); amp >= 0 && !strings.Contains(body[amp:], ";") {
		body = body[:amp]
	}
	return body + "…"
}

// amAlert is Alertmanager API v2's postableAlert: labels (required, they
// identify the alert), annotations, startsAt, endsAt and generatorURL.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// alertNames are the alertname label of each kind; KindServerUp resolves
// GitedgeServerDown.
var alertNames = map[Kind]string{
	KindCommitRefused:  "GitedgeCommitRefused",
	KindApplyFailed:    "GitedgeApplyFailed",
	KindVRRPTransition: "GitedgeVRRPTransition",
	KindDriftCorrected: "GitedgeDriftCorrected",
	KindServerDown:     "GitedgeServerDown",
	KindServerUp:       "GitedgeServerDown",
}

// amLabels are the labels that identify e's alert: alertname, severity,
// node, and the subject (vrrp_instance, backend, server, vm, vmid; commit
// for commit events). The VRRP instance is "vrrp_instance" because
// "instance" means the scraped target in Prometheus and Alertmanager
// routes.
func amLabels(e Event) map[string]string {
	l := map[string]string{
		"alertname": alertNames[e.Kind],
		"severity":  string(e.Severity),
		"node":      e.Node,
	}
	set := func(k, v string) {
		if v != "" {
			l[k] = v
		}
	}
	set("vrrp_instance", e.Subject.Instance)
	set("backend", e.Subject.Backend)
	set("server", e.Subject.Server)
	set("vm", e.Subject.VM)
	if e.Subject.VMID != 0 {
		l["vmid"] = strconv.Itoa(e.Subject.VMID)
	}
	if e.Kind.aboutCommit() {
		set("commit", e.Commit)
	}
	return l
}

// encodeAlertmanager turns events into one postableAlerts array. A
// resolving event carries the labels of the alert it closes and endsAt.
func encodeAlertmanager(events []Event, statusURL string) ([]byte, error) {
	alerts := make([]amAlert, 0, len(events))
	for _, e := range events {
		labels := amLabels(e)
		starts := e.Time
		var ends time.Time
		if e.Kind == KindServerUp {
			if e.problem != nil {
				labels = amLabels(*e.problem)
				starts = e.problem.Time
			} else {
				labels["severity"] = string(Critical) // unknown: the likelier label of the open alert
			}
			ends = e.Time
		}
		ann := map[string]string{"summary": e.Summary(), "description": e.Message}
		if e.Commit != "" && !e.Kind.aboutCommit() {
			ann["commit"] = e.Commit
		}
		if e.Repeats > 0 {
			ann["repeats"] = strconv.Itoa(e.Repeats)
		}
		alerts = append(alerts, amAlert{Labels: labels, Annotations: ann, StartsAt: starts.UTC(), EndsAt: ends.UTC(), GeneratorURL: statusURL})
	}
	return json.Marshal(alerts)
}
