package httphead

// The chunked-body errors (RFC 9112 §7.1).
var (
	ErrChunkSize    = &Error{400, "malformed chunk size"}
	ErrChunkExt     = &Error{400, "malformed chunk extension"}
	ErrChunkData    = &Error{400, "chunk data not followed by CRLF"}
	ErrTrailer      = &Error{400, "malformed trailer field"}
	ErrTrailerLarge = &Error{400, "trailer section too large"}
)

// MaxTrailerBytes bounds the trailer section of a chunked body.
const MaxTrailerBytes = 32 << 10

const (
	csSize          = iota // chunk-size hex digits
	csSizeMore             // after at least one digit
	csBWS                  // whitespace after the size, before ';'
	csExtName0             // after ';': whitespace, then an extension's name
	csExtName              // in a name (a token)
	csExtAfterName         // whitespace after a name: '=' or ';' next
	csExtVal0              // after '=': whitespace, then a token or a quoted string
	csExtToken             // in a token value
	csExtQuoted            // in a quoted-string value
	csExtEscape            // after a backslash in a quoted string
	csExtAfterQuote        // after a quoted string's closing quote
	csExtAfterVal          // whitespace after a value: ';' next
	csSizeLF               // CR seen after size line, LF expected
	csData                 // chunk data
	csDataCR               // CR expected after data
	csDataLF               // LF expected after data
	csTrailerStart         // start of a trailer line (or the final empty line)
	csTrailer              // inside a trailer field line
	csTrailerLF            // CR seen in a trailer line, LF expected
	csFinalLF              // CR of the final empty line seen, LF expected
	csDone
)

// Chunked finds the end of a chunked body as its bytes stream past,
// validating the framing without changing it, so the proxy forwards the
// bytes as they came. The zero value is ready for a new body.
type Chunked struct {
	state    uint8
	digits   uint8
	size     uint64 // remaining data bytes of the current chunk
	trailer  int    // trailer bytes seen
	lineName bool   // a trailer line: still in the field name
	lineLen  int
}

// Reset prepares c for a new body.
func (c *Chunked) Reset() { *c = Chunked{} }

// Done reports whether the whole body has been scanned.
func (c *Chunked) Done() bool { return c.state == csDone }

// DataLeft returns how many bytes of chunk data come next without framing
// in between: the caller may move that many bytes without scanning (as with
// splice) and then call Skip.
func (c *Chunked) DataLeft() uint64 {
	if c.state == csData {
		return c.size
	}
	return 0
}

// Skip accounts for n bytes of chunk data moved without Scan; n must be at
// most DataLeft.
func (c *Chunked) Skip(n uint64) {
	c.size -= n
	if c.size == 0 {
		c.state = csDataCR
	}
}

// Scan consumes the body bytes at the start of p and returns how many
// belong to the body: all of p, or fewer when the body ends inside p
// (Done is then true and the rest of p is the next message).
func (c *Chunked) Scan(p []byte) (int, error) {
	i := 0
	for i < len(p) {
		b := p[i]
		switch c.state {
		case csSize, csSizeMore:
			v, ok := unhex(b)
			if ok {
				if c.digits++; c.digits > 15 {
					return i, ErrChunkSize
				}
				c.size = c.size<<4 | uint64(v)
				c.state = csSizeMore
				break
			}
			if c.state == csSize {
				return i, ErrChunkSize
			}
			switch b {
			case '\r':
				c.state = csSizeLF
			case ';':
				c.state = csExtName0
			case ' ', '\t':
				c.state = csBWS
			default:
				return i, ErrChunkSize
			}
		case csBWS, csExtName0, csExtName, csExtAfterName, csExtVal0, csExtToken,
			csExtQuoted, csExtEscape, csExtAfterQuote, csExtAfterVal:
			if !c.ext(b) {
				return i, ErrChunkExt
			}
			// Whitespace and extensions share one bound: neither is a free pass.
			if c.lineLen++; c.lineLen > maxChunkLine {
				return i, ErrChunkExt
			}
		case csSizeLF:
			if b != '\n' {
				return i, ErrChunkSize
			}
			c.digits, c.lineLen = 0, 0
			if c.size == 0 {
				c.state = csTrailerStart
			} else {
				c.state = csData
			}
		case csData:
			n := uint64(len(p) - i)
			if n > c.size {
				n = c.size
			}
			i += int(n)
			c.Skip(n)
			continue
		case csDataCR:
			if b != '\r' {
				return i, ErrChunkData
			}
			c.state = csDataLF
		case csDataLF:
			if b != '\n' {
				return i, ErrChunkData
			}
			c.state = csSize
		case csTrailerStart:
			switch {
			case b == '\r':
				c.state = csFinalLF
			case b == ' ' || b == '\t' || !isTchar(b):
				return i, ErrTrailer // obs-fold or a bad name
			default:
				c.state, c.lineName = csTrailer, true
			}
		case csTrailer:
			switch {
			case b == '\r':
				if c.lineName {
					return i, ErrTrailer // no colon
				}
				c.state = csTrailerLF
			case c.lineName && b == ':':
				c.lineName = false
			case c.lineName && !isTchar(b):
				return i, ErrTrailer
			case !c.lineName && ((b < ' ' && b != '\t') || b == 0x7f):
				return i, ErrTrailer
			}
		case csTrailerLF:
			if b != '\n' {
				return i, ErrTrailer
			}
			c.state = csTrailerStart
		case csFinalLF:
			if b != '\n' {
				return i, ErrTrailer
			}
			c.state = csDone
			return i + 1, nil
		case csDone:
			return i, nil
		}
		if c.state >= csTrailerStart {
			if c.trailer++; c.trailer > MaxTrailerBytes {
				return i, ErrTrailerLarge
			}
		}
		i++
	}
	return i, nil
}

