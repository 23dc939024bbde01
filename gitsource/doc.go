// Package gitsource hands the routes repository to the reconcile loop: it
// fetches a git remote with go-git (or watches a local directory), verifies
// OpenPGP commit signatures, and yields one Revision per new head, woken by
// a coalescing trigger queue fed by a cron poller, push webhooks and
// fsnotify.
//
// The model is level-based (controller-runtime, Flux): a trigger carries no
// payload beyond "look again" and a reason for the logs. Each look first asks
// the remote for its head (one ref advertisement) and fetches only when the
// head moved, so a burst of webhooks costs one fetch and a quiet poll costs
// no pack transfer.
//
// The pieces, each usable on its own:
//
//   - Git (New): Next(ctx) yields the next Revision of a git remote, or an
//     *Error naming the step that failed (fetch, verify, read) and whether
//     retrying helps. Transient failures re-arm a jittered backoff retry.
//   - Dir (NewDir): the same Next for a local directory, for development
//     (`gitedge run --source ./dir`); Run watches it with fsnotify.
//   - Queue: the one-slot, latest-wins trigger queue both sources read.
//   - Poller: a robfig/cron schedule, offset per node, that pokes a queue.
//   - Webhook: an http.Handler for GitHub, Gitea/Forgejo, GitLab and
//     generic HMAC push events; it answers at once and only pokes a queue.
//     It is open to anyone who can reach its port, so what requests not
//     yet authenticated may hold is bounded whatever their number
//     (admission.go), refusals are logged in summary, and replayed
//     deliveries are recognised.
//   - The relay endpoint (relay.go), served by the webhook at
//     RelayPath(path): a peer node's signed, dated, single-use "commit X
//     on ref B" pokes the queue as TriggerRelay, a hint only (the look
//     decides); package gitsource/relay sends them.
//
// A revision's files are a MemFS: symbolic links are kept as links,
// followed inside the tree and refused when they leave it, the same for a
// git commit and a directory.
//
// At start, a look that cannot fetch (the remote unreachable or gone, the
// credentials refused, the state directory full or read-only) hands over
// the cached last good commit instead. No remote operation outlives its
// deadline; to make sure of it for file:// and plain paths, importing the
// package replaces go-git's file transport with a wrapper (transport.go).
//
// gitsource does not import reconcile; cmd/gitedge maps the node config
// onto Config and WebhookConfig.
package gitsource
