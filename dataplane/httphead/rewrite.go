package httphead

import (
	"bytes"
	"net/netip"
	"strconv"
)

// Rewrite says how a request head changes on its way to a server.
type Rewrite struct {
	// ForwardedFor, when valid, appends an X-Forwarded-For field with this
	// address and replaces X-Forwarded-Proto with Proto.
	ForwardedFor netip.Addr
	Proto        string
}

// NeedsRewrite reports whether the head must be rebuilt before it goes to a
// server that should keep the connection open: hop-by-hop fields other
// than a plain keep-alive, a close, forwarding fields, a repeated
// Content-Length, an upgrade the proxy does not pass on, a Host field that
// is not the absolute-form target's authority, an HTTP/1.0 request
// that would otherwise make the server close, or a version other than ours.
func (r *Request) NeedsRewrite(rw *Rewrite) bool {
	return r.Flags&(HopOther|ConnClose|CLList|VersionOther) != 0 || rw.ForwardedFor.IsValid() || r.newHost ||
		(r.Minor == 0 && r.Flags&ConnKeepAlive == 0) ||
		(r.Flags&ConnUpgrade != 0 && !r.Upgrade()) // an upgrade not passed on
}

// AppendRequest appends to dst the head of r (parsed from src) without its
// hop-by-hop fields, asking the server to keep the connection open (or to
// upgrade, for an upgrade request), with the forwarding fields of rw. An
// absolute-form target's authority replaces a Host field naming another
// host, or is added as Host when there is none (RFC 9112 §3.2.2): the
// server must see the host the request was routed by. An HTTP/1.2+
// request goes as HTTP/1.1: a proxy sends its own version (RFC 9110 §6.2).
func AppendRequest(dst, src []byte, r *Request, rw *Rewrite) []byte {
	upgrade := r.Upgrade()
	fwd := rw.ForwardedFor.IsValid()
	line, rest, _ := nextLine(src[:r.HeadLen])
	if r.Flags&VersionOther != 0 {
		// The version is the line's last 8 bytes (parseVersion).
		dst = append(dst, line[:len(line)-8]...)
		dst = append(dst, "HTTP/1.1"...)
	} else {
		dst = append(dst, line...)
	}
	dst = append(dst, "\r\n"...)
	if r.newHost {
		// First, where a client puts it (RFC 9112 §3.2).
		dst = append(dst, "Host: "...)
		dst = append(dst, r.Host...)
		dst = append(dst, "\r\n"...)
	}
	for {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i-1]
		rest = rest[i+1:]
		if len(line) == 0 {
			break
		}
		name := line[:bytes.IndexByte(line, ':')]
		switch {
		case isHopByHop(name), r.connTokens.has(name):
			continue
		case upgrade && len(name) == 7 && equalFold(name, "upgrade"):
		case len(name) == 7 && equalFold(name, "upgrade"):
			continue // Upgrade without Connection: upgrade means nothing
		case fwd && len(name) == 17 && equalFold(name, "x-forwarded-proto"):
			continue
		case r.newHost && len(name) == 4 && equalFold(name, "host"):
			continue
		case r.Flags&CLList != 0 && isContentLength(name):
			continue
		}
		dst = append(dst, line...)
		dst = append(dst, "\r\n"...)
	}
	if r.Flags&CLList != 0 {
		dst = appendContentLength(dst, r.ContentLength)
	}
	switch {
	case upgrade:
		dst = append(dst, "Connection: upgrade\r\n"...)
	case r.Minor == 0:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	if fwd {
		dst = append(dst, "X-Forwarded-For: "...)
		dst = rw.ForwardedFor.AppendTo(dst)
		dst = append(dst, "\r\nX-Forwarded-Proto: "...)
		dst = append(dst, rw.Proto...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// ForwardAsIs reports whether the response head can go to the client
// unchanged: it names no hop-by-hop field but Connection, its version is
// ours (HTTP/1.0 or 1.1), and what it implies about the connection is what
// the proxy will do (keepAlive).
func (r *Response) ForwardAsIs(keepAlive bool, clientMinor uint8) bool {
	if r.Flags&(HopOther|HasHopMark|CLList|VersionOther) != 0 {
		return false
	}
	if r.Status == 101 {
		return true
	}
	if r.Flags&(ConnUpgrade|HasUpgrade) == ConnUpgrade|HasUpgrade {
		return false // its Upgrade goes (AppendResponse)
	}
	if r.Chunked && clientMinor == 0 {
		return false // its Transfer-Encoding goes (AppendResponse)
	}
	// The client reads persistence off the status line's version (RFC 9112
	// §9.3); an HTTP/1.0 client wants keep-alive spelled out either way.
	implied := r.Flags&ConnClose == 0 && ((clientMinor == 1 && r.Minor == 1) || r.Flags&ConnKeepAlive != 0)
	return implied == keepAlive
}

// AppendResponse appends to dst the head of r (parsed from src) with its
// hop-by-hop fields replaced by what the proxy does with the client
// connection: "Connection: close", or keep-alive for an HTTP/1.0 client.
// An HTTP/1.0 client does not get a chunked Transfer-Encoding: the proxy
// decodes the body for it (Chunked.Decode) and closes the connection after
// it, which is then the body's end (RFC 9112 §6.3 item 8). An Upgrade
// field named by Connection goes with it (RFC 9110 §7.6.1) unless the
// response is a 101: an offer such as Apache's "Upgrade: h2c" is for the
// proxy's connection to the server, not the client's. An HTTP/1.2+ status
// line goes as HTTP/1.1: a proxy sends its own version (RFC 9110 §6.2).
func AppendResponse(dst, src []byte, r *Response, keepAlive bool, clientMinor uint8) []byte {
	line, rest, _ := nextLine(src[:r.HeadLen])
	if r.Flags&VersionOther != 0 {
		dst = append(dst, "HTTP/1.1"...)
		line = line[8:] // the version's 8 bytes (ParseResponse)
	}
	dst = append(dst, line...)
	dst = append(dst, "\r\n"...)
	switching := r.Status == 101
	dropTE := r.Chunked && clientMinor == 0
	dropUpgrade := !switching && r.Flags&ConnUpgrade != 0
	for {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i-1]
		rest = rest[i+1:]
		if len(line) == 0 {
			break
		}
		name := line[:bytes.IndexByte(line, ':')]
		if isHopByHop(name) || r.connTokens.has(name) || isHopMark(name) ||
			(r.Flags&CLList != 0 && isContentLength(name)) ||
			(dropTE && len(name) == 17 && equalFold(name, "transfer-encoding")) ||
			(dropUpgrade && len(name) == 7 && equalFold(name, "upgrade")) {
			continue
		}
		dst = append(dst, line...)
		dst = append(dst, "\r\n"...)
	}
	if r.Flags&CLList != 0 {
		dst = appendContentLength(dst, r.ContentLength)
	}
	switch {
	case r.Status < 200 && !switching:
		// An interim answer says nothing about the connection.
	case switching:
		dst = append(dst, "Connection: upgrade\r\n"...)
	case !keepAlive:
		dst = append(dst, "Connection: close\r\n"...)
	case clientMinor == 0 || r.Minor == 0:
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

func isContentLength(name []byte) bool {
	return len(name) == 14 && equalFold(name, "content-length")
}

// appendContentLength appends the one Content-Length field line that
// replaces a repeated one.
func appendContentLength(dst []byte, n int64) []byte {
	dst = append(dst, "Content-Length: "...)
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, "\r\n"...)
}

func isHopByHop(name []byte) bool {
	switch len(name) {
	case 2:
		return equalFold(name, "te")
	case 10:
		return equalFold(name, "connection") || equalFold(name, "keep-alive")
	case 16:
		return equalFold(name, "proxy-connection")
	}
	return false
}

func (t *tokens) has(name []byte) bool {
	for i := 0; i < t.n; i++ {
		if bytes.EqualFold(t.tok[i], name) {
			return true
		}
	}
	return false
}

// HopMarkField is the request field in which each gitedge proxy on the
// path appends its own random id. A proxy that receives a request carrying
// its own id has been sent its own request back: a loop (RFC 9110 §7.6.3
// gives Via this role; a private field is used so that servers which
// change behaviour on Via, as nginx's gzip_proxied does, see no
// difference). Responses never carry it to clients.
const HopMarkField = "Gitedge-Hop"

const hopMarkLower = "gitedge-hop"

func isHopMark(name []byte) bool {
	return len(name) == len(hopMarkLower) && equalFold(name, hopMarkLower)
}

// CarriesHopMark reports whether the request head src (parsed into r)
// has a HopMarkField naming id among its comma-separated values.
func (r *Request) CarriesHopMark(src []byte, id string) bool {
	if r.Flags&HasHopMark == 0 || id == "" {
		return false
	}
	_, rest, _ := nextLine(src[:r.HeadLen])
	for {
		i := bytes.IndexByte(rest, '\n')
		line := rest[:i-1]
		rest = rest[i+1:]
		if len(line) == 0 {
			return false
		}
		c := bytes.IndexByte(line, ':')
		if !isHopMark(line[:c]) {
			continue
		}
		for v := range bytes.SplitSeq(line[c+1:], []byte(",")) {
			if string(trimOWS(v)) == id {
				return true
			}
		}
	}
}
