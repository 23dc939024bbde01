package haproxy

import (
	"bytes"
	"slices"
	"testing"

	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/internal/testkit"
)

// FuzzParse: any input parses or fails with located errors, never panics;
// what parses renders back to the same words.
func FuzzParse(f *testing.F) {
	testkit.SeedFiles(f, "../testdata/roundtrip/*.cfg", "../testdata/seed/haproxy.cfg")
	testkit.Seeds(f,
		"frontend f\n bind :80\n use_backend b if { hdr(host) -i x } || !y\n",
		"defaults d from d\n",
		"backend b\n server s [2001:db8::1]:80 weight 1 check\n",
		"listen l\n bind :1,:2 accept-proxy\n acl a req.ssl_sni -m end .x -i\n",
		"frontend \"f x\"\n bind '\\x41:80'\n",
		"global\n\tmaxconn 1\r\n",
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.cfg", data)
		lines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			if err := report.Unlocated(err, "fuzz.cfg", data); err != nil {
				t.Fatal(err)
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
