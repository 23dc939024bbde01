package haproxy

import (
	"strings"

	"github.com/gitedge/gitedge/importer/report"
)

// Directive is one configuration line: its keyword and arguments as
// HAProxy reads them, and where it is.
type Directive struct {
	report.Pos
	Args []string
	// Section is the section the line is in.
	Section *Section
}

// Keyword returns the first word ("timeout", "option", "server").
func (d *Directive) Keyword() string { return d.Args[0] }

// String renders the directive as it was written (modulo quoting).
func (d *Directive) String() string {
	q := make([]string, len(d.Args))
	for i, a := range d.Args {
		q[i] = quote(a)
	}
	return strings.Join(q, " ")
}

// Section is one section as written: its header and its lines.
type Section struct {
	report.Pos
	Kind       string // global, defaults, frontend, backend, listen, or another HAProxy section
	Name       string
	From       string // defaults NAME from OTHER, frontend NAME from DEFAULTS
	Directives []*Directive
}

// Label names the section in messages: `frontend "http"`, `defaults`.
func (s *Section) Label() string {
	if s.Name == "" {
		return s.Kind
	}
	return s.Kind + ` "` + s.Name + `"`
}

// proxyKinds are the sections Parse types; otherSections are HAProxy
// sections it keeps as written for the importer to report.
var (
	proxyKinds    = map[string]bool{"frontend": true, "backend": true, "listen": true}
	otherSections = map[string]bool{
		"userlist": true, "peers": true, "resolvers": true, "mailers": true, "program": true,
		"http-errors": true, "ring": true, "cache": true, "fcgi-app": true, "log-forward": true,
		"crt-store": true, "traces": true, "dynamic-update": true,
	}
)

// EnvVar is a ${NAME} reference HAProxy would expand at start.
type EnvVar struct {
	report.Pos
	Name string
}

// sections splits the file into sections. Lines before the first section
// header and malformed headers are errors; so is a quote left open.
func sections(file string, data []byte, errs *report.Errors) ([]*Section, []EnvVar) {
	var out []*Section
	var env []EnvVar
	var cur *Section
	report.Lines(file, data, errs, func(pos report.Pos, text string) {
		words, vars, err := splitLine(text)
		if err != nil {
			errs.Add(pos, "%v", err)
			return
		}
		report.UTF8(pos, words, errs)
		for _, v := range vars {
			env = append(env, EnvVar{pos, v})
		}
		if len(words) == 0 {
			return
		}
		kw := words[0]
		if kw == "global" || kw == "defaults" || proxyKinds[kw] || otherSections[kw] {
			cur = &Section{Pos: pos, Kind: kw}
			out = append(out, cur)
			header(cur, words[1:], errs)
			return
		}
		if cur == nil {
			errs.Add(pos, "%q is outside of any section: a configuration starts with global, defaults, frontend, backend or listen", kw)
			return
		}
		cur.Directives = append(cur.Directives, &Directive{Pos: pos, Args: words, Section: cur})
	})
	return out, env
}

// header reads "KIND [NAME] [from DEFAULTS]".
func header(s *Section, args []string, errs *report.Errors) {
	switch s.Kind {
	case "global":
		if len(args) > 0 {
			errs.Add(s.Pos, "global takes no argument, got %q", strings.Join(args, " "))
		}
		return
	case "defaults", "frontend", "backend", "listen":
		if len(args) > 0 && args[0] != "from" {
			s.Name = args[0]
			args = args[1:]
		}
		if len(args) > 0 && args[0] == "from" {
			if len(args) != 2 {
				errs.Add(s.Pos, "%s: 'from' needs the name of a defaults section", s.Kind)
			} else {
				s.From = args[1]
			}
			args = nil
		}
		if len(args) > 0 {
			errs.Add(s.Pos, "%s: unexpected %q after the name", s.Kind, strings.Join(args, " "))
		}
		if s.Kind != "defaults" && s.Name == "" {
			errs.Add(s.Pos, "%s needs a name", s.Kind)
		}
		if s.Name != "" && !validName(s.Name) {
			errs.Add(s.Pos, "%s name %q: only letters, digits, '-', '_', '.' and ':' are allowed", s.Kind, s.Name)
		}
	default:
		if len(args) > 0 {
			s.Name = args[0]
		}
	}
}

// validName is HAProxy's rule for proxy names.
func validName(n string) bool {
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return n != ""
}
