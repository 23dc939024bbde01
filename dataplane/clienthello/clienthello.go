// Package clienthello reads the server name (SNI, RFC 6066 §3) from a TLS
// ClientHello without terminating TLS: it peeks at the first handshake
// message, which may be split across TLS records and TCP segments, and never
// allocates. The bytes stay untouched for the real server.
package clienthello

import "errors"

var (
	// ErrIncomplete means more bytes are needed.
	ErrIncomplete = errors.New("clienthello: incomplete")
	// ErrNotTLS means the stream does not start with a TLS handshake record.
	ErrNotTLS = errors.New("clienthello: not a TLS handshake")
	// ErrMalformed means a ClientHello that does not parse.
	ErrMalformed = errors.New("clienthello: malformed ClientHello")
	// ErrTooLarge means a ClientHello larger than MaxHello.
	ErrTooLarge = errors.New("clienthello: ClientHello too large")
	// ErrBadName means a server_name that is not a host name.
	ErrBadName = errors.New("clienthello: malformed server name")
	// ErrFragmented means a ClientHello split into more than MaxRecords
	// records.
	ErrFragmented = errors.New("clienthello: ClientHello split into too many records")
)

// MaxRecords bounds the records one ClientHello may span. TLS allows a
// record per byte, and the message is parsed anew as each read adds to it:
// a 2.6 KB ClientHello in 1-byte records cost about 96 ms of CPU. Clients
// send it in one record, two when it passes the 16 KB record limit.
const MaxRecords = 64

// MaxHello bounds the ClientHello message (post-quantum key shares make them
// ~1.8 KB today; 16 KB leaves room for large session tickets).
const MaxHello = 16 << 10

const (
	recordHeaderLen    = 5
	recordHandshake    = 22
	maxRecordLen       = 1<<14 + 256 // TLSPlaintext.length limit, with slack for TLS 1.3's compat
	handshakeHeaderLen = 4
	typeClientHello    = 1
	extServerName      = 0
)

// ServerName returns the host name the ClientHello at the start of b asks
// for, lower-case as sent (an empty slice when there is no SNI). When the
// message spans several records, its fragments are joined into scratch,
// which must then have room for the message (MaxHello bytes); the result
// may alias b or scratch.
func ServerName(b, scratch []byte) ([]byte, error) {
	msg, err := handshakeMessage(b, scratch)
	if err != nil {
		return nil, err
	}
	return parseHello(msg)
}

// handshakeMessage returns the first handshake message of the record
// stream b, joining fragments when it spans records.
func handshakeMessage(b, scratch []byte) ([]byte, error) {
	if len(b) >= 1 && b[0] != recordHandshake {
		return nil, ErrNotTLS
	}
	if len(b) >= 2 && b[1] != 3 {
		return nil, ErrNotTLS
	}
	if len(b) < recordHeaderLen {
		return nil, ErrIncomplete
	}
	// Fast path: the whole message in the first record.
	rlen := int(b[3])<<8 | int(b[4])
	if rlen == 0 || rlen > maxRecordLen {
		return nil, ErrMalformed
	}
	if rlen >= handshakeHeaderLen {
		if len(b) < recordHeaderLen+handshakeHeaderLen {
			return nil, ErrIncomplete
		}
		h := b[recordHeaderLen:]
		if h[0] != typeClientHello {
			return nil, ErrMalformed
		}
		mlen := int(h[1])<<16 | int(h[2])<<8 | int(h[3])
		if mlen > MaxHello {
			return nil, ErrTooLarge
		}
		if handshakeHeaderLen+mlen <= rlen {
			if len(b) < recordHeaderLen+handshakeHeaderLen+mlen {
				return nil, ErrIncomplete
			}
			return h[handshakeHeaderLen : handshakeHeaderLen+mlen], nil
		}
	}
	// Slow path: gather the handshake bytes from consecutive records.
	n, need := 0, handshakeHeaderLen
	known := false
	for off, records := 0, 0; ; records++ {
		if records == MaxRecords {
			return nil, ErrFragmented
		}
		if len(b)-off < recordHeaderLen {
			return nil, ErrIncomplete
		}
		if b[off] != recordHandshake || b[off+1] != 3 {
			return nil, ErrMalformed
		}
		rlen := int(b[off+3])<<8 | int(b[off+4])
		if rlen == 0 || rlen > maxRecordLen {
			return nil, ErrMalformed
		}
		frag := b[off+recordHeaderLen:]
		complete := len(frag) >= rlen
		if complete {
			frag = frag[:rlen]
		}
		for len(frag) > 0 && n < need {
			if n == len(scratch) {
				return nil, ErrTooLarge
			}
			c := copy(scratch[n:min(need, len(scratch))], frag)
			n += c
			frag = frag[c:]
			if !known && n >= handshakeHeaderLen {
				if scratch[0] != typeClientHello {
					return nil, ErrMalformed
				}
				mlen := int(scratch[1])<<16 | int(scratch[2])<<8 | int(scratch[3])
				if mlen > MaxHello {
					return nil, ErrTooLarge
				}
				need, known = handshakeHeaderLen+mlen, true
			}
		}
		if known && n >= need {
			return scratch[handshakeHeaderLen:need], nil
		}
		if !complete {
			return nil, ErrIncomplete
		}
		off += recordHeaderLen + rlen
	}
}

