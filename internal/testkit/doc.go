// Package testkit holds what gitedge's tests share: loopback ports and
// listeners, synchronised buffers and test loggers, self-signed
// certificates, golden files, copied trees, waiting with a deadline, and
// the field mutations that keep Equal methods and field tables from going
// stale. Subpackage nstest holds the network-namespace helpers (Linux).
// Only tests import it.
package testkit
