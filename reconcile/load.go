package reconcile

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	k8syaml "sigs.k8s.io/yaml"
)

// document is one YAML document of one file.
type document struct {
	file   string
	line   int // line of the document's first line in the file, 1-based
	data   []byte
	kind   string
	name   string
	parsed bool
	root   *yaml.Node
}

// id is how errors name the document: `Route "blog"`.
func (d *document) id() string {
	switch {
	case d.kind == "":
		return ""
	case d.name == "":
		return d.kind + " (no name)"
	}
	return fmt.Sprintf("%s %q", d.kind, d.name)
}

// node parses the document with yaml.v3 for line lookups, once.
func (d *document) node() *yaml.Node {
	if !d.parsed {
		d.parsed = true
		var n yaml.Node
		if yaml.Unmarshal(d.data, &n) == nil {
			d.root = &n
		}
	}
	return d.root
}

// loader collects documents and errors for one Load.
type loader struct {
	local *Local // node-local checks; nil: the repository alone
	lim   limitSet
	errs  Errors
	// pending errors whose line is looked up at the end, once per document
	located []pendingError
	warned  []pendingError // the same, for warnings
	// fieldsDoc is where an unknown field's message sends the reader;
	// "" means the routes repository's reference.
	fieldsDoc string
}

type pendingError struct {
	doc   *document
	field string
	want  string // JSON type name to match among candidates, for type errors
	msg   string
	local bool // Error.NodeLocal
}

func (l *loader) failAt(d *document, field, format string, args ...any) {
	l.located = append(l.located, pendingError{doc: d, field: field, msg: fmt.Sprintf(format, args...)})
}

