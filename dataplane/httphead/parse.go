package httphead

import (
	"bytes"
	"errors"
)

// Error is a malformed head, with the status a server answers it with
// (400, 431, 501, 505 for requests; a proxy answers a bad response 502).
type Error struct {
	Status int
	Reason string
}

func (e *Error) Error() string { return "httphead: " + e.Reason }

// ErrIncomplete means the buffer does not hold a whole head yet.
var ErrIncomplete = errors.New("httphead: incomplete head")

// The errors a parse returns; package-level so a bad request costs no
// allocation.
var (
	ErrRequestLine    = &Error{400, "malformed request line"}
	ErrMethod         = &Error{400, "malformed method"}
	ErrTarget         = &Error{400, "malformed request target"}
	ErrVersion        = &Error{400, "malformed HTTP version"}
	ErrVersionSupport = &Error{505, "HTTP version not supported"}
	ErrBareLF         = &Error{400, "line not ended by CRLF"}
	ErrFieldName      = &Error{400, "malformed header field name"}
	ErrFieldValue     = &Error{400, "forbidden character in header field value"}
	ErrObsFold        = &Error{400, "obsolete line folding in header"}
	ErrTooManyFields  = &Error{431, "too many header fields"}
	ErrTooLarge       = &Error{431, "head too large"}
	ErrNoHost         = &Error{400, "HTTP/1.1 request without Host"}
	ErrHost           = &Error{400, "malformed or repeated Host"}
	ErrContentLength  = &Error{400, "malformed or conflicting Content-Length"}
	ErrTEAndCL        = &Error{400, "both Transfer-Encoding and Content-Length"}
	ErrTE             = &Error{400, "Transfer-Encoding not ending in chunked"}
	ErrTE10           = &Error{400, "Transfer-Encoding in an HTTP/1.0 message"}
	ErrTEUnsupported  = &Error{501, "unsupported transfer coding"}
	ErrConnection     = &Error{400, "too many Connection options"}
	ErrStatusLine     = &Error{502, "malformed status line"}
	ErrRespTEAndCL    = &Error{502, "response with both Transfer-Encoding and Content-Length"}
	ErrRespTE10       = &Error{502, "HTTP/1.0 response with Transfer-Encoding"}
	ErrConnect        = &Error{405, "CONNECT is not served by a reverse proxy"}
)

// MaxFields bounds the header fields of one head (HAProxy's default 101).
const MaxFields = 100

// maxConnTokens bounds the options of Connection fields we track.
const maxConnTokens = 8

// Flags are what a head says about the connection and its framing.
type Flags uint16

const (
	ConnClose     Flags = 1 << iota // Connection: close
	ConnKeepAlive                   // Connection: keep-alive
	ConnUpgrade                     // Connection: upgrade
	HasUpgrade                      // an Upgrade field is present
	Expect100                       // Expect: 100-continue
	HopByHop                        // a hop-by-hop field: Connection, Keep-Alive, Proxy-Connection or TE
	HopOther                        // Keep-Alive, Proxy-Connection, TE, or a field named by Connection
	HasXFProto                      // X-Forwarded-Proto is present
	HasCL                           // Content-Length is present
	HasTE                           // Transfer-Encoding is present
	HasConnField                    // a Connection field is present
	HasHopMark                      // a Gitedge-Hop field is present (loop detection)
	CLList                          // Content-Length is a list or repeated: forwarded as one value
	TECoded                         // Transfer-Encoding names a coding besides chunked
	VersionOther                    // HTTP/1.2 to HTTP/1.9: forwarded as HTTP/1.1 (RFC 9110 §6.2)
)

// Request is a parsed request head. Slices alias the parsed buffer.
type Request struct {
	Method []byte
	Target []byte
	// Host is the Host field, or the authority of an absolute-form target,
	// which takes precedence (RFC 9112 §3.2.2). Empty when absent.
	Host  []byte
	Minor uint8 // HTTP/1.Minor
	Flags Flags
	// HeadLen is the length of the head, final CRLF included.
	HeadLen int
	// ContentLength is the body length; -1 when the body is chunked or absent.
	ContentLength int64
	Chunked       bool
	IsHEAD        bool
	// newHost: the target is absolute-form and the Host field is absent or
	// names another host; the server gets Host: Host (RFC 9112 §3.2.2).
	newHost    bool
	connTokens tokens
}

