package httphead

import (
	"strings"
	"testing"
)

// validChunked are chunked bodies and the data they carry.
var validChunked = []struct{ name, body, data string }{
	{"one chunk", "5\r\nhello\r\n0\r\n\r\n", "hello"},
	{"two chunks, hex, ext", "3;name=val\r\nabc\r\nA ; x=\"q\"\r\n0123456789\r\n0\r\n\r\n", "abc0123456789"},
	{"trailers", "1\r\nx\r\n0\r\nX-Sum: 1\r\nX-Other: a b\r\n\r\n", "x"},
	{"empty", "0\r\n\r\n", ""},
	{"upper-case hex", "F\r\n0123456789abcde\r\n0\r\n\r\n", "0123456789abcde"},
	{"extensions, every form", "2 ;a; b=c ;d = \"e;\\\"f\\\\\" ;g=\"\"\t;h\r\nxy\r\n0;last\r\n\r\n", "xy"},
	{"quoted string with obs-text and an escaped tab", "1;a=\"\xe9\\\t\"\r\nx\r\n0\r\n\r\n", "x"},
	{"tchar names and values", "1;!#$%&'*+-.^_`|~09AZaz=!#$%&'*+-.^_`|~09AZaz\r\nx\r\n0\r\n\r\n", "x"},
	{"data that looks like framing", "7\r\n0\r\n\r\n\r\n\r\n3\r\n\r\n0\r\n0\r\n\r\n", "0\r\n\r\n\r\n\r\n0"},
}

func TestChunkedValid(t *testing.T) {
	const next = "GET /next HTTP/1.1\r\n"
	for _, tt := range validChunked {
		t.Run(tt.name, func(t *testing.T) {
			in := []byte(tt.body + next)
			// Whole.
			var c Chunked
			n, err := c.Scan(in)
			if err != nil || !c.Done() || n != len(tt.body) {
				t.Fatalf("whole: n=%d done=%v err=%v, want n=%d", n, c.Done(), err, len(tt.body))
			}
			// Split at every position.
			for split := 1; split < len(in); split++ {
				c.Reset()
				n1, err := c.Scan(in[:split])
				if err != nil {
					t.Fatalf("split %d first: %v", split, err)
				}
				total := n1
				if !c.Done() {
					n2, err := c.Scan(in[split:])
					if err != nil {
						t.Fatalf("split %d second: %v", split, err)
					}
					total += n2
				}
				if !c.Done() || total != len(tt.body) {
					t.Fatalf("split %d: total %d done %v", split, total, c.Done())
				}
			}
		})
	}
}

// invalidChunked are bodies the scanner refuses.
var invalidChunked = []struct{ name, body string }{
	{"no size", "\r\nx\r\n0\r\n\r\n"},
	{"bad hex", "g\r\nx\r\n0\r\n\r\n"},
	{"negative", "-1\r\nx\r\n0\r\n\r\n"},
	{"overflow", "1000000000000000\r\n"},
	{"bare LF after size", "1\nx\r\n0\r\n\r\n"},
	{"data too long", "1\r\nxy\r\n0\r\n\r\n"},
	{"data not followed by CRLF", "1\r\nx\n0\r\n\r\n"},
	{"CTL in extension", "1;\x00\r\nx\r\n0\r\n\r\n"},
	{"space before size", " 1\r\nx\r\n0\r\n\r\n"},
	{"garbage after BWS", "1 x\r\nx\r\n0\r\n\r\n"},
	{"obs-fold trailer", "0\r\nX: 1\r\n 2\r\n\r\n"},
	{"trailer without colon", "0\r\nX\r\n\r\n"},
	{"NUL in trailer", "0\r\nX: \x00\r\n\r\n"},
	{"bare LF ending", "0\r\n\n"},
	{"endless whitespace after size", "1" + strings.Repeat(" ", 5000) + ";x\r\nx\r\n0\r\n\r\n"},
	{"endless extension", "1;" + strings.Repeat("a", 5000) + "\r\nx\r\n0\r\n\r\n"},
	// RFC 9112 §7.1.1's grammar, where parsers part ways.
	{"no extension name", "1;\r\nx\r\n0\r\n\r\n"},
	{"no name before =", "1;=v\r\nx\r\n0\r\n\r\n"},
	{"no value after =", "1;a=\r\nx\r\n0\r\n\r\n"},
	{"separator in a name", "1;a/b\r\nx\r\n0\r\n\r\n"},
	{"separator in a token value", "1;a=b@c\r\nx\r\n0\r\n\r\n"},
	{"two values", "1;a=b c\r\nx\r\n0\r\n\r\n"},
	{"unclosed quote", "1;a=\"b\r\nx\r\n0\r\n\r\n"},
	{"quote spanning CRLF", "1;a=\"b\r\n\"\r\nx\r\n0\r\n\r\n"},
	{"bare LF in a quoted string", "1;a=\"b\nc\"\r\nx\r\n0\r\n\r\n"},
	{"escaped CR", "1;a=\"\\\r\"\r\nx\r\n0\r\n\r\n"},
	{"DEL in a quoted string", "1;a=\"\x7f\"\r\nx\r\n0\r\n\r\n"},
	{"bytes after a quoted string", "1;a=\"b\"c\r\nx\r\n0\r\n\r\n"},
	{"quote inside a token", "1;a=b\"c\"\r\nx\r\n0\r\n\r\n"},
	{"whitespace before CRLF", "1;a \r\nx\r\n0\r\n\r\n"},
	{"whitespace after a value before CRLF", "1;a=b\t\r\nx\r\n0\r\n\r\n"},
	{"bare LF ending an extension", "1;a\nx\r\n0\r\n\r\n"},
	{"extension on the last chunk", "0;a=\"\r\n\r\n"},
}

