package terraform

import (
	"github.com/gitedge/gitedge/importer/report"
)

// ResourceType is the Telmate provider's VM resource.
const ResourceType = "proxmox_vm_qemu"

// Value is one resolved attribute and where it was written.
type Value struct {
	report.Pos
	V any // string, float64, bool, []any, map[string]any or nil
}

// Block is one nested block (disk, network, serial, ...).
type Block struct {
	report.Pos
	Attrs  map[string]Value
	Blocks map[string][]*Block
}

// Unresolved is an expression the reader could not evaluate.
type Unresolved struct {
	report.Pos
	Attr string // dotted path: "memory", "disk.size"
	Expr string // the expression as written
	Why  string
}

// Source says where a VM was read from.
type Source string

const (
	FromConfig Source = "configuration" // .tf files
	FromState  Source = "state"         // terraform show -json, .tfstate
)

// VM is one proxmox_vm_qemu resource instance.
type VM struct {
	Block
	Address    string // proxmox_vm_qemu.lb[0]
	Source     Source
	Unresolved []Unresolved
}

// Other is a block of the configuration or state that is not a
// proxmox_vm_qemu resource, for the report.
type Other struct {
	report.Pos
	Kind string // resource, data, provider, terraform, output, module, ...
	What string // resource "local_file" "x", provider "proxmox", module "m"
}

// Result is everything read from one source.
type Result struct {
	VMs   []*VM
	Other []Other
}
