package infra

import (
	"encoding/json"
	"testing"
	"time"
)

// TestInfraStatusIsReadable is issue 10 defect 7: /status shows each
// applied infra change as a line of text, never a Go struct dump.
func TestInfraStatusIsReadable(t *testing.T) {
	vm := VMRef{Name: "lb-0", VMID: 150, Node: "proxmox1"}
	r := Result{Leader: true, Duration: 1234 * time.Millisecond, Applied: []Action{
		{Op: OpCreate, VM: vm, Clone: "debian-12"},
		{Op: OpUpdate, VM: vm, Fields: []FieldChange{{Key: "memory", Old: "1024", New: "4096"}, {Key: "onboot", New: "1"}}},
		{Op: OpResize, VM: vm, Disk: "scsi0", From: 8 << 30, Size: 16 << 30},
		{Op: OpHACreate, VM: vm, HA: &HA{Group: "main", State: "started"}},
		{Op: OpStart, VM: vm},
		{Op: OpDelete, VM: VMRef{Name: "old", VMID: 199, Node: "proxmox1"}},
	}}
	b, err := json.MarshalIndent(r.Status(), "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	want := `{
  "leader": true,
  "converged": false,
  "applied": [
    "create VM 150 \"lb-0\" on proxmox1 from debian-12",
    "update VM 150 \"lb-0\": memory 1024 → 4096, onboot (none) → 1",
    "resize VM 150 \"lb-0\" scsi0: 8G → 16G",
    "ha-create VM 150 \"lb-0\" group=main state=started",
    "start VM 150 \"lb-0\"",
    "delete VM 199 \"old\""
  ],
  "took": "1.234s"
}`
	if string(b) != want {
		t.Errorf("got:\n%s\nwant:\n%s", b, want)
	}
}
