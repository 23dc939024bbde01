// Package importer turns an existing HAProxy + keepalived + Terraform setup
// into a gitedge routes repository (gitedge import): haproxy.cfg frontends
// become listeners and routes, its backends Backends; the keepalived.conf of
// each node merges into one failover entry with a priority per node; the
// Telmate proxmox_vm_qemu resources become VirtualMachines. The output is
// one file per document (edge.yaml, backends/*.yaml, routes/*.yaml,
// vms/*.yaml), each with a comment naming the input lines it came from,
// byte-for-byte the same for the same input, and checked by gitedge's own
// loader before anything is written.
//
// Everything that cannot be carried over, or is carried over with a
// difference a client could see, is in the Report with its file and line;
// nothing is dropped silently. Strict turns those items into an error.
package importer
