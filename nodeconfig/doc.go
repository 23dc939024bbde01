// Package nodeconfig reads the node's local config, the file that is not
// in git (/etc/gitedge/gitedge.yaml): which node this is, where its routes
// repository comes from, how to reach Proxmox, the forge and the
// notification sinks, and where the node keeps its state.
//
// It parses in two layers: File mirrors the YAML format (decoded
// strictly, unknown fields are errors); Build turns it into Config, whose
// sections are the subsystems' own config types (gitsource.Config,
// gitsource.WebhookConfig, forge.Config, notify.Config), with each
// subsystem's defaults applied by that subsystem and its rules checked by
// its own Validate. Only the node-level defaults (admin.listen, stateDir)
// live here. Every problem is reported at once, prefixed with the file.
//
// Secrets are never in the file: it names the files holding them, read by
// whoever needs them (ProxmoxClient reads the Proxmox token; the secrets
// section becomes a secrets.Store that resolves, on every commit, the
// secrets the routes repository names).
package nodeconfig
