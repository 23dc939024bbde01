// Package vrrp encodes and decodes the wire formats gitedge's failover
// speaks: VRRP advertisements (RFC 3768 version 2, RFC 5798 version 3),
// gratuitous ARP requests and unsolicited IPv6 neighbour advertisements.
//
// Wire types follow the shape of a plain struct with MarshalBinary and
// UnmarshalBinary plus exported sentinel errors; Encode and Decode add the
// checksum, which for version 3 depends on the IP addresses around the
// message (RFC 5798 §5.2.8).
package vrrp
