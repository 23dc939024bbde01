package infra

import "testing"

// Sizes round-trip through their Proxmox spelling; property strings parse
// without panicking and a netN written for a NIC keeps the observed MAC.
func FuzzSizeAndNet(f *testing.F) {
	for _, s := range []string{"8G", "512M", "1T", "100K", "4096", "8.5G", "0", "-1G", "virtio=BC:24:11:3A:7F:01,bridge=vmbr0,tag=33"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := ParseSize(s); err == nil {
			back, err := ParseSize(n.String())
			if err != nil || back != n {
				t.Errorf("%q -> %d -> %q -> %d (%v)", s, n, n.String(), back, err)
			}
		}
		_, mac, _ := parseNet(s)
		out := netValue(NIC{Model: "virtio", Bridge: "vmbr0", VLAN: 33}, s)
		if _, mac2, opts := parseNet(out); mac2 != mac || opts["bridge"] != "vmbr0" || opts["tag"] != "33" {
			t.Errorf("netValue(%q) = %q: mac %q -> %q, opts %v", s, out, mac, mac2, opts)
		}
		_ = parseProp(s, "type")
		_, _ = diskSize(s)
	})
}
