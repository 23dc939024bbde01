// Package packaging builds gitedge's release artifacts: the Debian package
// (with goreleaser's nfpm as a library), the tar.gz archives and their
// SHA256SUMS. The files it ships live next to it: the systemd unit
// (gitedge.service), the example node config (gitedge.yaml) and the
// maintainer scripts (deb/). `make deb` and `make release` drive it through
// the command in packaging/build.
package packaging
