package errlist

import (
	"errors"
	"testing"
)

type located struct{ msg string }

func (e *located) Error() string { return e.msg }

type list []*located

func (l list) Error() string   { return Error(l) }
func (l list) Unwrap() []error { return Unwrap(l) }

func TestErrorAndUnwrap(t *testing.T) {
	one := list{{"a.yaml:1: bad"}}
	if got := one.Error(); got != "a.yaml:1: bad" {
		t.Errorf("one error: %q", got)
	}
	two := list{{"a.yaml:1: bad"}, {"b.yaml:2: worse"}}
	if got, want := two.Error(), "2 errors:\n  a.yaml:1: bad\n  b.yaml:2: worse"; got != want {
		t.Errorf("two errors: %q, want %q", got, want)
	}
	var err error = two
	if e, ok := errors.AsType[*located](err); !ok || e != two[0] {
		t.Errorf("errors.As finds %v, want the first", e)
	}
	if !errors.Is(err, two[1]) {
		t.Error("errors.Is does not find the second")
	}
}
