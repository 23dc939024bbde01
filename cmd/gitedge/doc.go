// Command gitedge is the edge node agent: it pulls a git repository of YAML
// and runs the proxy, VRRP failover and Proxmox VMs it declares. main.go
// only dispatches; each command lives in its own file, and the commands
// that run a node (run, proxy, vrrp, demo) build one node (node.go) with
// the parts they need: the subsystems, the reconcile loop that drives
// them from a source (source.go), the source's triggers and the admin
// server (admin.go), which serves the one node status (status.go).
//
// # How a new subsystem plugs in
//
// Say gitedge grows BGP announcements (package bgp):
//
//  1. Package bgp owns its typed config (bgp.Config: plain data, defaults
//     applied by the loader, a Validate for the rules only it knows) and a
//     type with Apply(ctx, bgp.Config) error that is idempotent, tries
//     every item and joins the errors. An error that retrying cannot fix
//     carries a Transient() bool method answering false; anything else is
//     retried with backoff (reconcile.IsTransient). bgp imports no other
//     gitedge package.
//  2. reconcile: the raw document structs (raw.go) get the YAML fields,
//     convert_*.go converts them into bgp.Config inside Desired, plan.go
//     lists its fields (fields_test.go then proves none is forgotten),
//     appliers.go declares BGPApplier and pins *bgp.Speaker to it with an
//     interface guard, and the Loop gets a BGP field and a step in Pass, in
//     dependency order (grow: infra, dataplane, failover, then bgp).
//  3. nodeconfig, only if the node's own file must configure it: a section
//     in File (the YAML) and its typed form in Config, checked by bgp's
//     Validate. forge and notify are wired this way: the loop's
//     Observer (reconcile.Event) and the subsystems' hooks reach them
//     through feedback.go, so no subsystem imports them.
//  4. cmd/gitedge/node.go: newNode builds it when the node enables it,
//     registering its metrics into n.reg and handing it the bare logger
//     (each package names itself, subsystem=bgp), sets n.loop.BGP, and
//     n.run runs it as a task if it has Run(ctx) (nil on cancellation).
//     Cross-subsystem signals (bgp withdrawing when the proxy is
//     unhealthy) are wired there with funcs or channels, never imports.
//     A subsystem that holds something a new process must take over on
//     an upgrade in place (SIGUSR2, upgrade.go: BGP sessions) registers
//     its hand-over step in n.handOver.
//  5. status.go: nodeStatus gets its typed status (lowerCamel JSON tags;
//     TestStatusJSONKeysLowerCamel checks a running node), filled by
//     (*node).status, printed by printStatus and shown on the status
//     page: a section of statuspage/page.html under {{with .BGP}}, which
//     renders only while the field is set (statuspage_test.go feeds it
//     hostile text to prove it escapes).
package main
