// Package pvesim is an in-memory simulator of the Proxmox VE 8 HTTP API
// subset gitedge uses (see shared/proxmox/API.md): token and ticket auth,
// the {"data": …} envelope and reason-phrase errors, nodes, storage,
// network interfaces (bridges), templates, clones, config with digests
// and pending changes, resize, power actions, delete, tasks by UPID, the
// guest agent, HA resources and tags. The real go-proxmox client works
// against it unchanged.
//
// Where go-proxmox v0.8.2 and the real API disagree, the simulator follows
// the real API; each such place carries a "go-proxmox:" comment.
package pvesim
