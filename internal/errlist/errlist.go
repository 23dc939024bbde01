// Package errlist renders a list of located errors (a repository's, an
// import's) one way: a single error as itself, several as a count and
// one error a line, each still reachable through errors.As.
package errlist

import (
	"fmt"
	"strings"
)

// Error is the text of es: its one error, or "N errors:" and one error an
// indented line.
func Error[E error](es []E) string {
	if len(es) == 1 {
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d errors:", len(es))
	for _, e := range es {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// Unwrap returns es as plain errors, for an Unwrap() []error method.
func Unwrap[E error](es []E) []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
