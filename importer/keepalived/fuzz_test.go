package keepalived

import (
	"bytes"
	"testing"

	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/internal/testkit"
)

// FuzzParse: any input parses or fails with located errors, never panics.
func FuzzParse(f *testing.F) {
	f.Add(seed(f))
	testkit.Seeds(f,
		"vrrp_instance V { interface eth0\n virtual_router_id 1 }\n",
		"vrrp_instance V {\n virtual_ipaddress { 2001:db8::1/64 dev eth1 label x }\n unicast_peer { 192.0.2.1 }\n}\n",
		"global_defs { vrrp_version 3 }\nvrrp_script s { script \"pidof haproxy\" weight -2 }\n",
		"a { b { c { } } } }\n{\n",
		"include x\n",
	)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.conf", data, Options{})
		lines := bytes.Count(data, []byte("\n")) + 1
		if err != nil {
			if err := report.Unlocated(err, "fuzz.conf", data); err != nil {
				t.Fatal(err)
			}
			return
		}
		for _, in := range c.Instances {
			if in.Line < 1 || in.Line > lines || in.VRID < 1 || in.VRID > 255 || in.Interface == "" {
				t.Fatalf("instance accepted without a valid VRID and interface: %+v", in)
			}
			for _, v := range in.VIPs {
				if !v.Prefix.IsValid() {
					t.Fatalf("invalid VIP accepted: %+v", v)
				}
			}
		}
	})
}
