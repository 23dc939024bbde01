// Package keepalived parses the parts of a keepalived.conf that gitedge
// import carries over: vrrp_instance blocks, vrrp_script and track_script,
// global_defs' vrrp_version, and include. Other blocks and directives are
// kept as written so the importer can report them. Errors (an unterminated
// block, a bad address, a VRID out of range, a template placeholder left
// unfilled) carry the file and line.
package keepalived
