// Package failover floats virtual IPs between edge nodes with VRRP: version
// 3 (RFC 5798) for IPv4 and IPv6 and version 2 (RFC 3768) with keepalived's
// PASS authentication, VIPs set with netlink, gratuitous ARPs and
// unsolicited neighbour advertisements, and tracking of interfaces and the
// local proxy's health.
//
// Each instance is a Router: a single-owner state machine that talks to the
// network through a Transport and to the host through Effects. Manager runs
// the Routers of a Config on the real system (raw IP sockets, netlink,
// AF_PACKET). A new Config changes running instances in place (priority,
// VIPs, timers, preemption, auth, peers, tracking) without a new election;
// only a change that needs a new socket restarts one (changeRules).
//
// An upgrade in place hands the running instances to a new process
// without a new election (handover.go): the old Manager's Handover gives
// a Snapshot, the new Manager resumes it (Options.Inherit) and advertises
// before the old one stops without a word (Release), so a master stays
// master and its backups see nothing.
//
// Errors name the instance and the interface once each and never the
// package: the caller says "failover" (reconcile's step, gitedge vrrp).
package failover
