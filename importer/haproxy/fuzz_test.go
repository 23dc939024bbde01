package haproxy

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/gitedge/gitedge/importer/report"
)

// FuzzParse: any input parses or fails with located errors, never panics;
// what parses renders back to the same words.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../testdata/roundtrip/*.cfg")
	files = append(files, "../testdata/seed/haproxy.cfg")
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"frontend f\n bind :80\n use_backend b if { hdr(host) -i x } || !y\n",
		"defaults d from d\n",
		"backend b\n server s [2001:db8::1]:80 weight 1 check\n",
		"listen l\n bind :1,:2 accept-proxy\n acl a req.ssl_sni -m end .x -i\n",
		"frontend \"f x\"\n bind '\\x41:80'\n",
		"global\n\tmaxconn 1\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.cfg", data)
		lines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			var es report.Errors
			if !errors.As(err, &es) {
				t.Fatalf("%T is not report.Errors: %v", err, err)
			}
			for _, e := range es {
				if e.File != "fuzz.cfg" || e.Line < 1 || e.Line > lines+1 {
					t.Fatalf("error not located in the input: %v", e)
				}
			}
			return
		}
		for _, s := range c.Sections {
			for _, d := range s.Directives {
				if d.Line < 1 || d.Line > lines {
					t.Fatalf("directive at line %d of %d", d.Line, lines)
				}
				back, _, err := splitLine(d.String())
				if err != nil || !slices.Equal(back, d.Args) {
					t.Fatalf("%q renders as %q, which reads back as %q (%v)", d.Args, d.String(), back, err)
				}
			}
		}
	})
}
