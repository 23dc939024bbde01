// Package haproxy is a small, strict parser of HAProxy's configuration
// format, enough for gitedge import: the global, defaults, frontend,
// backend and listen sections, defaults inherited as HAProxy inherits them
// (each defaults section applies to the proxies that follow it, named ones
// through "from"), and typed values for the directives gitedge can carry
// over (bind, mode, acl, use_backend, default_backend, balance, server and
// default-server, timeouts, retries, options, tcp-request). Every other
// directive is kept as written so the importer can report it.
//
// It checks what HAProxy would refuse (a directive out of its section, a
// bad address or time, an ACL used but never defined, a backend that does
// not exist) and returns every such error with its file and line.
package haproxy
