// Package e2e holds black-box tests of the built gitedge binary in network
// namespaces (build tag e2e; run with `make e2e` as root).
package e2e
