package reconcile

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/gitedge/gitedge/internal/errlist"
)

// Error is one located problem in a routes repository: the file, the line
// when the YAML can give it, the document ("Route \"blog\"") and the field
// path below it ("spec.http.backend").
type Error struct {
	File  string
	Line  int    // 1-based; 0 when unknown
	Doc   string // `Kind "name"`; "" when the problem is not in one document
	Field string // dotted path with [i] indexes; "" for the whole document
	Msg   string
	// NodeLocal marks a problem of the node, not of the repository (a
	// secret it cannot resolve): fixed on the node, the same commit can
	// apply, so the loop tries it again (resync, reload).
	NodeLocal bool
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Doc != "" {
		b.WriteString(e.Doc)
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a repository, in file and line order.
// Validation is all-or-nothing: a non-empty Errors means nothing is applied.
type Errors []*Error

func (es Errors) Error() string { return errlist.Error(es) }

// NodeLocal reports whether every problem is the node's (NodeLocal): the
// same repository may load once the node is fixed.
func (es Errors) NodeLocal() bool {
	for _, e := range es {
		if !e.NodeLocal {
			return false
		}
	}
	return len(es) > 0
}

// Unwrap lets errors.As find one *Error.
func (es Errors) Unwrap() []error { return errlist.Unwrap(es) }

func (es Errors) sort() {
	slices.SortStableFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
}

// pathSegment is one step of a field path: a mapping key, or a sequence
// index (index >= 0), or a key with no index where the YAML holds a
// sequence (encoding/json drops indexes from its paths).
type pathSegment struct {
	key   string
	index int
}

func parsePath(p string) []pathSegment {
	var segs []pathSegment
	for part := range strings.SplitSeq(p, ".") {
		if part == "" {
			continue
		}
		key := part
		var idx []int
		if i := strings.IndexByte(part, '['); i >= 0 {
			key = part[:i]
			for rest := part[i:]; strings.HasPrefix(rest, "["); {
				end := strings.IndexByte(rest, ']')
				if end < 0 {
					break
				}
				n, err := strconv.Atoi(rest[1:end])
				if err != nil {
					break
				}
				idx = append(idx, n)
				rest = rest[end+1:]
			}
		}
		if key != "" {
			segs = append(segs, pathSegment{key: key, index: -1})
		}
		for _, n := range idx {
			segs = append(segs, pathSegment{index: n})
		}
	}
	return segs
}

// locate returns the line of the node at path in a document (or of the
// deepest ancestor found) and the path with every sequence index filled
// in. want, when not empty, picks among several candidates (encoding/json
// reports paths without indexes) the first whose YAML kind matches a JSON
// type name ("string", "number", "bool", "array", "object").
func locate(root *yaml.Node, path string, want string) (int, string) {
	if root == nil {
		return 0, path
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	type result struct {
		line int
		path string
		ok   bool
	}
	var walk func(n *yaml.Node, segs []pathSegment, at string) result
	walk = func(n *yaml.Node, segs []pathSegment, at string) result {
		for n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		if len(segs) == 0 {
			return result{n.Line, at, want == "" || kindMatches(n, want)}
		}
		s := segs[0]
		switch {
		case n.Kind == yaml.SequenceNode && s.index >= 0:
			if s.index < len(n.Content) {
				return walk(n.Content[s.index], segs[1:], fmt.Sprintf("%s[%d]", at, s.index))
			}
		case n.Kind == yaml.SequenceNode:
			// No index: try each element, keep the first match.
			var first result
			for i, c := range n.Content {
				r := walk(c, segs, fmt.Sprintf("%s[%d]", at, i))
				if r.ok {
					return r
				}
				if first.line == 0 {
					first = r
				}
			}
			if first.line != 0 {
				return first
			}
		case n.Kind == yaml.MappingNode && s.index < 0:
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value != s.key {
					continue
				}
				p := s.key
				if at != "" {
					p = at + "." + s.key
				}
				if len(segs) == 1 && want == "" {
					return result{n.Content[i].Line, p, true}
				}
				r := walk(n.Content[i+1], segs[1:], p)
				if r.line == 0 {
					r.line = n.Content[i].Line
				}
				return r
			}
		}
		return result{n.Line, path, false}
	}
	r := walk(root, parsePath(path), "")
	if r.line == 0 {
		return root.Line, path
	}
	return r.line, r.path
}

func kindMatches(n *yaml.Node, want string) bool {
	switch want {
	case "array":
		return n.Kind == yaml.SequenceNode
	case "object":
		return n.Kind == yaml.MappingNode
	}
	if n.Kind != yaml.ScalarNode {
		return false
	}
	switch want {
	case "string":
		return n.Tag == "!!str"
	case "number":
		return n.Tag == "!!int" || n.Tag == "!!float"
	case "bool":
		return n.Tag == "!!bool"
	}
	return true
}