// Response is a parsed response head. Slices alias the parsed buffer.
type Response struct {
	Status  int
	Minor   uint8
	Flags   Flags
	HeadLen int
	// ContentLength is the body length; -1 when chunked or delimited by close.
	ContentLength int64
	Chunked       bool
	connTokens    tokens
}

type tokens struct {
	n   int
	tok [maxConnTokens][]byte
}

// KeepAlive reports whether the client asked to keep the connection open
// after this request (RFC 9112 §9.3).
func (r *Request) KeepAlive() bool {
	if r.Flags&ConnClose != 0 {
		return false
	}
	return r.Minor == 1 || r.Flags&ConnKeepAlive != 0
}

// Upgrade reports whether the request asks to switch protocols. An
// HTTP/1.0 request cannot (RFC 9110 §7.8: its Upgrade is ignored), nor,
// here, one with a body: the new protocol would start after a body the
// proxy is still moving (WebSocket's handshake has none).
func (r *Request) Upgrade() bool {
	return r.Minor == 1 && !r.HasBody() && r.Flags&(ConnUpgrade|HasUpgrade) == ConnUpgrade|HasUpgrade
}

// HasBody reports whether a body follows the head.
func (r *Request) HasBody() bool { return r.Chunked || r.ContentLength > 0 }

// BodyNone, BodyLength, BodyChunked and BodyUntilClose say how a
// response's body is delimited.
const (
	BodyNone = iota
	BodyLength
	BodyChunked
	BodyUntilClose
)

// BodyKind says how the body of this response to a request is delimited
// (RFC 9112 §6.3).
func (r *Response) BodyKind(head bool) int {
	switch {
	case head || r.Status < 200 || r.Status == 204 || r.Status == 304:
		return BodyNone
	case r.Chunked:
		return BodyChunked
	case r.ContentLength >= 0:
		if r.ContentLength == 0 {
			return BodyNone
		}
		return BodyLength
	}
	return BodyUntilClose
}

// KeepAlive reports whether the server will keep the connection open.
func (r *Response) KeepAlive() bool {
	if r.Flags&ConnClose != 0 {
		return false
	}
	return r.Minor == 1 || r.Flags&ConnKeepAlive != 0
}

// HeadComplete reports whether b holds a complete head (a line that is
// empty), scanning from offset from (a previous call's len(b)-3 or 0). It
// returns the head length or 0. A bare LF is reported as ErrBareLF early, so
// a client sending LF-only lines gets 400 at once rather than a timeout.
func HeadComplete(b []byte, from int) (int, error) {
	if from < 0 {
		from = 0
	}
	for i := from; i < len(b); {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return 0, nil
		}
		i += j
		if i == 0 || b[i-1] != '\r' {
			return 0, ErrBareLF
		}
		// An empty line is "\r\n" right after another "\n" (or at the start).
		if i == 1 || (i >= 3 && b[i-2] == '\n') {
			if i == 1 {
				return 0, ErrRequestLine // the head starts with an empty line
			}
			return i + 1, nil
		}
		i++
	}
	return 0, nil
}

