package haproxy

import (
	"fmt"
	"strings"

	"github.com/gitedge/gitedge/importer/report"
)

// ACL is one acl line (or one anonymous ACL in braces): a sample fetch,
// its flags and the values it matches.
type ACL struct {
	*Directive
	Name   string // "" for an anonymous ACL
	Fetch  string // as written: "hdr(host)", "req.ssl_sni", "path_beg"
	Icase  bool   // -i
	Method string // -m METHOD; "" = the fetch's own
	Files  []string
	Values []string
}

// Text renders the ACL's criterion, flags and values.
func (a *ACL) Text() string {
	parts := []string{a.Fetch}
	if a.Icase {
		parts = append(parts, "-i")
	}
	if a.Method != "" {
		parts = append(parts, "-m", a.Method)
	}
	for _, f := range a.Files {
		parts = append(parts, "-f", f)
	}
	for _, v := range a.Values {
		parts = append(parts, quote(v))
	}
	return strings.Join(parts, " ")
}

// parseACL reads "FETCH [flags] [values]" (the words after "acl NAME").
func parseACL(d *Directive, name string, words []string) (*ACL, error) {
	if len(words) == 0 {
		return nil, fmt.Errorf("acl %s: missing the criterion (a sample fetch such as hdr(host))", name)
	}
	a := &ACL{Directive: d, Name: name, Fetch: words[0]}
	i := 1
flags:
	for i < len(words) {
		switch w := words[i]; w {
		case "-i":
			a.Icase = true
		case "-n", "-M":
		case "-m", "-f", "-u":
			if i+1 >= len(words) {
				return nil, fmt.Errorf("acl %s: %s needs an argument", name, w)
			}
			i++
			switch w {
			case "-m":
				a.Method = words[i]
			case "-f":
				a.Files = append(a.Files, words[i])
			}
		case "--":
			i++
			break flags
		default:
			if strings.HasPrefix(w, "-") && len(w) > 1 && !isNumber(w) {
				return nil, fmt.Errorf("acl %s: unknown flag %q (expected -i, -f, -m, -n, -M, -u or --)", name, w)
			}
			break flags
		}
		i++
	}
	a.Values = append(a.Values, words[i:]...)
	return a, nil
}

func isNumber(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Term is one ACL reference in a condition, possibly negated: a named
// ACL or an anonymous one written in braces.
type Term struct {
	Neg  bool
	Name string
	Anon *ACL
}

func (t Term) String() string {
	s := t.Name
	if t.Anon != nil {
		s = "{ " + t.Anon.Text() + " }"
	}
	if t.Neg {
		return "!" + s
	}
	return s
}

// Cond is an "if" or "unless" condition: terms ANDed within a group, the
// groups ORed.
type Cond struct {
	Unless bool
	Groups [][]Term
}

func (c *Cond) String() string {
	if c == nil {
		return ""
	}
	var b strings.Builder
	if c.Unless {
		b.WriteString("unless ")
	} else {
		b.WriteString("if ")
	}
	for i, g := range c.Groups {
		if i > 0 {
			b.WriteString(" || ")
		}
		for j, t := range g {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(t.String())
		}
	}
	return b.String()
}

// splitCond finds "if" or "unless" in words and parses what follows. It
// returns the words before it and the condition (nil when there is none).
func splitCond(d *Directive, words []string) ([]string, *Cond, error) {
	for i, w := range words {
		if w != "if" && w != "unless" {
			continue
		}
		c, err := parseCond(d, w == "unless", words[i+1:])
		return words[:i], c, err
	}
	return words, nil, nil
}

// parseCond reads the terms after "if" or "unless". As HAProxy does, it
// skips empty alternatives ("if a or" is "if a"); a condition with none
// left never matches after "if" and always matches after "unless".
func parseCond(d *Directive, unless bool, words []string) (*Cond, error) {
	c := &Cond{Unless: unless}
	var group []Term
	for i := 0; i < len(words); i++ {
		w := words[i]
		if w == "or" || w == "||" {
			if len(group) > 0 {
				c.Groups = append(c.Groups, group)
			}
			group = nil
			continue
		}
		t := Term{}
		for strings.HasPrefix(w, "!") {
			t.Neg = !t.Neg
			w = w[1:]
			if w == "" && i+1 < len(words) {
				i++
				w = words[i]
			}
		}
		switch {
		case w == "{":
			end := -1
			for j := i + 1; j < len(words); j++ {
				if words[j] == "}" {
					end = j
					break
				}
			}
			if end < 0 {
				return nil, fmt.Errorf("'{' without its closing '}' (braces need blanks around them)")
			}
			a, err := parseACL(d, "", words[i+1:end])
			if err != nil {
				return nil, fmt.Errorf("anonymous ACL: %v", err)
			}
			t.Anon = a
			i = end
		case w == "}":
			return nil, fmt.Errorf("'}' without an opening '{'")
		case strings.HasPrefix(w, "{") || strings.HasSuffix(w, "}"):
			return nil, fmt.Errorf("%q: braces need blanks around them, as { req_ssl_hello_type 1 }", w)
		case w == "":
			return nil, fmt.Errorf("'!' without an ACL")
		default:
			t.Name = w
		}
		group = append(group, t)
	}
	if len(group) > 0 {
		c.Groups = append(c.Groups, group)
	}
	return c, nil
}

// predefinedACLs are the ACLs HAProxy defines itself.
var predefinedACLs = map[string]bool{
	"FALSE": true, "HTTP": true, "HTTP_1.0": true, "HTTP_1.1": true, "HTTP_2.0": true, "HTTP_3.0": true,
	"HTTP_CONTENT": true, "HTTP_URL_ABS": true, "HTTP_URL_SLASH": true, "HTTP_URL_STAR": true,
	"LOCALHOST": true, "METH_CONNECT": true, "METH_DELETE": true, "METH_GET": true, "METH_HEAD": true,
	"METH_OPTIONS": true, "METH_POST": true, "METH_PUT": true, "METH_TRACE": true, "RDP_COOKIE": true,
	"REQ_CONTENT": true, "TRUE": true, "WAIT_END": true,
}

// IsPredefined reports whether name is one of HAProxy's predefined ACLs.
func IsPredefined(name string) bool { return predefinedACLs[name] }

// checkCond reports every named ACL of c that p does not define before
// d: HAProxy compiles a condition when it reads the line.
func checkCond(p *Proxy, d *Directive, c *Cond, errs *report.Errors) {
	if c == nil {
		return
	}
	for _, g := range c.Groups {
		for _, t := range g {
			if t.Name == "" || predefinedACLs[t.Name] {
				continue
			}
			defs := p.ACLs[t.Name]
			switch {
			case len(defs) == 0:
				errs.Add(d.Pos, "%s: ACL %q is used but never defined in %s", d.Keyword(), t.Name, p.Label())
			case defs[0].Line > d.Line && defs[0].File == d.File:
				errs.Add(d.Pos, "%s: ACL %q is used before its definition at line %d (HAProxy needs the acl line first)", d.Keyword(), t.Name, defs[0].Line)
			}
		}
	}
}
