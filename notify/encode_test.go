package notify

import (
	"errors"
	"fmt"
	"testing"
)

func TestCut(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{" a\n\tb \r\n", 10, "a b"},
		{"eleven chr!", 10, "eleven ch…"},
		{"日本語のテキスト", 4, "日本語…"},
		{"x\xffy", 5, "x\uFFFDy"},
	} {
		if got := cut(tt.in, tt.limit); got != tt.want {
			t.Errorf("cut(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
	}
	for _, tt := range []struct {
		in    string
		limit int
		want  string
	}{
		{"a &amp; b", 20, "a &amp; b"},
		{"abc &amp; d", 7, "abc …"}, // never "abc &a…"
		{"abc &amp; defgh", 11, "abc &amp;…"},
	} {
		if got := slackCut(tt.in, tt.limit); got != tt.want {
			t.Errorf("slackCut(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
		}
	}
}

func TestSummarize(t *testing.T) {
	t.Parallel()
	a, b := errors.New("routes/a.yaml:3: bad"), errors.New("routes/b.yaml:4: worse")
	for _, tt := range []struct {
		err  error
		want string
	}{
		{nil, ""},
		{a, a.Error()},
		{errors.Join(a, b), "2 errors, first: " + a.Error()},
		{fmt.Errorf("load: %w", errors.Join(a, b)), "2 errors, first: " + a.Error()},
		{fmt.Errorf("apply: %w", a), "apply: " + a.Error()},
	} {
		if got := Summarize(tt.err); got != tt.want {
			t.Errorf("Summarize(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
