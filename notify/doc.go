// Package notify tells people what they must hear about without watching a
// page — a commit refused, an apply failed, a VRRP transition, drift
// corrected on a VM, a backend server down or up — through a generic
// webhook, Slack-compatible incoming webhooks and Prometheus Alertmanager.
//
// # Events
//
// An Event is built by a constructor that fills its kind, severity,
// subject and message (CommitRefused, ApplyFailed, VRRPTransition,
// DriftCorrected, ServerDown, ServerUp); the Notifier fills the node and
// the time. Callers notify when something happened, never for a pass that
// changed nothing: the reconcile loop notifies a refused or failed commit
// once per commit and attempt, the failover side on each state change, the
// dataplane when a server's health flips.
//
// # Sinks
//
// Each entry of the node config's `notify:` list (SinkConfig) is a sink
// with its own minimum severity (default warning), queue and goroutine:
//
//   - webhook: POST the Event as JSON (its fields plus "summary" and
//     "statusURL"), header X-Gitedge-Event with the kind and, with a
//     secretFile, X-Gitedge-Signature-256: sha256=<hex HMAC-SHA256 of the
//     body> — the header gitedge's own webhook endpoint checks.
//   - slack: POST {"text": …, "blocks": […]} to an incoming webhook; the
//     text alone carries the message, so Mattermost and other
//     Slack-compatible services show it too. The URL is a secret: logs and
//     the snapshot show only its host.
//   - alertmanager: POST {url}/api/v2/alerts with an array of
//     postableAlerts: labels alertname (GitedgeServerDown, …), severity,
//     node and the subject (vrrp_instance, backend, server, vm, vmid,
//     commit), annotations summary and description, startsAt, endsAt when
//     a server comes back up (the alert is resolved with the labels it
//     fired with), generatorURL the node's status page. Open alerts (a
//     server still down) are sent again every ResendInterval, as
//     Alertmanager expects from its clients; one-off events are left to
//     its resolve_timeout.
//
// # Never in the way
//
// Notify only filters and queues. Repeats — the same kind, subject and
// message within Config.Window — are held back and counted; when the
// window ends the newest of them is sent with the count (Event.Repeats),
// unless a newer event about the same subject was seen since, so a
// flapping server's last notice is its current state. Queues are bounded
// (the oldest is dropped and counted). 5xx, 408, 425, 429 (Retry-After
// honoured), timeouts and network errors are retried with jittered
// backoff up to MaxAttempts; other answers are given up with a log line.
// Redirects are not followed. Secrets are never logged.
//
// # Wiring
//
// The node config's `notify:` list decodes into []SinkConfig (JSON names
// as in docs/node-config.md); the caller sets Config.Node and Config.StatusURL.
// cmd/gitedge runs the Notifier as a Task, hands it to the subsystems as a
// func(Event) (or an interface with Notify), and the admin server shows
// Snapshot under /status. A nil *Notifier is valid and does nothing. See
// Example.
//
// notify imports no other gitedge package but the internal helpers it
// shares with forge (internal/deliver, internal/promreg).
package notify
