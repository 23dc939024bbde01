// Package infra reconciles Proxmox VE virtual machines to the VirtualMachine
// documents of the routes repository: it observes the cluster, plans the
// changes (create, update, resize, start, HA, delete) and, on the infra
// leader only, applies them through github.com/luthermonson/go-proxmox.
// Only VMs tagged "gitedge" are ever changed or deleted.
//
// The reconciler talks to Proxmox through the small API interface; NewAPI
// builds the real one over go-proxmox, and the pvesim subpackage is a
// Proxmox API simulator the real client is tested against.
package infra
