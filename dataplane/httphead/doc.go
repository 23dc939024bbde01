// Package httphead parses HTTP/1.x request and response heads in place,
// strictly per RFC 9112, reading only what routing and message framing need
// (request line, Host, Content-Length, Transfer-Encoding, Connection,
// Upgrade, Expect) and never allocating: every slice it returns aliases the
// caller's buffer. It also scans chunked bodies for their end and rewrites
// heads when hop-by-hop fields must go. A proxy forwards the bytes as they
// came whenever no rewrite is needed.
package httphead
