package infra

// KeyChange is one Proxmox config key a new spec sets on a VM running the
// old one, and when it takes effect there.
type KeyChange struct {
	FieldChange
	// Live: applied to the running VM at once; false: pending until the
	// VM's next start (Proxmox keeps it in the config's pending section).
	Live bool
}

// Preview says what changing a VM's spec from old to new does to a VM
// that runs old, from the specs alone (a pull request's review, before
// any Proxmox is asked): the config keys set, each live or pending until
// the next start, by the same classification the reconciler applies.
// Fields in new's ignoreChanges are left out, as the reconciler leaves
// them alone. The disk is told apart by DiskPreview.
func Preview(old, new VM) []KeyChange {
	obs := map[string]string{}
	for _, w := range wants(old, nil) {
		obs[w.key] = w.value
	}
	var out []KeyChange
	for _, f := range diff(new, obs, true) {
		out = append(out, KeyChange{FieldChange: f, Live: hotKey(f.Key)})
	}
	return out
}

// DiskChange is what a new spec.disk.size does to an existing disk.
type DiskChange string

const (
	DiskSame   DiskChange = ""       // no change, or the disk is ignored
	DiskGrow   DiskChange = "grow"   // resized online; the guest grows its filesystem
	DiskShrink DiskChange = "shrink" // refused: disks only grow
)

// DiskPreview classifies the disk size change from old to new.
func DiskPreview(old, new VM) DiskChange {
	switch {
	case new.Ignores("disk") || old.Disk.Size == 0 || new.Disk.Size == 0:
		return DiskSame
	case new.Disk.Size > old.Disk.Size:
		return DiskGrow
	case new.Disk.Size < old.Disk.Size:
		return DiskShrink
	}
	return DiskSame
}
