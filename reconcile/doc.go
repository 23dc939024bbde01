// Package reconcile is gitedge's desired-state model and its loop: it
// loads a routes repository into the subsystems' config types, validates
// it as a whole, plans the difference with what is live, applies it, and
// reports.
//
// Loading (Load, LoadWith, LoadDir) reads every *.yaml / *.yml file under
// the routes directory; names starting with "." are skipped. The same
// rules hold for a directory on disk (`gitedge validate`, `gitedge plan`)
// and for a git tree (`gitedge run`):
//
//   - A symbolic link is resolved by the loader itself, relative to the
//     link's directory, through any chain of links: one whose target is
//     absolute, leaves the routes directory, dangles or loops is an error
//     naming the link, and nothing outside the directory is ever opened,
//     so no message can quote it. A link to a file inside is read under
//     the link's name; a link to a directory inside is walked under it.
//   - Limits (limits.go): a file holds at most 8 MiB (checked by its size
//     before it is read) and 10,000 documents; a revision at most 20,000
//     files, 64 MiB of YAML and 100,000 routes; a route at most 1,000
//     hosts. Each is an ordinary located error.
//   - With LoadOptions.Local, the checks only one node can make are added:
//     its name is in spec.nodes, and no listener takes its admin or webhook
//     port (`gitedge validate --node-config`; `gitedge run` on every
//     commit).
//
// The loop (Loop) drives the subsystems through the interfaces declared in
// appliers.go (DataplaneApplier, FailoverApplier, InfraApplier), which
// *dataplane.Proxy, *failover.Manager and *infra.Reconciler satisfy as
// they are. Leadership is the one place that decides whether this node
// applies infra changes. An error's kind decides what follows
// (IsTransient): a transient failure is retried with jittered, bounded
// backoff (Loop.Retry), a terminal one is Stalled until a new commit. How
// a new subsystem plugs in is told in cmd/gitedge's package doc.
//
// What happens to each commit (fetched, applied, refused, apply failed)
// and each infra pass is told to the Loop's Observer (observer.go) as an
// Event: cmd/gitedge turns them into commit statuses and notifications,
// so reconcile imports neither forge nor notify. A review (review.go) is
// a plan for a pull request: the changes and their consequences, as
// Markdown or typed JSON.
//
// The last applied record (Record, StateFile) is what makes a restart
// serve the last good commit before any fetch: Loop.Run
// applies it first, and every pass that applies a new commit records it,
// atomically, once every step took it. Failing to record never fails a
// pass.
package reconcile