// Decode is Scan for a recipient that cannot take the chunked coding (an
// HTTP/1.0 client: RFC 9112 §6.1, and §7.1.3 for how to decode). It
// consumes the body bytes at the start of p as Scan does, validating the
// same grammar, and moves the chunk data among them to the front of p,
// dropping the framing, the extensions and the trailer section. It
// returns how many bytes of p it consumed and how many data bytes are now
// at p[:data]. Chunk data may also be moved past Decode with DataLeft and
// Skip, as past Scan.
func (c *Chunked) Decode(p []byte) (n, data int, err error) {
	for n < len(p) && !c.Done() {
		if left := c.DataLeft(); left > 0 {
			k := int(min(uint64(len(p)-n), left))
			data += copy(p[data:], p[n:n+k])
			n += k
			c.Skip(uint64(k))
			continue
		}
		// Framing, a byte at a time (a few bytes a chunk) until the next
		// chunk's data or the body's end.
		k, err := c.Scan(p[n : n+1])
		n += k
		if err != nil {
			return n, data, err
		}
	}
	return n, data, nil
}

// maxChunkLine bounds what follows a chunk's size on its line.
const maxChunkLine = 4096

// ext takes one byte of a chunk size line after the size and reports
// whether the line still follows RFC 9112 §7.1.1's grammar:
//
//	chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//	chunk-ext-name = token; chunk-ext-val = token / quoted-string
//
// The whole grammar, not only "no control bytes until CR": a line this
// proxy passes on must end where every server that follows the grammar
// ends it, and an unbalanced quote or a stray byte is where parsers
// disagree (a server that reads a quoted string past the CR would take
// the next chunk for part of the line).
func (c *Chunked) ext(b byte) bool {
	ws := b == ' ' || b == '\t'
	switch c.state {
	case csBWS, csExtAfterVal:
		switch {
		case b == ';':
			c.state = csExtName0
		case !ws:
			return false
		}
	case csExtName0:
		switch {
		case isTchar(b):
			c.state = csExtName
		case !ws:
			return false
		}
	case csExtName, csExtAfterName:
		switch {
		case b == '=':
			c.state = csExtVal0
		case b == ';':
			c.state = csExtName0
		case ws:
			c.state = csExtAfterName
		case c.state == csExtName && b == '\r':
			c.state = csSizeLF
		case c.state == csExtAfterName || !isTchar(b):
			return false
		}
	case csExtVal0:
		switch {
		case b == '"':
			c.state = csExtQuoted
		case isTchar(b):
			c.state = csExtToken
		case !ws:
			return false
		}
	case csExtToken, csExtAfterQuote:
		switch {
		case b == ';':
			c.state = csExtName0
		case ws:
			c.state = csExtAfterVal
		case b == '\r':
			c.state = csSizeLF
		case c.state == csExtAfterQuote || !isTchar(b):
			return false
		}
	case csExtQuoted:
		switch {
		case b == '"':
			c.state = csExtAfterQuote
		case b == '\\':
			c.state = csExtEscape
		case b < ' ' && b != '\t', b == 0x7f:
			return false // CR and LF among them: a quoted string is on one line
		}
	case csExtEscape:
		if b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
		c.state = csExtQuoted
	}
	return true
}

func unhex(b byte) (byte, bool) {
	switch {
	case b >= '0' && b <= '9':
		return b - '0', true
	case b >= 'a' && b <= 'f':
		return b - 'a' + 10, true
	case b >= 'A' && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}