func TestChunkedInvalid(t *testing.T) {
	for _, tt := range invalidChunked {
		t.Run(tt.name, func(t *testing.T) {
			var c Chunked
			if _, err := c.Scan([]byte(tt.body)); err == nil {
				t.Fatalf("no error; done=%v", c.Done())
			}
		})
	}
}

func TestChunkedSkip(t *testing.T) {
	var c Chunked
	in := []byte("10\r\n0123456789abcdef\r\n0\r\n\r\n")
	n, err := c.Scan(in[:4])
	if err != nil || n != 4 || c.DataLeft() != 16 {
		t.Fatalf("n=%d err=%v left=%d", n, err, c.DataLeft())
	}
	c.Skip(16)
	n, err = c.Scan(in[20:])
	if err != nil || !c.Done() || n != len(in)-20 {
		t.Fatalf("after skip: n=%d err=%v done=%v", n, err, c.Done())
	}
}

// TestChunkedDecode: Decode takes the framing off what Scan accepts, in
// whatever pieces the body comes, and refuses what Scan refuses where
// Scan does.
func TestChunkedDecode(t *testing.T) {
	const next = "GET /next HTTP/1.1\r\n"
	for _, tt := range validChunked {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.body + next
			for split := 0; split < len(in); split++ {
				var c Chunked
				var data []byte
				used := 0
				for _, part := range []string{in[:split], in[split:]} {
					if c.Done() {
						break
					}
					p := []byte(part)
					n, d, err := c.Decode(p)
					if err != nil {
						t.Fatalf("split %d: %v", split, err)
					}
					used += n
					data = append(data, p[:d]...)
				}
				if !c.Done() || used != len(tt.body) || string(data) != tt.data {
					t.Fatalf("split %d: done %v, used %d of %d, data %q, want %q", split, c.Done(), used, len(tt.body), data, tt.data)
				}
			}
			// A byte at a time, the data moved with DataLeft and Skip.
			var c Chunked
			var data []byte
			for i := 0; !c.Done(); {
				if left := c.DataLeft(); left > 0 {
					data = append(data, in[i:i+int(left)]...)
					i += int(left)
					c.Skip(left)
					continue
				}
				p := []byte{in[i]}
				n, d, err := c.Decode(p)
				if err != nil || n != 1 {
					t.Fatalf("byte %d: n %d, %v", i, n, err)
				}
				data = append(data, p[:d]...)
				i++
			}
			if string(data) != tt.data {
				t.Fatalf("byte by byte: data %q, want %q", data, tt.data)
			}
		})
	}
	for _, tt := range invalidChunked {
		t.Run(tt.name, func(t *testing.T) {
			var s, d Chunked
			sn, serr := s.Scan([]byte(tt.body))
			dn, _, derr := d.Decode([]byte(tt.body))
			if derr == nil || derr != serr || dn != sn {
				t.Fatalf("Decode: %d, %v; Scan: %d, %v", dn, derr, sn, serr)
			}
		})
	}
}
