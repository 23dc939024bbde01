package pvesim

import "testing"

// Property strings: whatever validates prints canonically, and the
// canonical form validates to itself.
func FuzzNetAndDrive(f *testing.F) {
	for _, s := range []string{
		"virtio=BC:24:11:3A:7F:01,bridge=vmbr0,tag=33",
		"model=virtio,macaddr=bc:24:11:3a:7f:01,bridge=vmbr0,firewall=yes",
		"virtio,bridge=vmbr0,tag=5000",
		"vmdata:101/vm-101-disk-0.qcow2,size=8G",
		"local-lvm:vm-101-cloudinit,media=cdrom",
		"file=none,media=cdrom",
		"e1000=,",
		",,=,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if n, err := parseNet(s); err == "" {
			out := n.String()
			n2, err2 := parseNet(out)
			if err2 != "" || n2.String() != out {
				t.Errorf("net %q -> %q -> %q (%s)", s, out, n2.String(), err2)
			}
		}
		if d, err := parseDrive(s); err == "" {
			out := d.String()
			d2, err2 := parseDrive(out)
			if err2 != "" || d2.String() != out {
				t.Errorf("drive %q -> %q -> %q (%s)", s, out, d2.String(), err2)
			}
		}
		for _, typ := range []ptype{tBool, tInt, tIPConfig, tTags, tSSHKeys, tAgent, tVGA, tCPU, tMemory, tDNSName} {
			check(typ, pval{s: s, kind: 's'})
		}
	})
}
