// Package forge posts a commit status per node to the forge that hosts the
// routes repository (GitHub, Gitea/Forgejo, GitLab), so a pull request and
// a commit show what every node did with it.
//
// Each node posts under its own context, "gitedge/<node>", so two nodes
// never overwrite each other's status (Flux's "kind/name" context does).
// The states follow the reconcile pass:
//
//	fetched                     → Pending  (GitLab: running)
//	applied                     → Success
//	refused (parse, validation,
//	         signature)         → Failure  (GitLab: failed), description Summarize(err)
//	apply failed                → Error    (GitLab: failed), description Summarize(err)
//
// The description is made one line and cut at a character boundary to the
// forge's limit (GitHub 140 characters, GitLab 255; Gitea has none, 255 is
// used).
//
// # Requests
//
// GitHub and Gitea/Forgejo: POST {api}/repos/{owner}/{name}/statuses/{sha}
// with JSON {state, context, description, target_url}; GitHub gets
// "Authorization: Bearer", "Accept: application/vnd.github+json" and
// "X-GitHub-Api-Version: 2022-11-28", Gitea "Authorization: token".
// GitLab: POST {api}/projects/{id or URL-encoded path}/statuses/{sha} with
// JSON {state, name, description, target_url} and a PRIVATE-TOKEN header.
// Redirects are never followed, so the token goes to forge.api only.
//
// # Never in the way of an apply
//
// Report only queues: the queue is bounded (the oldest commit is dropped
// when full), a newer state of a commit replaces a queued one, and the
// state last posted for a commit is not posted again. Run posts one status
// at a time. 5xx, 408, 409, 425, 429, timeouts and network errors are
// retried with jittered exponential backoff, or after the wait the forge
// asks for (Retry-After; GitHub's x-ratelimit-reset when a 403 or 429 says
// the rate limit is spent). Any other 4xx is given up at once with a log
// line and a count in MetricStatuses{result="failed"}; a 401 first re-reads
// forge.tokenFile and tries again if the token changed (rotation). GitLab's
// 400 "Cannot transition status via :run from :running" means the commit
// already shows that state and counts as a no-op.
//
// The token is read from forge.tokenFile and never appears in logs, errors,
// Snapshot, String, fmt or JSON output.
//
// # Wiring
//
// The node config's `forge:` section decodes into Config (JSON names as in
// docs/node-config.md); the caller sets Config.Node. cmd/gitedge runs the Reporter as
// a Task; the reconcile loop calls Report(sha, Pending, "") when it takes a
// new commit and Report(sha, Success|Failure|Error, Summarize(err)) when
// that commit's pass ends (a pass that finds nothing new reports nothing;
// repeating the last state is a no-op anyway); the admin server shows
// Snapshot under /status. A nil *Reporter is valid and
// does nothing, for nodes without a forge. See Example.
//
// forge imports no other gitedge package but the internal helpers it
// shares with notify (internal/deliver, internal/promreg).
package forge
