package report

import (
	"bufio"
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/gitedge/gitedge/internal/errlist"
)

// Pos is a place in an input file. Line is 1-based; 0 means the whole file.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	if p.Line <= 0 {
		return p.File
	}
	return p.File + ":" + strconv.Itoa(p.Line)
}

// Severity says what happened to one input item.
type Severity int

const (
	// Note: nothing a client can see changes (logging, process settings,
	// values equal to gitedge's behaviour), or something to know.
	Note Severity = iota
	// Changed: carried over, but gitedge behaves differently in the case
	// the item describes.
	Changed
	// Dropped: not carried over at all.
	Dropped
)

func (s Severity) String() string {
	switch s {
	case Changed:
		return "changed"
	case Dropped:
		return "not carried over"
	}
	return "note"
}

// Item is one line of the report: where, what (the input as written),
// and why.
type Item struct {
	Pos
	Severity Severity
	Where    string // the section or block: `backend "k8s"`, `vrrp_instance VI_1`
	What     string // the directive as written, or a short subject
	Why      string
}

func (it Item) String() string {
	var b strings.Builder
	b.WriteString(it.Pos.String())
	b.WriteString(": ")
	if it.Where != "" {
		b.WriteString(it.Where)
		b.WriteString(": ")
	}
	if it.What != "" {
		b.WriteString(it.What)
		b.WriteString(": ")
	}
	b.WriteString(it.Why)
	return b.String()
}

// List collects items. The zero value is ready to use.
type List struct {
	Items []Item
}

// Add appends one item.
func (l *List) Add(p Pos, s Severity, where, what, why string, args ...any) {
	if len(args) > 0 {
		why = fmt.Sprintf(why, args...)
	}
	l.Items = append(l.Items, Item{Pos: p, Severity: s, Where: where, What: what, Why: why})
}

// Merge appends another list's items.
func (l *List) Merge(o List) { l.Items = append(l.Items, o.Items...) }

// Sorted returns the items by severity (worst first), file, line, then
// text, without duplicates: the same item reached twice is reported once.
func (l *List) Sorted() []Item {
	out := slices.Clone(l.Items)
	slices.SortStableFunc(out, func(a, b Item) int {
		return cmp.Or(
			cmp.Compare(b.Severity, a.Severity),
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Line, b.Line),
			cmp.Compare(a.Where, b.Where),
			cmp.Compare(a.What, b.What),
			cmp.Compare(a.Why, b.Why),
		)
	})
	return slices.Compact(out)
}

// Count returns how many distinct items have severity s.
func (l *List) Count(s Severity) int {
	n := 0
	for _, it := range l.Sorted() {
		if it.Severity == s {
			n++
		}
	}
	return n
}

// Write renders the items grouped by severity, one per line.
func (l *List) Write(w io.Writer) error {
	items := l.Sorted()
	var b strings.Builder
	for _, s := range []Severity{Dropped, Changed, Note} {
		var group []Item
		for _, it := range items {
			if it.Severity == s {
				group = append(group, it)
			}
		}
		if len(group) == 0 {
			continue
		}
		title := map[Severity]string{
			Dropped: "Not carried over",
			Changed: "Carried over with a difference",
			Note:    "Notes",
		}[s]
		fmt.Fprintf(&b, "\n%s (%d):\n", title, len(group))
		for _, it := range group {
			b.WriteString("  ")
			b.WriteString(it.String())
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Error is one located problem that stops the import.
type Error struct {
	Pos
	Msg string
}

func (e *Error) Error() string {
	if e.File == "" {
		return e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// Errors is every problem found, in file and line order.
type Errors []*Error

// Unlocated returns the first error that does not point into data read
// as file (its name, and a line of it), or nil: what the parsers' fuzzers
// check of every error.
func Unlocated(err error, file string, data []byte) error {
	es, ok := errors.AsType[Errors](err)
	if !ok {
		return fmt.Errorf("%T is not report.Errors: %v", err, err)
	}
	lines := bytes.Count(data, []byte("\n")) + 1
	for _, e := range es {
		if e.File != file || e.Line < 1 || e.Line > lines+1 {
			return fmt.Errorf("error not located in the input: %v", e)
		}
	}
	return nil
}

// Lines calls f with each line of data, read as file: its position and
// its text without the line end ("\n" or "\r\n"). A line too long to read
// (over 1 MiB) ends the reading with an error in errs at its position.
func Lines(file string, data []byte, errs *Errors, f func(pos Pos, text string)) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		f(Pos{File: file, Line: line}, strings.TrimSuffix(sc.Text(), "\r"))
	}
	if err := sc.Err(); err != nil {
		errs.Add(Pos{File: file, Line: line + 1}, "cannot read: %v", err)
	}
}

// UTF8 reports in errs, at pos, the first word that is not UTF-8 text.
// gitedge's YAML is UTF-8: a Latin-1 name cannot reach a written file
// (the error stops the import), and a comment is not a word. The parser
// goes on with the words, so that a bad name does not cascade into more
// errors.
func UTF8(pos Pos, words []string, errs *Errors) {
	for _, w := range words {
		if !utf8.ValidString(w) {
			errs.Add(pos, "%q is not UTF-8 text, which gitedge's YAML files cannot hold: convert the file to UTF-8 (as iconv -f LATIN1 -t UTF-8 does)", w)
			return
		}
	}
}

// Add appends one located error.
func (es *Errors) Add(p Pos, format string, args ...any) {
	*es = append(*es, &Error{Pos: p, Msg: fmt.Sprintf(format, args...)})
}

func (es Errors) Error() string { return errlist.Error(es) }

// Unwrap lets errors.As find one *Error.
func (es Errors) Unwrap() []error { return errlist.Unwrap(es) }

// Err returns the sorted errors, or nil when there are none.
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	out := slices.Clone(es)
	slices.SortStableFunc(out, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
	return out
}
