// Package frrlab is the upstream router of the BGP tests: FRR's zebra and
// bgpd started in a network namespace the test made, with their own
// configuration, vty socket and logs in a directory of the test's, and a
// watch on that namespace's FIB. The bgp package's lab (the library) and
// the e2e BGP tests (gitedge run) share it.
//
// Linux only (network namespaces, netlink); tests only.
package frrlab
