package infra

import (
	"fmt"
	"strings"
	"testing"
)

// TestPreview: a spec change seen from the specs alone is classified as
// the reconciler applies it: onboot live, memory and cores at the next
// start, a dropped NIC removed live, ignored fields left out, the disk
// grown or refused.
func TestPreview(t *testing.T) {
	base := VM{Name: "lb-1", VMID: 151, Node: "pve1", Clone: "tmpl", Cores: 2, Memory: 4096, OnBoot: true,
		Disk: Disk{Bus: "scsi", Storage: "vmdata", Size: 8 << 30}, Network: []NIC{{Model: "virtio", Bridge: "vmbr0", VLAN: 33}, {Model: "e1000", Bridge: "vmbr1"}}}
	tests := []struct {
		name string
		edit func(*VM)
		want string
		disk DiskChange
	}{
		{"nothing", func(*VM) {}, "", DiskSame},
		{"memory and onboot", func(v *VM) { v.Memory, v.OnBoot = 2048, false },
			"memory 4096 → 2048 next-start; onboot 1 → 0 live", DiskSame},
		{"vlan", func(v *VM) { v.Network[0].VLAN = 34 }, "net0 virtio,bridge=vmbr0,tag=33 → virtio,bridge=vmbr0,tag=34 live", DiskSame},
		{"ignored network", func(v *VM) { v.Network[0].VLAN, v.IgnoreChanges = 34, []string{"network"} }, "", DiskSame},
		{"NIC removed", func(v *VM) { v.Network = v.Network[:1] }, "net1 e1000,bridge=vmbr1 →  live", DiskSame},
		{"network no longer managed", func(v *VM) { v.Network = nil }, "", DiskSame},
		{"disk grows", func(v *VM) { v.Disk.Size = 16 << 30 }, "", DiskGrow},
		{"disk shrinks", func(v *VM) { v.Disk.Size = 4 << 30 }, "", DiskShrink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head := base
			head.Network = append([]NIC(nil), base.Network...)
			tt.edit(&head)
			var got []string
			for _, c := range Preview(base, head) {
				when := "next-start"
				if c.Live {
					when = "live"
				}
				got = append(got, fmt.Sprintf("%s %s → %s %s", c.Key, c.Old, c.New, when))
			}
			if g := strings.Join(got, "; "); g != tt.want {
				t.Errorf("Preview: %q, want %q", g, tt.want)
			}
			if d := DiskPreview(base, head); d != tt.disk {
				t.Errorf("DiskPreview: %q, want %q", d, tt.disk)
			}
		})
	}
}
