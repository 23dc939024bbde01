package infra

import (
	"context"
)

// API is the part of the Proxmox VE API the reconciler uses: the seam
// between the plan logic and go-proxmox. NewAPI returns the real one; tests
// of the plan logic use a fake. Every method is one API call, safe for
// concurrent use, and returns errors that never contain the API token.
// Async methods return the task's UPID; the caller waits with Task.
type API interface {
	// Resources lists the QEMU guests of the whole cluster, templates
	// included (GET /cluster/resources?type=vm, LXC filtered out).
	Resources(ctx context.Context) ([]Resource, error)
	// HAResources lists the HA resources of VMs (GET /cluster/ha/resources).
	HAResources(ctx context.Context) ([]HAResource, error)
	// Config reads a VM's config with its pending section in one call
	// (GET .../pending).
	Config(ctx context.Context, node string, vmid int) (VMConfig, error)
	// Status reads a VM's authoritative power state and lock
	// (GET .../status/current).
	Status(ctx context.Context, node string, vmid int) (VMStatus, error)
	// Clone full-clones a template onto an explicit VMID (POST .../clone).
	Clone(ctx context.Context, req CloneRequest) (string, error)
	// SetConfig sets and deletes config keys (POST .../config) guarded by
	// digest (empty: unguarded).
	SetConfig(ctx context.Context, node string, vmid int, digest string, set map[string]string, del []string) (string, error)
	// Resize grows a disk to an absolute size (PUT .../resize).
	Resize(ctx context.Context, node string, vmid int, disk, size string) (string, error)
	// Power starts, stops or shuts down a VM (POST .../status/ACTION).
	Power(ctx context.Context, node string, vmid int, action string) (string, error)
	// Delete destroys a stopped VM with its disks, purging it from HA and
	// backup jobs (DELETE .../qemu/{vmid}?purge=1&destroy-unreferenced-disks=1).
	Delete(ctx context.Context, node string, vmid int) (string, error)
	// RegenerateCloudInit rebuilds the cloud-init drive (PUT .../cloudinit).
	RegenerateCloudInit(ctx context.Context, node string, vmid int) error
	// CreateHA, UpdateHA and DeleteHA manage an HA resource ("vm:150").
	CreateHA(ctx context.Context, sid string, ha HA) error
	UpdateHA(ctx context.Context, sid string, ha HA) error
	DeleteHA(ctx context.Context, sid string) error
	// Task reads a task's status by UPID.
	Task(ctx context.Context, upid string) (TaskStatus, error)
	// AgentInterfaces asks the guest agent for the VM's network interfaces.
	AgentInterfaces(ctx context.Context, node string, vmid int) ([]AgentInterface, error)
	// Bridges lists what a NIC can attach to on a node: Linux and OVS
	// bridges and SDN VNets (GET /nodes/{node}/network?type=any_bridge).
	Bridges(ctx context.Context, node string) ([]Bridge, error)
}

// VMRef names a VM in errors and logs.
type VMRef struct {
	Name string
	VMID int
	Node string
}

// Resource is one QEMU guest of /cluster/resources.
type Resource struct {
	VMID     int
	Node     string
	Name     string
	Status   string // running, stopped, unknown (RRD not yet updated)
	Tags     []string
	Template bool
	HAState  string
}

// Tagged reports whether the guest carries the gitedge tag.
func (r Resource) Tagged() bool { return hasTag(r.Tags, Tag) }

// HAResource is one HA resource.
type HAResource struct {
	SID   string // "vm:150"
	Group string
	State string
}

// VMConfig is a VM's config as GET .../pending shows it.
type VMConfig struct {
	Digest string
	// Values is the config with pending changes applied: what the VM will
	// be after its next start (what GET .../config returns).
	Values map[string]string
	// Pending lists the keys whose change waits for a restart.
	Pending []string
}

// Lock is the config lock ("clone", "backup", …), "" when unlocked.
func (c VMConfig) Lock() string { return c.Values["lock"] }

// VMStatus is a VM's runtime state.
type VMStatus struct {
	Status string // running, stopped
	Lock   string
	HA     bool // managed by the HA stack
}

// CloneRequest is a full clone of Template onto VMID.
type CloneRequest struct {
	Node        string // the template's node
	Template    int
	VMID        int
	Name        string
	Description string
	Storage     string
	Format      string
	TargetNode  string
	LinkedClone bool
}

// TaskStatus is a task's state.
type TaskStatus struct {
	Running    bool
	ExitStatus string // OK, WARNINGS: n, or the error
}

// Succeeded reports a stopped task that ended OK or with warnings (PVE
// counts WARNINGS as success; go-proxmox marks it failed).
func (t TaskStatus) Succeeded() bool {
	return !t.Running && (t.ExitStatus == "OK" || len(t.ExitStatus) > 9 && t.ExitStatus[:9] == "WARNINGS:")
}

// Bridge is one bridge of a node.
type Bridge struct {
	Name string
	Type string // bridge, OVSBridge, vnet
	// Active: the interface is up. A bridge only written to the node's
	// network configuration (not applied yet) is listed inactive, and a
	// VM attached to it does not start.
	Active bool
}

// AgentInterface is one guest network interface.
type AgentInterface struct {
	Name string
	MAC  string // lower case
	IPs  []AgentIP
}

// AgentIP is one address of an interface.
type AgentIP struct {
	Address string
	Prefix  int
	IPv6    bool
}
