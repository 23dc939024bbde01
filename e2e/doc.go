// Package e2e holds the multi-node tests: gitedge binaries in network
// namespaces, driven as black boxes (build tag e2e; `make e2e`, as root).
package e2e
