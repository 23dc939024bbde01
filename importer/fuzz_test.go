package importer

import (
	"errors"
	"testing"

	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/internal/testkit"
)

// FuzzImportHAProxy: whatever haproxy.cfg comes in, the import either
// fails with located errors or writes a repository gitedge's loader
// accepts; it never panics and never writes an invalid repository.
func FuzzImportHAProxy(f *testing.F) {
	testkit.SeedFiles(f, "testdata/roundtrip/*.cfg", "testdata/seed/haproxy.cfg")
	testkit.Seeds(f, feHTTP+"  acl a hdr_end(host) -i .x.example\n  acl b hdr(host) -i y.x.example\n  use_backend web if a b\n"+beWeb,
		feTLS+"  use_backend web if { req.ssl_sni -m dom a } || TRUE\n"+beWeb)
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Import(Options{HAProxy: "h.cfg", ReadFile: memFiles(map[string]string{"h.cfg": string(data)})})
		var invalid *InvalidError
		var es report.Errors
		switch {
		case errors.As(err, &invalid):
			t.Fatalf("the import is not a valid repository: %v\nfiles: %v", err, res.Files)
		case err != nil && !errors.As(err, &es):
			t.Fatalf("unlocated error %T: %v", err, err)
		case err == nil && len(res.Files) == 0:
			t.Fatal("no error and no files")
		}
	})
}

// FuzzImportKeepalived: the same for two nodes' keepalived.conf.
func FuzzImportKeepalived(f *testing.F) {
	f.Add([]byte(kaConf("100", "    unicast_src_ip 192.0.2.1\n")), []byte(kaConf("90", "    unicast_src_ip 192.0.2.2\n")))
	f.Add([]byte(kaConf("100", "    vrrp_version 3\n    unicast_src_ip 2001:db8::1\n")), []byte(kaConf("90", "    unicast_src_ip 192.0.2.2\n")))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		res, err := Import(Options{
			Keepalived: []NodeFile{{"a", "a.conf"}, {"b", "b.conf"}},
			ReadFile:   memFiles(map[string]string{"a.conf": string(a), "b.conf": string(b)}),
		})
		var invalid *InvalidError
		var es report.Errors
		switch {
		case errors.As(err, &invalid):
			// Values keepalived accepts but gitedge refuses (a VRRP v2
			// instance with IPv6 VIPs, priority 255 for a non-owner)
			// are reported by gitedge's own validation: fine, but it
			// must be located.
			var re interface{ Error() string }
			if !errors.As(err, &re) {
				t.Fatal(err)
			}
		case err != nil && !errors.As(err, &es):
			t.Fatalf("unlocated error %T: %v", err, err)
		case err == nil && len(res.Files) == 0:
			t.Fatal("no error and no files")
		}
	})
}
