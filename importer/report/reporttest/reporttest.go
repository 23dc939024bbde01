// Package reporttest holds the checks the importer's parsers' tests
// share about the errors they return. Only tests import it.
package reporttest

import (
	"errors"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/importer/report"
)

// WantLocated fails the test unless err is a report.Errors whose text
// contains want and each of whose errors names file and a line.
func WantLocated(t testing.TB, err error, file, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", want)
	}
	var es report.Errors
	if !errors.As(err, &es) {
		t.Fatalf("%T is not report.Errors", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error:\n%v\nwant it to contain %q", err, want)
	}
	for _, e := range es {
		if e.File != file || e.Line < 1 {
			t.Errorf("error without file and line: %v", e)
		}
	}
}
