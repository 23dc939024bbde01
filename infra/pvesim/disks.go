package pvesim

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// driveValue normalises a disk value: "storage:N" allocates a new volume of
// N GiB, "storage:cloudinit" a cloud-init drive; an existing volume is
// re-printed with its real size (a size= sent is replaced, API.md 5.11).
func (s *Sim) driveValue(vm *VMState, key, v, old string) (string, string) {
	d, _ := parseDrive(v)
	if d.file == "none" || d.file == "cdrom" {
		return d.String(), ""
	}
	storeID, vol, ok := strings.Cut(d.file, ":")
	if !ok {
		return "", fmt.Sprintf("unable to parse volume ID '%s'", d.file)
	}
	st := s.st.storage(storeID)
	if st == nil || !st.onNode(vm.Node) {
		return "", fmt.Sprintf("storage '%s' does not exist", storeID)
	}
	if vol == "cloudinit" {
		name := fmt.Sprintf("vm-%d-cloudinit", vm.VMID)
		id := volID(*st, vm.VMID, name, "qcow2")
		s.st.Volumes[id] = 4 << 20
		return drive{file: id, opts: map[string]string{"media": "cdrom"}}.String(), ""
	}
	if gib, err := strconv.ParseFloat(vol, 64); err == nil {
		if !strings.Contains(st.Content, "images") {
			return "", fmt.Sprintf("storage '%s' does not support vm images", storeID)
		}
		format := d.opts["format"]
		if !st.fileBased() || format == "" {
			format = defaultFormat(*st)
		}
		id := s.allocDisk(*st, vm.VMID, format)
		s.st.Volumes[id] = int64(gib * (1 << 30))
		delete(d.opts, "format")
		d.file = id
		d.opts["size"] = formatSize(s.st.Volumes[id])
		return d.String(), ""
	}
	size, exists := s.st.Volumes[d.file]
	if !exists {
		return "", fmt.Sprintf("volume '%s' does not exist", d.file)
	}
	if f, ok := d.opts["format"]; ok && f != volFormat(d.file) {
		return "", fmt.Sprintf("drive '%s': format '%s' does not match the volume's format '%s'", key, f, volFormat(d.file))
	}
	if d.opts["media"] != "cdrom" {
		d.opts["size"] = formatSize(size)
	}
	return d.String(), ""
}

// detachDrive handles a drive leaving the config: a cloud-init drive is
// removed, a disk becomes unusedN (or is destroyed with force).
func (s *Sim) detachDrive(vm *VMState, val string, force bool) {
	d, _ := parseDrive(val)
	if _, ok := s.st.Volumes[d.file]; !ok {
		return
	}
	if force || strings.Contains(d.file, "-cloudinit") {
		delete(s.st.Volumes, d.file)
		return
	}
	for i := 0; i < 256; i++ {
		k := fmt.Sprintf("unused%d", i)
		if _, used := vm.Conf[k]; !used {
			vm.Conf[k] = d.file
			return
		}
	}
}

func defaultFormat(st StorageState) string {
	if st.fileBased() {
		return "qcow2"
	}
	return "raw"
}

func volFormat(id string) string {
	switch {
	case strings.HasSuffix(id, ".qcow2"):
		return "qcow2"
	case strings.HasSuffix(id, ".vmdk"):
		return "vmdk"
	}
	return "raw"
}

func volID(st StorageState, vmid int, name, format string) string {
	if st.fileBased() {
		return fmt.Sprintf("%s:%d/%s.%s", st.ID, vmid, name, format)
	}
	return fmt.Sprintf("%s:%s", st.ID, name)
}

func (s *Sim) allocDisk(st StorageState, vmid int, format string) string {
	for n := 0; ; n++ {
		id := volID(st, vmid, fmt.Sprintf("vm-%d-disk-%d", vmid, n), format)
		if _, used := s.st.Volumes[id]; !used {
			return id
		}
	}
}

// resize is PUT .../resize, a task since PVE 8 (API.md 5.15).
func (s *Sim) resize(vm *VMState, p params, who principal) (any, *apiError) {
	errs := map[string]string{}
	for k := range p {
		if !slices.Contains([]string{"disk", "size", "digest", "skiplock"}, k) {
			errs[k] = errNotInSchema
		}
	}
	disk, sizeArg := p["disk"].s, p["size"].s
	if t, ok := configKeyType(disk); disk == "" || !ok || t != tDrive {
		errs["disk"] = fmt.Sprintf("value '%s' does not have a value in the enumeration", disk)
	}
	want, rel, ok := parseSize(sizeArg)
	if !ok {
		errs["size"] = fmt.Sprintf("value '%s' does not match the regex pattern", sizeArg)
	}
	if len(errs) > 0 {
		return nil, &apiError{code: 400, msg: "Parameter verification failed.", errs: errs}
	}
	if d, ok := p["digest"]; ok && d.s != vm.digest() {
		return nil, errf(500, "checksum mismatch (file change by other user?)")
	}
	skiplock := p["skiplock"].s == "1"
	work := func() ([]string, string) {
		if s.st.VMs[vm.VMID] != vm {
			return nil, fmt.Sprintf("VM %d does not exist", vm.VMID)
		}
		if l := vm.lock(); l != "" && !skiplock {
			return nil, fmt.Sprintf("VM is locked (%s)", l)
		}
		val, ok := vm.Conf[disk]
		if !ok {
			return nil, fmt.Sprintf("disk '%s' does not exist", disk)
		}
		d, _ := parseDrive(val)
		if d.opts["media"] == "cdrom" {
			return nil, "you can't resize a cdrom"
		}
		cur := s.st.Volumes[d.file]
		n := int64(want)
		if rel {
			n = cur + int64(want)
		}
		n = (n + 1023) / 1024 * 1024
		if n < cur {
			return nil, "shrinking disks is not supported"
		}
		if n == cur {
			return nil, ""
		}
		s.st.Volumes[d.file] = n
		d.opts["size"] = formatSize(n)
		vm.Conf[disk] = d.String()
		return []string{fmt.Sprintf("Image resized to %s.", formatSize(n))}, ""
	}
	return s.startTask(vm.Node, "resize", strconv.Itoa(vm.VMID), who, work, nil), nil
}

// ownsVolume: a volume belongs to the VM its name carries (vm-N-…), never
// to the base image of a linked clone.
func ownsVolume(id string, vmid int) bool {
	_, vol, _ := strings.Cut(id, ":")
	last := vol[strings.LastIndex(vol, "/")+1:]
	return strings.HasPrefix(last, fmt.Sprintf("vm-%d-", vmid))
}
