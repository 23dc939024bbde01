package haproxy

import (
	"fmt"
	"strings"
)

// splitLine cuts one configuration line into words as HAProxy does:
// blanks separate words, '#' starts a comment, a backslash escapes the
// next character (\r, \n, \t and \xHH have their usual meaning), double
// quotes keep blanks and allow escapes, single quotes keep everything.
// Quoted and unquoted parts next to each other form one word. envVars
// reports the ${NAME} references found outside single quotes: HAProxy
// expands them from its environment at start, the importer cannot.
func splitLine(line string) (words []string, envVars []string, err error) {
	var cur strings.Builder
	inWord := false
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			flush()
		case c == '#':
			flush()
			return words, envVars, nil
		case c == '\\':
			n, adv, err := unescape(line, i)
			if err != nil {
				return nil, nil, err
			}
			cur.WriteString(n)
			inWord = true
			i += adv
		case c == '"':
			inWord = true
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' {
					n, adv, err := unescape(line, j)
					if err != nil {
						return nil, nil, err
					}
					cur.WriteString(n)
					j += adv
					continue
				}
				if line[j] == '$' && j+1 < len(line) && line[j+1] == '{' {
					envVars = append(envVars, envName(line[j:]))
				}
				cur.WriteByte(line[j])
			}
			if j >= len(line) {
				return nil, nil, fmt.Errorf("unterminated double quote")
			}
			i = j
		case c == '\'':
			inWord = true
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, nil, fmt.Errorf("unterminated single quote")
			}
			cur.WriteString(line[i+1 : i+1+j])
			i += j + 1
		default:
			if c == '$' && i+1 < len(line) && line[i+1] == '{' {
				envVars = append(envVars, envName(line[i:]))
			}
			cur.WriteByte(c)
			inWord = true
		}
	}
	flush()
	return words, envVars, nil
}

// unescape decodes the escape starting with the backslash at line[i]. It
// returns the decoded text and how many bytes after the backslash it used.
func unescape(line string, i int) (string, int, error) {
	if i+1 >= len(line) {
		return "", 0, fmt.Errorf("a backslash ends the line: HAProxy has no line continuation")
	}
	switch c := line[i+1]; c {
	case 'r':
		return "\r", 1, nil
	case 'n':
		return "\n", 1, nil
	case 't':
		return "\t", 1, nil
	case 'x':
		if i+3 >= len(line) || !isHex(line[i+2]) || !isHex(line[i+3]) {
			return "", 0, fmt.Errorf(`bad escape: \x needs two hexadecimal digits`)
		}
		return string([]byte{hexVal(line[i+2])<<4 | hexVal(line[i+3])}), 3, nil
	default:
		return string(c), 1, nil
	}
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func hexVal(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

func envName(s string) string {
	if end := strings.IndexByte(s, '}'); end > 0 {
		return s[:end+1]
	}
	return s
}

// quote renders a word back so that splitLine reads it the same.
func quote(w string) string {
	if w != "" && !strings.ContainsAny(w, " \t#\\\"'\r\n") {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}
