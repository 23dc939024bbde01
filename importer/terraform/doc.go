// Package terraform reads the Telmate proxmox_vm_qemu resources of a
// Terraform setup, from three sources: the configuration (.tf files,
// parsed with HCL, literal values and var./local. references resolved from
// variable defaults, tfvars and locals, count and for_each expanded), the
// JSON of "terraform show -json", and a .tfstate file. Each resource
// instance becomes a VM: its attributes and nested blocks as plain values
// (string, float64, bool, []any, map[string]any), with the line it came
// from, and the expressions it could not resolve.
package terraform