// ParseRequest parses the request head at the start of b, which must hold
// the complete head (HeadComplete). It validates every line.
func ParseRequest(b []byte, r *Request) error {
	*r = Request{ContentLength: -1}
	line, rest, err := nextLine(b)
	if err != nil {
		return err
	}
	// request-line = method SP request-target SP HTTP-version
	sp := bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return ErrRequestLine
	}
	r.Method = line[:sp]
	for _, c := range r.Method {
		if !isTchar(c) {
			return ErrMethod
		}
	}
	line = line[sp+1:]
	sp = bytes.IndexByte(line, ' ')
	if sp <= 0 {
		return ErrRequestLine
	}
	r.Target = line[:sp]
	version := line[sp+1:]
	minor, err := parseVersion(version, ErrVersion)
	if err != nil {
		return err
	}
	r.Minor = minor
	for _, c := range r.Target {
		// A fragment is never sent (RFC 9110 §4.2.5); a server reading
		// '#' as part of the path would route what a rule did not see.
		if c <= ' ' || c == 0x7f || c == '#' {
			return ErrTarget
		}
	}
	r.IsHEAD = string(r.Method) == "HEAD"
	var authority []byte
	connect := false
	switch {
	case string(r.Method) == "CONNECT":
		// A reverse proxy does not tunnel CONNECT, whatever its target
		// (405), once its Host has been checked as any request's is (400
		// first).
		connect = true
	case r.Target[0] == '/':
	case len(r.Target) == 1 && r.Target[0] == '*':
		if string(r.Method) != "OPTIONS" {
			return ErrTarget
		}
	default:
		a, ok := absoluteAuthority(r.Target)
		if !ok {
			return ErrTarget
		}
		authority = a
	}
	st := fieldState{cl: -1}
	n, err := parseFields(rest, &st, true)
	if err != nil {
		return err
	}
	r.HeadLen = len(b) - len(rest) + n
	r.Flags, r.connTokens, r.Host = st.flags, st.ct, st.host
	if version[7] > '1' {
		r.Flags |= VersionOther
	}
	// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host field with a
	// valid value, whatever the form of its target; an absolute-form
	// target's authority then wins for routing (§3.2.2), even when the
	// field disagrees. Two Host fields were refused while parsing.
	if st.hosts == 0 && r.Minor == 1 {
		return ErrNoHost
	}
	if !validHost(st.host) {
		return ErrHost
	}
	if connect {
		return ErrConnect
	}
	if authority != nil {
		if !validHost(authority) {
			return ErrTarget
		}
		// Both are ASCII here (validHost): no Unicode folding.
		r.newHost = st.hosts == 0 || !bytes.EqualFold(st.host, authority)
		r.Host = authority
	}
	switch {
	case st.flags&HasTE != 0:
		if r.Minor == 0 {
			return ErrTE10
		}
		if st.flags&HasCL != 0 {
			return ErrTEAndCL
		}
		if !st.chunked {
			return ErrTE
		}
		r.Chunked = true
	case st.flags&HasCL != 0:
		r.ContentLength = st.cl
	}
	return nil
}

// ParseResponse parses the response head at the start of b, which must
// hold the complete head. Errors carry status 502.
func ParseResponse(b []byte, r *Response) error {
	*r = Response{ContentLength: -1}
	line, rest, err := nextLine(b)
	if err != nil {
		return respErr(err)
	}
	// status-line = HTTP-version SP status-code SP [ reason-phrase ]
	if len(line) < 12 || line[8] != ' ' || (len(line) > 12 && line[12] != ' ') {
		return ErrStatusLine
	}
	minor, err := parseVersion(line[:8], ErrStatusLine)
	if err != nil {
		return respErr(err)
	}
	r.Minor = minor
	s := 0
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return ErrStatusLine
		}
		s = s*10 + int(c-'0')
	}
	if s < 100 || s > 599 {
		return ErrStatusLine
	}
	r.Status = s
	for _, c := range line[12:] {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return ErrStatusLine
		}
	}
	st := fieldState{cl: -1}
	n, err := parseFields(rest, &st, false)
	if err != nil {
		return respErr(err)
	}
	r.HeadLen = len(b) - len(rest) + n
	r.Flags, r.connTokens = st.flags, st.ct
	if line[7] > '1' {
		r.Flags |= VersionOther
	}
	switch {
	case st.flags&HasTE != 0:
		if st.flags&HasCL != 0 {
			return ErrRespTEAndCL
		}
		if r.Minor == 0 {
			// Faulty framing (RFC 9112 §6.1): no HTTP/1.0 coding.
			return ErrRespTE10
		}
		// Without a final chunked the body runs to the close (RFC 9112 §6.3 item 4).
		r.Chunked = st.chunked
	case st.flags&HasCL != 0:
		r.ContentLength = st.cl
	}
	return nil
}

func respErr(err error) error {
	if e, ok := err.(*Error); ok && e.Status != 502 {
		return &Error{502, "bad response: " + e.Reason}
	}
	return err
}

// nextLine splits off the first CRLF-terminated line.
func nextLine(b []byte) (line, rest []byte, err error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, nil, ErrIncomplete
	}
	if i == 0 || b[i-1] != '\r' {
		return nil, nil, ErrBareLF
	}
	return b[:i-1], b[i+1:], nil
}

func parseVersion(v []byte, bad *Error) (uint8, error) {
	if len(v) != 8 || string(v[:5]) != "HTTP/" || v[6] != '.' || v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, bad
	}
	if v[5] != '1' {
		if bad == ErrVersion {
			return 0, ErrVersionSupport
		}
		return 0, bad
	}
	if v[7] > '1' {
		// HTTP/1.2+ is handled as 1.1 and forwarded as such (VersionOther).
		return 1, nil
	}
	return v[7] - '0', nil
}

