package deliver

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// located mimics reconcile's located errors.
type located struct{ file, msg string }

func (e *located) Error() string { return e.file + ": " + e.msg }

// list mimics reconcile.Errors: a multi-line text and Unwrap() []error.
type list []error

func (l list) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d errors:", len(l))
	for _, e := range l {
		b.WriteString("\n  " + e.Error())
	}
	return b.String()
}
func (l list) Unwrap() []error { return l }

func TestSummarize(t *testing.T) {
	t.Parallel()
	a := &located{"routes/a.yaml:3", `Route "a": spec.http.backend: no Backend named "web"`}
	b := &located{"routes/b.yaml:9", `Route "b": spec.hosts[0]: duplicate host`}
	c := errors.New("edge.yaml: Edge: spec.nodes: lb-9 unknown")
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"nil", nil, ""},
		{"one", a, a.Error()},
		{"one in a list", list{a}, a.Error()},
		{"list", list{a, b, c}, "3 errors, first: " + a.Error()},
		{"wrapped list", fmt.Errorf("validate: %w", list{a, b}), "2 errors, first: " + a.Error()},
		{"join of lists", errors.Join(list{a, b}, c), "3 errors, first: " + a.Error()},
		{"wrapped single", fmt.Errorf("apply: %w", c), "apply: " + c.Error()},
		{"wrapped list of one", fmt.Errorf("validate: %w", list{b}), b.Error()},
		{"join with nil", errors.Join(nil, c), c.Error()},
	}
	for _, tt := range tests {
		if got := Summarize(tt.err); got != tt.want {
			t.Errorf("%s: Summarize = %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestCut(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"  one\n\ttwo  \r\n three\n", 40, "one two three"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven chr!", 10, "eleven ch…"},
		{"日本語のテキストです", 5, "日本語の…"},
		{"ab🚀🚀🚀🚀", 4, "ab🚀…"},
		{"é\u0301é\u0301é\u0301", 3, "é\u0301…"}, // code points, as services count
		{"bad \xff\xfe utf8", 40, "bad \uFFFD utf8"},
		{"cut at space", 8, "cut at…"},
		{"cut at space", 9, "cut at s…"},
		{"\x00ctl\x07chars", 20, "ctl chars"},
	}
	for _, tt := range tests {
		if got := Cut(tt.in, tt.limit); got != tt.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
	}
}

// FuzzCut checks Cut's promises on any input: valid UTF-8, one line, no
// longer than the limit, and unchanged when it already fits.
func FuzzCut(f *testing.F) {
	f.Add("routes/blog.yaml:12: Route \"blog\":\n  spec.http.backend: no Backend", 140)
	f.Add("🚀\xff\n\t日本", 3)
	f.Add(strings.Repeat("é", 300), 255)
	f.Fuzz(func(t *testing.T, s string, limit int) {
		if limit < 1 || limit > 1000 {
			return
		}
		out := Cut(s, limit)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8: %q", out)
		}
		if n := utf8.RuneCountInString(out); n > limit {
			t.Fatalf("%d characters, limit %d: %q", n, limit, out)
		}
		for _, r := range out {
			if r != ' ' && (unicode.IsSpace(r) || unicode.IsControl(r)) {
				t.Fatalf("white space or control %q left in %q", r, out)
			}
		}
		if strings.HasPrefix(out, " ") || strings.HasSuffix(out, " ") {
			t.Fatalf("untrimmed %q", out)
		}
		if Cut(out, limit) != out {
			t.Fatalf("not idempotent: %q", out)
		}
	})
}
