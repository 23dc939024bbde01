package notify

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// SinkKind is where notifications go.
type SinkKind string

const (
	// Webhook: POST the Event as JSON to any URL, signed with HMAC-SHA256
	// when SecretFile is set (header HeaderSignature).
	Webhook SinkKind = "webhook"
	// Slack: a Slack incoming webhook, or any that takes Slack's
	// {"text": …} (Mattermost, Rocket.Chat). The URL is the secret.
	Slack SinkKind = "slack"
	// Alertmanager: Prometheus Alertmanager's API v2 (POST
	// {url}/api/v2/alerts). SecretFile, when set, is a bearer token.
	Alertmanager SinkKind = "alertmanager"
)

// SinkConfig is one entry of the node config's `notify:` list (docs/node-config.md);
// the JSON names are the node config's.
type SinkConfig struct {
	// Kind is webhook, slack or alertmanager. Required.
	Kind SinkKind `json:"kind"`
	// URL is where to send: the webhook's URL, the Slack incoming
	// webhook's URL (a secret: logs show only its host), or Alertmanager's
	// base URL (https://alertmanager:9093; /api/v2/alerts is added unless
	// the URL already ends with it). Required. It must not carry
	// credentials.
	URL string `json:"url"`
	// MinSeverity is the least severe event sent: info, warning or
	// critical. Default warning. A server coming back up is sent whatever
	// the minimum when its going down was sent.
	MinSeverity Severity `json:"minSeverity,omitempty"`
	// SecretFile is, for webhook, the HMAC-SHA256 key that signs each body
	// (header HeaderSignature); for alertmanager, a bearer token. Not
	// allowed for slack. Optional. Read at New and before each delivery
	// (rotation needs no restart); never logged.
	SecretFile string `json:"secretFile,omitempty"`
}

// Config is the notifier's configuration: the node config's `notify:`
// list plus what the caller knows.
type Config struct {
	// Node is this node's name; it fills Event.Node when empty. Required.
	Node string
	// StatusURL is this node's status page: linked from Slack messages and
	// sent as Alertmanager's generatorURL. Optional.
	StatusURL string
	// Sinks are the node config's `notify:` entries. None is valid: Notify
	// then does nothing.
	Sinks []SinkConfig
	// Window is the rate-limit window: an event identical to one sent
	// less than Window ago (same kind, subject and message) is not sent;
	// the last of them is sent when the window ends, with the count of
	// those suppressed. Default 5m.
	Window time.Duration
	// QueueSize bounds each sink's queue; when full the oldest is dropped
	// and counted. Default 100.
	QueueSize int
	// Timeout bounds one request. Default 10s.
	Timeout time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff after a
	// 5xx, 408, 425, 429, timeout or network error. Defaults 1s and 1m.
	RetryMin, RetryMax time.Duration
	// MaxAttempts bounds the attempts per notification. Default 10
	// (about 2½ minutes with the default backoff).
	MaxAttempts int
	// ResendInterval is how often open alerts (a server still down) are
	// sent to Alertmanager again, so they do not resolve by its
	// resolve_timeout while the problem lasts. Default 1m.
	ResendInterval time.Duration
}

// withDefaults returns c with every default applied; the one place
// defaults live.
func (c Config) withDefaults() Config {
	c.Window = cmp.Or(c.Window, 5*time.Minute)
	c.QueueSize = cmp.Or(c.QueueSize, 100)
	c.Timeout = cmp.Or(c.Timeout, 10*time.Second)
	c.RetryMin = cmp.Or(c.RetryMin, time.Second)
	c.RetryMax = cmp.Or(c.RetryMax, time.Minute)
	c.MaxAttempts = cmp.Or(c.MaxAttempts, 10)
	c.ResendInterval = cmp.Or(c.ResendInterval, time.Minute)
	c.Sinks = append([]SinkConfig(nil), c.Sinks...)
	for i := range c.Sinks {
		s := &c.Sinks[i]
		s.Kind = SinkKind(strings.ToLower(strings.TrimSpace(string(s.Kind))))
		s.URL = strings.TrimSpace(s.URL)
		s.MinSeverity = cmp.Or(Severity(strings.ToLower(string(s.MinSeverity))), Warning)
	}
	return c
}

// Validate checks c (after defaults) and returns every problem found, each
// named by its node-config field (notify[0].url, …).
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(c.Sinks) > 0 && strings.TrimSpace(c.Node) == "" {
		add("node", "missing: notifications name the node they come from")
	}
	if c.StatusURL != "" {
		if err := checkURL(c.StatusURL); err != nil {
			add("statusURL", "%v", err)
		}
	}
	for i, s := range c.Sinks {
		at := fmt.Sprintf("notify[%d]", i)
		switch s.Kind {
		case Webhook, Slack, Alertmanager:
		case "":
			add(at+".kind", "missing: webhook, slack or alertmanager")
		default:
			add(at+".kind", "%q: expected webhook, slack or alertmanager", s.Kind)
		}
		if s.URL == "" {
			add(at+".url", "missing: where to send notifications")
		} else if err := checkURL(s.URL); err != nil {
			add(at+".url", "%s", redactErr(err, s.URL, s.Kind))
		}
		if s.MinSeverity.rank() == 0 {
			add(at+".minSeverity", "%q: expected info, warning or critical", s.MinSeverity)
		}
		if s.Kind == Slack && s.SecretFile != "" {
			add(at+".secretFile", "a Slack webhook is authorised by its URL; remove secretFile")
		}
	}
	if c.Window < 0 || c.QueueSize < 0 || c.Timeout < 0 || c.RetryMin < 0 || c.RetryMax < 0 || c.MaxAttempts < 0 || c.ResendInterval < 0 {
		add("notify", "negative window, queue size, timeout or retry bound")
	}
	if c.RetryMin > c.RetryMax {
		add("notify", "retry minimum %s above maximum %s", c.RetryMin, c.RetryMax)
	}
	return errors.Join(errs...)
}

// checkURL accepts an absolute http(s) URL without credentials.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL: %v", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return errors.New("expected an http:// or https:// URL")
	}
	if u.Host == "" {
		return errors.New("no host")
	}
	if u.User != nil {
		return errors.New("has credentials in it: put a token in secretFile")
	}
	return nil
}

// redactErr formats err without the URL, which may be a secret.
func redactErr(err error, raw string, kind SinkKind) string {
	return strings.ReplaceAll(err.Error(), raw, redactURL(kind, raw))
}

// redactURL is a sink's URL as logs, errors and the snapshot show it:
// never credentials, a query or a fragment, and for slack and webhook not
// the path either (Slack's path is the webhook's secret, and other
// services put tokens there too).
func redactURL(kind SinkKind, raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "<url>"
	}
	out := u.Scheme + "://" + u.Host
	switch {
	case kind == Alertmanager:
		out += u.EscapedPath()
	case u.Path != "" && u.Path != "/":
		out += "/…"
	}
	return out
}