// absoluteAuthority returns the authority of an http(s) absolute-form target.
func absoluteAuthority(t []byte) ([]byte, bool) {
	var rest []byte
	switch {
	case len(t) > 7 && equalFold(t[:7], "http://"):
		rest = t[7:]
	case len(t) > 8 && equalFold(t[:8], "https://"):
		rest = t[8:]
	default:
		return nil, false
	}
	end := bytes.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	a := rest[:end]
	// An http(s) URI with an empty host is invalid (RFC 9110 §4.2.1).
	if len(a) == 0 || a[0] == ':' || bytes.IndexByte(a, '@') >= 0 {
		return nil, false
	}
	return a, true
}

// fieldState collects what the field lines say about framing.
type fieldState struct {
	flags   Flags
	cl      int64
	chunked bool // the last transfer coding seen is chunked
	ct      tokens
	host    []byte
	hosts   int
}

// parseFields validates the field lines of b up to and including the empty
// line, records the framing fields and returns the bytes consumed.
func parseFields(b []byte, st *fieldState, request bool) (int, error) {
	fields, n := 0, 0
	for {
		i := bytes.IndexByte(b[n:], '\n')
		if i < 0 {
			return 0, ErrIncomplete
		}
		i += n
		if i == n || b[i-1] != '\r' {
			return 0, ErrBareLF
		}
		line := b[n : i-1]
		n = i + 1
		if len(line) == 0 {
			return n, nil
		}
		if fields++; fields > MaxFields {
			return 0, ErrTooManyFields
		}
		if line[0] == ' ' || line[0] == '\t' {
			return 0, ErrObsFold
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return 0, ErrFieldName
		}
		name := line[:colon]
		for _, c := range name {
			if !isTchar(c) { // also rejects whitespace before the colon
				return 0, ErrFieldName
			}
		}
		value := line[colon+1:]
		for _, c := range value {
			if (c < ' ' && c != '\t') || c == 0x7f {
				return 0, ErrFieldValue
			}
		}
		value = trimOWS(value)
		switch len(name) {
		case 4:
			if request && equalFold(name, "host") {
				if st.hosts++; st.hosts > 1 {
					return 0, ErrHost
				}
				st.host = value
			}
		case 2:
			if equalFold(name, "te") {
				st.flags |= HopByHop | HopOther
			}
		case 6:
			if equalFold(name, "expect") && equalFold(value, "100-continue") {
				st.flags |= Expect100
			}
		case 7:
			if equalFold(name, "upgrade") {
				st.flags |= HasUpgrade
			}
		case 10:
			if equalFold(name, "connection") {
				st.flags |= HasConnField | HopByHop
				if err := connectionTokens(value, &st.flags, &st.ct); err != nil {
					return 0, err
				}
			} else if equalFold(name, "keep-alive") {
				st.flags |= HopByHop | HopOther
			}
		case 14:
			if equalFold(name, "content-length") {
				v, ok := parseContentLength(value)
				if !ok || (st.flags&HasCL != 0 && st.cl != v) {
					return 0, ErrContentLength
				}
				if st.flags&HasCL != 0 || bytes.IndexByte(value, ',') >= 0 {
					// The same length repeated: accepted, and forwarded
					// as one value (RFC 9110 §8.6), never as it came.
					st.flags |= CLList
				}
				st.flags |= HasCL
				st.cl = v
			}
		case len(HopMarkField):
			if equalFold(name, hopMarkLower) {
				st.flags |= HasHopMark
			}
		case 16:
			if equalFold(name, "proxy-connection") {
				st.flags |= HopByHop | HopOther
			}
		case 17:
			if equalFold(name, "transfer-encoding") {
				st.flags |= HasTE
				if err := transferCodings(value, request, &st.chunked, &st.flags); err != nil {
					return 0, err
				}
			} else if equalFold(name, "x-forwarded-proto") {
				st.flags |= HasXFProto
			}
		}
	}
}

