// Package e2e holds the multi-node tests: gitedge binaries in network
// namespaces, driven as black boxes (build tag e2e; `make e2e`, as root).
//
// The lab is a bridge in a switch namespace with one namespace per node,
// a client, and, for the fleet tests, a git server (Debian's git-daemon
// serving a bare repository the test commits to with the git CLI), the
// Proxmox simulator (`gitedge pvesim`) behind an access log, and echo
// backends that report the PROXY header and X-Forwarded-For they got.
// Nodes run the built binary: `gitedge vrrp` for the failover tests,
// `gitedge run` with their own node config and stateDir for the fleet
// (TestFleet*, the scenarios of issue 9) and fault (TestFaults, issue 10)
// tests; keepalived runs beside them for the interop and mixed-group
// tests. The suite prints a table of the figures it measured at the end.
package e2e
