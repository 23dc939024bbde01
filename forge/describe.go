package forge

import (
	"fmt"
	"strings"
	"unicode"
)

// Summarize turns an error into a status description: the first error only
// (the one a reviewer fixes first), prefixed with the count when there are
// several, as "3 errors, first: routes/blog.yaml:12: Route \"blog\":
// spec.http.backend: no Backend named \"web\"". An error that unwraps to a
// list (errors.Join, reconcile.Errors), even behind fmt.Errorf's %w, is
// walked depth-first to its first leaf; any other error gives its text.
// The Reporter makes the result one line and cuts it to the forge's limit;
// the count comes first so it is never the part that is lost.
func Summarize(err error) string {
	if err == nil {
		return ""
	}
	n, first, isList := firstLeaf(err)
	switch {
	case n > 1:
		return fmt.Sprintf("%d errors, first: %s", n, first.Error())
	case isList:
		return first.Error()
	}
	return err.Error()
}

// firstLeaf returns how many leaf errors err has, the first one, and
// whether a list was found. It looks through single wraps
// (fmt.Errorf("…: %w", list)) for a list; without one, err is its own
// single leaf.
func firstLeaf(err error) (int, error, bool) {
	switch x := err.(type) {
	case interface{ Unwrap() []error }:
		var first error
		n := 0
		for _, e := range x.Unwrap() {
			if e == nil {
				continue
			}
			c, f, _ := firstLeaf(e)
			if first == nil {
				first = f
			}
			n += c
		}
		if first != nil {
			return n, first, true
		}
	case interface{ Unwrap() error }:
		if inner := x.Unwrap(); inner != nil {
			if n, f, ok := firstLeaf(inner); ok {
				return n, f, true
			}
		}
	}
	return 1, err, false
}

// cut makes s one line (every run of white space, newlines included,
// becomes one space), replaces invalid UTF-8, and shortens it to at most
// limit characters (code points, as the forges count them), ending with
// "…" when something was cut. It never splits a character.
func cut(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(min(len(s), 4*limit))
	n := 0
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = n > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
		if n > limit+1 {
			break // enough to know it must be cut
		}
	}
	out := b.String()
	if n <= limit {
		return out
	}
	// Keep limit-1 characters and the ellipsis.
	keep := 0
	for i := range out {
		if keep == limit-1 {
			return strings.TrimRight(out[:i], " ") + "…"
		}
		keep++
	}
	return out
}
