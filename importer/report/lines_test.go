package report

import (
	"strings"
	"testing"
)

func TestLines(t *testing.T) {
	var got []string
	var errs Errors
	Lines("a.cfg", []byte("one\r\ntwo\n\nthree"), &errs, func(pos Pos, text string) {
		got = append(got, pos.String()+" "+text)
	})
	if want := []string{"a.cfg:1 one", "a.cfg:2 two", "a.cfg:3 ", "a.cfg:4 three"}; strings.Join(got, "|") != strings.Join(want, "|") || len(errs) != 0 {
		t.Fatalf("lines %q, errors %v; want %q", got, errs, want)
	}
	// A line over 1 MiB ends the reading with an error where it starts.
	got = nil
	Lines("b.cfg", []byte("first\n"+strings.Repeat("x", 1<<20+1)+"\nlast\n"), &errs, func(pos Pos, text string) {
		got = append(got, pos.String())
	})
	if len(got) != 1 || len(errs) != 1 || errs[0].Line != 2 || !strings.Contains(errs[0].Msg, "cannot read") {
		t.Fatalf("with a long line: lines %q, errors %v", got, errs)
	}
}