// parseHello walks a ClientHello body (RFC 8446 §4.1.2) to its server_name.
func parseHello(m []byte) ([]byte, error) {
	// legacy_version, random
	if len(m) < 2+32 {
		return nil, ErrMalformed
	}
	m = m[34:]
	var ok bool
	// legacy_session_id <0..32>
	if m, ok = skipVector(m, 1, 32); !ok {
		return nil, ErrMalformed
	}
	// cipher_suites <2..2^16-2>
	if m, ok = skipVector(m, 2, 1<<16-2); !ok {
		return nil, ErrMalformed
	}
	// legacy_compression_methods <1..2^8-1>
	if m, ok = skipVector(m, 1, 255); !ok {
		return nil, ErrMalformed
	}
	if len(m) == 0 {
		return m[:0], nil // no extensions (SSL 3.0 style): no SNI
	}
	if len(m) < 2 {
		return nil, ErrMalformed
	}
	elen := int(m[0])<<8 | int(m[1])
	m = m[2:]
	if elen != len(m) {
		return nil, ErrMalformed
	}
	var name []byte
	seen := false
	for len(m) > 0 {
		if len(m) < 4 {
			return nil, ErrMalformed
		}
		typ := int(m[0])<<8 | int(m[1])
		l := int(m[2])<<8 | int(m[3])
		m = m[4:]
		if l > len(m) {
			return nil, ErrMalformed
		}
		data := m[:l]
		m = m[l:]
		if typ != extServerName {
			continue
		}
		if seen {
			return nil, ErrMalformed // an extension may appear once (RFC 8446 §4.2)
		}
		seen = true
		n, err := parseServerName(data)
		if err != nil {
			return nil, err
		}
		name = n
	}
	if name == nil {
		return m[:0], nil
	}
	return name, nil
}

// parseServerName reads the host_name of a server_name extension.
func parseServerName(d []byte) ([]byte, error) {
	if len(d) < 2 {
		return nil, ErrMalformed
	}
	l := int(d[0])<<8 | int(d[1])
	d = d[2:]
	if l != len(d) || l == 0 {
		return nil, ErrMalformed
	}
	var name []byte
	for len(d) > 0 {
		if len(d) < 3 {
			return nil, ErrMalformed
		}
		typ := d[0]
		nl := int(d[1])<<8 | int(d[2])
		d = d[3:]
		if nl > len(d) {
			return nil, ErrMalformed
		}
		if typ == 0 { // host_name
			if name != nil {
				return nil, ErrMalformed // one name of each type (RFC 6066 §3)
			}
			name = d[:nl]
			if l := len(name); l > 1 && name[l-1] == '.' {
				// Not in RFC 6066's form, but sent (openssl s_client
				// -servername a.test.): the same host as without it.
				name = name[:l-1]
			}
			if !validName(name) {
				return nil, ErrBadName
			}
		}
		d = d[nl:]
	}
	if name == nil {
		return d[:0], nil
	}
	return name, nil
}

// validName accepts a DNS host name without a trailing dot (RFC 6066 §3).
func validName(n []byte) bool {
	if len(n) == 0 || len(n) > 253 || n[0] == '.' || n[len(n)-1] == '.' {
		return false
	}
	for _, c := range n {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_'
		if !ok {
			return false
		}
	}
	return true
}

// skipVector skips a vector with a lenBytes length prefix of at most max.
func skipVector(m []byte, lenBytes, max int) ([]byte, bool) {
	if len(m) < lenBytes {
		return nil, false
	}
	l := int(m[0])
	if lenBytes == 2 {
		l = l<<8 | int(m[1])
	}
	m = m[lenBytes:]
	if l > max || l > len(m) {
		return nil, false
	}
	return m[l:], true
}