func (l *loader) failFile(file string, line int, format string, args ...any) {
	l.errs = append(l.errs, &Error{File: file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// failLocal is failAt for a problem of the node, not of the repository.
func (l *loader) failLocal(d *document, field, format string, args ...any) {
	l.located = append(l.located, pendingError{doc: d, field: field, msg: fmt.Sprintf(format, args...), local: true})
}

// warnAt records a problem that does not refuse the repository (a
// secret written in it): Desired.Warnings lists them, located.
func (l *loader) warnAt(d *document, field, format string, args ...any) {
	l.warned = append(l.warned, pendingError{doc: d, field: field, msg: fmt.Sprintf(format, args...)})
}

func (l *loader) finish() Errors {
	l.errs = append(l.errs, locateAll(l.located)...)
	l.located = nil
	l.errs.sort()
	return l.errs
}

// locateAll turns pending problems into located ones.
func locateAll(ps []pendingError) Errors {
	var out Errors
	for _, p := range ps {
		line, field := 0, p.field
		if p.field != "" {
			if n := p.doc.node(); n != nil {
				line, field = locate(n, p.field, p.want)
			}
		}
		if line == 0 {
			line = 1
		}
		out = append(out, &Error{File: p.doc.file, Line: p.doc.line + line - 1, Doc: p.doc.id(), Field: field, Msg: p.msg, NodeLocal: p.local})
	}
	out.sort()
	return out
}

// LoadDir loads a routes directory from disk.
func LoadDir(dir string) (*Desired, error) {
	d, _, err := LoadDirWith(dir, LoadOptions{})
	return d, err
}

// LoadDirWith is LoadDir with options; it also returns the files read.
func LoadDirWith(dir string, o LoadOptions) (*Desired, Files, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("routes directory: %w", err)
	}
	if !st.IsDir() {
		return nil, nil, fmt.Errorf("routes directory %s: not a directory", dir)
	}
	return LoadWith(os.DirFS(dir), o)
}

// LoadOptions adds what a repository is checked against beyond itself.
type LoadOptions struct {
	// Local, when set, adds the checks that need to know the node the
	// repository runs on (`gitedge validate --node-config`, and `gitedge
	// run` on every commit).
	Local *Local

	limits *limitSet // nil: the documented limits (tests set smaller ones)
}

// Load reads every *.yaml / *.yml file under fsys (names starting with "."
// are skipped), decodes the documents strictly, converts them into the
// subsystems' types with defaults, and validates the result as a whole.
// It returns either a fully valid Desired or Errors listing every problem.
// Symbolic links and limits follow the rules of repoReader and limits.go.
func Load(fsys fs.FS) (*Desired, error) {
	d, _, err := LoadWith(fsys, LoadOptions{})
	return d, err
}

// LoadWith is Load with options. It also returns the files it consumed
// (with links resolved), which load again to the same Desired: what the
// last applied record keeps.
func LoadWith(fsys fs.FS, o LoadOptions) (*Desired, Files, error) {
	l := loader{local: o.Local, lim: defaultLimits}
	if o.limits != nil {
		l.lim = *o.limits
	}
	r := repoReader{fsys: fsys, l: &l, files: Files{}}
	r.walk(".", "", nil)
	if r.full {
		return nil, nil, l.finish() // refused whole: parse nothing
	}
	var docs []*document
	for _, n := range r.order {
		fileDocs := splitDocuments(n, r.files[n])
		if len(fileDocs) > l.lim.docsPerFile {
			l.failFile(n, fileDocs[l.lim.docsPerFile].line, "more than %d documents in one file (split it)", l.lim.docsPerFile)
			continue
		}
		docs = append(docs, fileDocs...)
	}
	if len(docs) == 0 && len(l.errs) == 0 {
		return nil, nil, Errors{{Msg: "the repository holds no YAML documents: expected *.yaml files with at least one Edge document"}}
	}
	c := newConverter(&l)
	for _, d := range docs {
		c.decode(d)
	}
	desired := c.finish()
	if errs := l.finish(); len(errs) > 0 {
		return nil, nil, errs
	}
	desired.Warnings = locateAll(l.warned)
	return desired, r.files, nil
}

var docSeparator = regexp.MustCompile(`^---(\s|$)`)

// splitDocuments cuts a file at "---" lines, keeping each document's first
// line number. Documents holding only comments and blank lines are dropped.
func splitDocuments(file string, data []byte) []*document {
	var docs []*document
	start, startLine, line := 0, 1, 1
	flush := func(end int) {
		chunk := data[start:end]
		if hasContent(chunk) {
			docs = append(docs, &document{file: file, line: startLine, data: chunk})
		}
	}
	for i := 0; i <= len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		next := len(data) + 1
		lineEnd := len(data)
		if j >= 0 {
			lineEnd = i + j
			next = lineEnd + 1
		}
		text := data[i:lineEnd]
		if docSeparator.Match(text) || bytes.Equal(bytes.TrimRight(text, " \t\r"), []byte("...")) {
			flush(i)
			start, startLine = next, line+1
			if rest := bytes.TrimSpace(text[3:]); len(rest) > 0 && rest[0] != '#' && text[0] == '-' {
				// "--- {kind: Route, ...}": the content starts on the separator line.
				start, startLine = i+4, line
			}
			if start > len(data) {
				start = len(data)
			}
		}
		line++
		i = next
	}
	if start < len(data) {
		flush(len(data))
	}
	return docs
}

func hasContent(b []byte) bool {
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

// decodeStrict decodes one document into v, rejecting unknown fields and
// duplicate keys, and reports failures against the document. It returns
// true when v holds the whole document; with only unknown fields (every
// one of them reported) v is still filled, and usable tells the caller to
// go on validating the rest.
func (l *loader) decodeStrict(d *document, v any, name func() string) (ok, usable bool) {
	err := k8syaml.UnmarshalStrict(d.data, v)
	if err == nil {
		return true, true
	}
	msg := err.Error()
	if te, isType := errors.AsType[*json.UnmarshalTypeError](err); isType {
		d.name = name()
		l.located = append(l.located, pendingError{doc: d, field: te.Field, want: te.Value,
			msg: fmt.Sprintf("expected %s, got %s", jsonTypeName(te.Type.String()), withArticle(te.Value))})
		return false, false
	}
	if strings.Contains(msg, `unknown field "`) {
		d.name = name()
		unknown := unknownFields(d.node(), reflect.TypeOf(v))
		for _, u := range unknown {
			l.errs = append(l.errs, &Error{File: d.file, Line: d.line + u.line - 1, Doc: d.id(), Field: u.path,
				Msg: fmt.Sprintf("unknown field %q (check its spelling and %s)", u.key, cmp.Or(l.fieldsDoc, "the kind's fields in docs/repository.md"))})
		}
		if len(unknown) == 0 { // the two YAML libraries disagree (odd input): keep the message, without the decoders' prefixes
			l.errs = append(l.errs, &Error{File: d.file, Line: d.line, Doc: d.id(),
				Msg: fmt.Sprintf("%s (check its spelling and %s)", stripDecoderPrefixes(msg), cmp.Or(l.fieldsDoc, "the kind's fields in docs/repository.md"))})
		}
		return false, true
	}
	// A YAML syntax error: take its line, drop the library's prefixes.
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[strings.Index(msg, m[0])+len(m[0]):]
	} else {
		msg = stripDecoderPrefixes(msg)
	}
	l.errs = append(l.errs, &Error{File: d.file, Line: d.line + max(line, 1) - 1, Msg: "not valid YAML: " + msg})
	return false, false
}

// stripDecoderPrefixes drops what sigs.k8s.io/yaml and encoding/json put
// before their messages: the error is located by its own fields.
func stripDecoderPrefixes(msg string) string {
	for _, p := range []string{"error converting YAML to JSON: ", "yaml: ", "error unmarshaling JSON: ", "while decoding JSON: ", "json: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

type unknownField struct {
	key, path string
	line      int
}

// unknownFields lists every mapping key in the document that the target
// type has no field for, with its path and line; encoding/json stops at the
// first one, but validate must list them all.
func unknownFields(root *yaml.Node, t reflect.Type) []unknownField {
	if root == nil {
		return nil
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	var out []unknownField
	var walk func(n *yaml.Node, t reflect.Type, path string)
	walk = func(n *yaml.Node, t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		join := func(k string) string {
			if path == "" {
				return k
			}
			return path + "." + k
		}
		switch {
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
			fields := jsonFields(t)
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i].Value
				ft, known := fields[k]
				if !known {
					out = append(out, unknownField{key: k, path: join(k), line: n.Content[i].Line})
					continue
				}
				walk(n.Content[i+1], ft, join(k))
			}
		case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], t.Elem(), join(n.Content[i].Value))
			}
		case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
			for i, c := range n.Content {
				walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	walk(root, t, "")
	return out
}

// jsonFields maps the JSON names of a struct's fields (embedded structs
// flattened) to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	m := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			for k, v := range jsonFields(f.Type) {
				m[k] = v
			}
			continue
		}
		if name == "" {
			name = f.Name
		}
		m[name] = f.Type
	}
	return m
}

// withArticle reads "a number", "an array", "an object".
func withArticle(jsonType string) string {
	if jsonType != "" && strings.ContainsRune("aeiou", rune(jsonType[0])) {
		return "an " + jsonType
	}
	return "a " + jsonType
}

func jsonTypeName(goType string) string {
	switch {
	case strings.HasPrefix(goType, "int"), strings.HasPrefix(goType, "uint"), strings.HasPrefix(goType, "float"):
		return "a number"
	case goType == "string":
		return "a string"
	case goType == "bool":
		return "true or false"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "reconcile."):
		return "a mapping"
	}
	return goType
}

// kindOf finds a document's kind cheaply from a top-level "kind:" line,
// falling back to a lenient decode for flow-style documents.
func kindOf(data []byte) string {
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("kind:")); ok {
			if i := bytes.IndexByte(v, '#'); i >= 0 {
				v = v[:i]
			}
			return strings.Trim(string(bytes.TrimSpace(v)), `"'`)
		}
	}
	var h struct {
		Kind string `json:"kind"`
	}
	_ = k8syaml.Unmarshal(data, &h)
	return h.Kind
}