// connectionTokens records the options of a Connection field.
func connectionTokens(v []byte, flags *Flags, ct *tokens) error {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = trimOWS(v[:i]), v[i+1:]
		} else {
			tok, v = trimOWS(v), nil
		}
		switch {
		case len(tok) == 0:
		case endToEnd(tok):
			// Framing and Host belong to every hop (RFC 9110 §7.6.1):
			// dropping one because a Connection option named it would
			// let the next hop read the body differently (a smuggled
			// request). The field stays; the option goes with the
			// Connection field the head is rewritten without.
			*flags |= HopOther
		case equalFold(tok, "close"):
			*flags |= ConnClose
		case equalFold(tok, "keep-alive"):
			*flags |= ConnKeepAlive
		case equalFold(tok, "upgrade"):
			*flags |= ConnUpgrade
		default:
			for _, c := range tok {
				if !isTchar(c) {
					return ErrConnection
				}
			}
			if ct.n == maxConnTokens {
				return ErrConnection
			}
			ct.tok[ct.n] = tok
			ct.n++
			*flags |= HopOther
		}
	}
	return nil
}

// endToEnd reports whether a Connection option names a field that must
// never be removed as hop-by-hop: Content-Length, Transfer-Encoding, Host.
func endToEnd(tok []byte) bool {
	switch len(tok) {
	case 4:
		return equalFold(tok, "host")
	case 14:
		return equalFold(tok, "content-length")
	case 17:
		return equalFold(tok, "transfer-encoding")
	}
	return false
}

// transferCodings adds one Transfer-Encoding field's codings. chunked says
// whether the last coding so far is chunked; a coding after chunked is an
// error, as is, in a request, a coding we do not know (RFC 9112 §6.1).
// Any other coding sets TECoded in flags.
func transferCodings(v []byte, request bool, chunked *bool, flags *Flags) error {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = trimOWS(v[:i]), v[i+1:]
		} else {
			tok, v = trimOWS(v), nil
		}
		if len(tok) == 0 {
			continue
		}
		if *chunked {
			return ErrTE // a coding after chunked
		}
		if equalFold(tok, "chunked") {
			*chunked = true
			continue
		}
		for _, c := range tok {
			if !isTchar(c) && c != ';' && c != '=' && c != ' ' && c != '\t' && c != '"' {
				return ErrTE
			}
		}
		if request && !knownCoding(tok) {
			return ErrTEUnsupported
		}
		*flags |= TECoded
	}
	return nil
}

func knownCoding(t []byte) bool {
	return equalFold(t, "gzip") || equalFold(t, "deflate") || equalFold(t, "compress") ||
		equalFold(t, "x-gzip") || equalFold(t, "x-compress")
}

// parseContentLength accepts 1*DIGIT, or a list of identical values
// ("42, 42"), which RFC 9110 §8.6 lets a recipient treat as one.
func parseContentLength(v []byte) (int64, bool) {
	n := int64(-1)
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = trimOWS(v[:i]), v[i+1:]
			if len(v) == 0 {
				return 0, false
			}
		} else {
			tok, v = trimOWS(v), nil
		}
		if len(tok) == 0 || len(tok) > 18 {
			return 0, false
		}
		var x int64
		for _, c := range tok {
			if c < '0' || c > '9' {
				return 0, false
			}
			x = x*10 + int64(c-'0')
		}
		if n >= 0 && x != n {
			return 0, false
		}
		n = x
	}
	return n, n >= 0
}

func trimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// validHost checks uri-host [":" port]: a reg-name, IPv4 or [IP-literal].
func validHost(h []byte) bool {
	if len(h) == 0 {
		return true
	}
	if h[0] == '[' {
		end := bytes.IndexByte(h, ']')
		if end < 2 {
			return false
		}
		for _, c := range h[1:end] {
			if !(isHex(c) || c == ':' || c == '.' || c == 'v' || c == 'V') {
				return false
			}
		}
		h = h[end+1:]
		if len(h) == 0 {
			return true
		}
		if h[0] != ':' {
			return false
		}
		return allDigits(h[1:])
	}
	if i := bytes.IndexByte(h, ':'); i >= 0 {
		if !allDigits(h[i+1:]) {
			return false
		}
		h = h[:i]
	}
	for _, c := range h {
		if !hostChar[c] {
			return false
		}
	}
	return true
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(b) <= 5
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// equalFold compares ASCII case-insensitively with a lower-case literal.
func equalFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

var tchar, hostChar [256]bool

func init() {
	for c := '0'; c <= '9'; c++ {
		tchar[c], hostChar[c] = true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		tchar[c], hostChar[c] = true, true
		tchar[c-32], hostChar[c-32] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tchar[c] = true
	}
	// reg-name = *( unreserved / pct-encoded / sub-delims )
	for _, c := range "-._~%!$&'()*+,;=" {
		hostChar[c] = true
	}
}

func isTchar(c byte) bool { return tchar[c] }
