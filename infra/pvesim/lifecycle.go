package pvesim

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// clone is POST .../clone (API.md 5.14): early checks answer 500, the new
// VM exists at once as a temporary config locked "clone", the qmclone task
// copies everything and unlocks it.
func (s *Sim) clone(src *VMState, p params, who principal) (any, *apiError) {
	errs := map[string]string{}
	allowed := []string{"newid", "name", "description", "full", "storage", "format", "target", "pool", "snapname", "bwlimit"}
	for k := range p {
		if !slices.Contains(allowed, k) {
			errs[k] = errNotInSchema
		}
	}
	newid, err := strconv.Atoi(p["newid"].s)
	switch {
	case p["newid"].s == "":
		errs["newid"] = "property is missing and it is not optional"
	case err != nil || newid < 100 || newid > 999999999:
		errs["newid"] = "invalid format - value does not look like a valid VM ID"
	}
	if n, ok := p["name"]; ok && !reDNSName.MatchString(n.s) {
		errs["name"] = fmt.Sprintf("value '%s' does not look like a valid DNS name", n.s)
	}
	if f, ok := p["format"]; ok && !slices.Contains([]string{"raw", "qcow2", "vmdk"}, f.s) {
		errs["format"] = fmt.Sprintf("value '%s' does not have a value in the enumeration 'raw, qcow2, vmdk'", f.s)
	}
	full := !src.isTemplate()
	if f, ok := p["full"]; ok {
		v, msg := check(tBool, f)
		if msg != "" {
			errs["full"] = msg
		}
		full = v == "1"
	}
	if len(errs) > 0 {
		return nil, &apiError{code: 400, msg: "Parameter verification failed.", errs: errs}
	}
	if l := src.lock(); l != "" {
		return nil, errf(500, "VM is locked (%s)", l)
	}
	if _, exists := s.st.VMs[newid]; exists {
		return nil, errf(500, "unable to create VM %d: config file already exists", newid)
	}
	if snap := p["snapname"].s; snap != "" {
		return nil, errf(500, "snapshot '%s' does not exist", snap)
	}
	if !full {
		if !src.isTemplate() {
			return nil, errf(500, "Linked clone feature is not supported for drive 'scsi0'")
		}
		for _, k := range []string{"storage", "format"} {
			if _, ok := p[k]; ok {
				return nil, errf(500, "parameter '%s' not allowed for linked clones", k)
			}
		}
	}
	target := src.Node
	if t := p["target"].s; t != "" && t != src.Node {
		tn := s.st.node(t)
		if tn == nil {
			return nil, errf(500, "no such cluster node '%s'", t)
		}
		for k, v := range src.Conf {
			if !isDriveKey(k) {
				continue
			}
			d, _ := parseDrive(v)
			sid, _, _ := strings.Cut(d.file, ":")
			if st := s.st.storage(sid); st != nil && !st.Shared {
				return nil, errf(500, "can't clone VM to node '%s' (VM uses local storage)", t)
			}
		}
		target = t
	}
	var dst *StorageState
	if sid := p["storage"].s; sid != "" {
		dst = s.st.storage(sid)
		if dst == nil || !dst.onNode(target) {
			return nil, errf(500, "storage '%s' does not exist", sid)
		}
		if !strings.Contains(dst.Content, "images") {
			return nil, errf(500, "storage '%s' does not support vm images", sid)
		}
	}
	// go-proxmox: VirtualMachineCloneOptions.Full is omitempty, so a client
	// that leaves it false gets PVE's default, a linked clone of a
	// template; the simulator follows PVE (full stays false above).
	// The temporary config, visible while the task runs (sample
	// qemu-102-config-cloning.json).
	nvm := &VMState{
		VMID:    newid,
		Node:    src.Node,
		Conf:    map[string]string{"lock": "clone", "description": " qmclone temporary file"},
		Created: time.Now(),
	}
	s.st.VMs[newid] = nvm
	name, desc, hasDesc, format := p["name"].s, p["description"].s, p["description"].kind != 0, p["format"].s
	work := func() ([]string, string) {
		if s.st.VMs[newid] != nvm {
			return nil, fmt.Sprintf("clone failed: VM %d was removed", newid)
		}
		conf := map[string]string{}
		var lines []string
		for _, k := range slices.Sorted(maps.Keys(src.Conf)) {
			v := src.Conf[k]
			if k == "template" || k == "lock" || k == "parent" || k == "vmstate" || k == "runningmachine" || k == "runningcpu" || strings.HasPrefix(k, "unused") {
				continue
			}
			t, _ := configKeyType(k)
			switch {
			case t == tNet:
				n, _ := parseNet(v)
				n.mac = s.newMAC()
				v = n.String()
			case k == "smbios1":
				m, order := parseProp(v, "uuid")
				m["uuid"] = newUUID()
				var parts []string
				for _, o := range order {
					parts = append(parts, o+"="+m[o])
				}
				v = strings.Join(parts, ",")
			case k == "vmgenid":
				v = newUUID()
			case t == tDrive:
				d, _ := parseDrive(v)
				if d.file == "none" || d.file == "cdrom" {
					break
				}
				srcStore, srcVol, _ := strings.Cut(d.file, ":")
				sst := s.st.storage(srcStore)
				if sst == nil {
					return nil, fmt.Sprintf("clone failed: storage '%s' does not exist", srcStore)
				}
				store := *sst
				if dst != nil {
					store = *dst
				}
				delete(d.opts, "format")
				if strings.Contains(srcVol, "-cloudinit") {
					id := volID(store, newid, fmt.Sprintf("vm-%d-cloudinit", newid), "qcow2")
					s.st.Volumes[id] = 4 << 20
					d.file = id
					v = d.String()
					lines = append(lines, fmt.Sprintf("create full clone of drive %s (%s)", k, srcVol))
					break
				}
				size := s.st.Volumes[d.file]
				if full {
					f := format
					if f == "" {
						f = volFormat(d.file)
					}
					if !store.fileBased() || !slices.Contains([]string{"raw", "qcow2", "vmdk"}, f) {
						// resolve_dst_disk_format: an unsupported format falls
						// back to the storage default.
						f = defaultFormat(store)
					}
					id := s.allocDisk(store, newid, f)
					s.st.Volumes[id] = size
					lines = append(lines, fmt.Sprintf("create full clone of drive %s (%s)", k, d.file),
						fmt.Sprintf("transferred %s of %s (100.00%%)", formatSize(size), formatSize(size)))
					d.file = id
				} else {
					base := srcVol
					var id string
					if sst.fileBased() {
						id = fmt.Sprintf("%s:%s/%d/vm-%d-disk-0.%s", srcStore, base, newid, newid, volFormat(d.file))
					} else {
						id = fmt.Sprintf("%s:%s/vm-%d-disk-0", srcStore, base, newid)
					}
					s.st.Volumes[id] = size
					lines = append(lines, fmt.Sprintf("create linked clone of drive %s (%s)", k, d.file))
					d.file = id
				}
				d.opts["size"] = formatSize(size)
				v = d.String()
			}
			conf[k] = v
		}
		conf["name"] = name
		if name == "" {
			conf["name"] = "Copy-of-VM-" + src.name()
		}
		if hasDesc {
			conf["description"] = strings.TrimRight(desc, " \t\r\n")
			if conf["description"] == "" {
				delete(conf, "description")
			}
		}
		nvm.Conf = conf
		nvm.Node = target
		return lines, ""
	}
	onFault := func() { delete(s.st.VMs, newid) }
	upid := s.startTask(src.Node, "qmclone", strconv.Itoa(src.VMID), who, work, onFault)
	return upid, nil
}

// power is POST .../status/{start,stop,shutdown,reboot} (API.md 5.16). An
// HA-managed VM only gets its HA request state changed (hastart/hastop);
// the HA manager acts after HADelay.
func (s *Sim) power(vm *VMState, action string, p params, who principal) (any, *apiError) {
	allowed := map[string][]string{
		"start":    {"timeout", "skiplock", "machine"},
		"stop":     {"timeout", "skiplock", "keepActive", "overrule-shutdown"},
		"shutdown": {"timeout", "forceStop", "skiplock", "keepActive"},
		"reboot":   {"timeout"},
	}[action]
	if allowed == nil {
		return nil, &apiError{code: 501, msg: fmt.Sprintf("Method 'POST /nodes/%s/qemu/%d/status/%s' not implemented", vm.Node, vm.VMID, action)}
	}
	for k := range p {
		if !slices.Contains(allowed, k) {
			return nil, paramErr(k, errNotInSchema)
		}
	}
	skiplock := p["skiplock"].s == "1"
	if skiplock && who.id() != "root@pam" {
		return nil, errf(500, "Only root may use option 'skiplock'")
	}
	id := strconv.Itoa(vm.VMID)
	sid := "vm:" + id
	if h := s.st.HA[sid]; h != nil && h.State != "ignored" && action != "reboot" {
		typ, state := "hastart", "started"
		if action != "start" {
			typ, state = "hastop", "stopped"
		}
		return s.startTask(vm.Node, typ, id, who, func() ([]string, string) {
			if h := s.st.HA[sid]; h != nil {
				h.State = state
				s.scheduleCRM()
			}
			return []string{fmt.Sprintf("Requesting HA %s for VM %s", strings.TrimPrefix(typ, "ha"), id)}, ""
		}, nil), nil
	}
	gone := func() bool { return s.st.VMs[vm.VMID] != vm }
	switch action {
	case "start":
		return s.startTask(vm.Node, "qmstart", id, who, func() ([]string, string) {
			switch {
			case gone():
				return nil, fmt.Sprintf("VM %d does not exist", vm.VMID)
			case vm.Running:
				return nil, fmt.Sprintf("VM %d already running", vm.VMID)
			case vm.isTemplate():
				return nil, "you can't start a vm if it's a template"
			case vm.lock() != "" && vm.lock() != "suspended" && !skiplock:
				return nil, fmt.Sprintf("VM is locked (%s)", vm.lock())
			}
			node := s.st.node(vm.Node)
			for k, v := range vm.effective() {
				if t, _ := configKeyType(k); t == tNet {
					n, _ := parseNet(v)
					if b := n.opts["bridge"]; b != "" && !slices.Contains(node.Bridges, b) {
						return nil, fmt.Sprintf("bridge '%s' does not exist", b)
					}
				}
			}
			s.powerOn(vm)
			return []string{"generating cloud-init ISO"}, ""
		}, nil), nil
	case "stop", "shutdown":
		typ := "qm" + action
		return s.startTask(vm.Node, typ, id, who, func() ([]string, string) {
			if gone() {
				return nil, fmt.Sprintf("VM %d does not exist", vm.VMID)
			}
			if l := vm.lock(); l != "" && !skiplock {
				return nil, fmt.Sprintf("VM is locked (%s)", l)
			}
			s.powerOff(vm)
			return nil, ""
		}, nil), nil
	default: // reboot
		return s.startTask(vm.Node, "qmreboot", id, who, func() ([]string, string) {
			if gone() || !vm.Running {
				return nil, fmt.Sprintf("VM %d not running", vm.VMID)
			}
			s.powerOff(vm)
			s.powerOn(vm)
			return nil, ""
		}, nil), nil
	}
}

// destroy is DELETE .../qemu/{vmid} (API.md 5.17).
func (s *Sim) destroy(vm *VMState, p params, who principal) (any, *apiError) {
	for k, v := range p {
		if !slices.Contains([]string{"purge", "destroy-unreferenced-disks", "skiplock"}, k) {
			return nil, paramErr(k, errNotInSchema)
		}
		if _, msg := check(tBool, v); msg != "" {
			return nil, paramErr(k, "%s", msg)
		}
	}
	purge, unref, skiplock := p["purge"].s == "1", p["destroy-unreferenced-disks"].s == "1", p["skiplock"].s == "1"
	if skiplock && who.id() != "root@pam" {
		return nil, errf(500, "Only root may use option 'skiplock'")
	}
	sid := fmt.Sprintf("vm:%d", vm.VMID)
	switch {
	case vm.Conf["protection"] == "1":
		return nil, errf(500, "can't remove VM %d - protection mode enabled", vm.VMID)
	case s.st.HA[sid] != nil && !purge:
		return nil, errf(500, "unable to remove VM %d - used in HA resources and purge parameter not set.", vm.VMID)
	case vm.Running:
		return nil, errf(500, "VM %d is running - destroy failed", vm.VMID)
	case vm.lock() != "" && !skiplock:
		return nil, errf(500, "VM is locked (%s)", vm.lock())
	}
	vm.Conf["lock"] = "destroyed"
	work := func() ([]string, string) {
		if s.st.VMs[vm.VMID] != vm {
			return nil, fmt.Sprintf("VM %d does not exist", vm.VMID)
		}
		var lines []string
		for k, v := range vm.effective() {
			if isDriveKey(k) || strings.HasPrefix(k, "unused") {
				d, _ := parseDrive(v)
				if _, ok := s.st.Volumes[d.file]; ok && ownsVolume(d.file, vm.VMID) {
					delete(s.st.Volumes, d.file)
					lines = append(lines, fmt.Sprintf("Removed volume '%s'", d.file))
				}
			}
		}
		if unref {
			for id := range s.st.Volumes {
				if ownsVolume(id, vm.VMID) {
					delete(s.st.Volumes, id)
				}
			}
		}
		if purge {
			delete(s.st.HA, sid)
		}
		delete(s.st.VMs, vm.VMID)
		return lines, ""
	}
	onFault := func() { delete(vm.Conf, "lock") }
	return s.startTask(vm.Node, "qmdestroy", strconv.Itoa(vm.VMID), who, work, onFault), nil
}

// qemuCreate is POST /nodes/{node}/qemu (API.md 5.21), creating a VM from
// scratch; the clone flow does not use it.
func (s *Sim) qemuCreate(node string, p params, who principal) (any, *apiError) {
	vmid, err := strconv.Atoi(p["vmid"].s)
	if err != nil || vmid < 100 || vmid > 999999999 {
		return nil, paramErr("vmid", "invalid format - value does not look like a valid VM ID")
	}
	if old := s.st.VMs[vmid]; old != nil {
		return nil, errf(500, "unable to create VM %d - VM %d already exists on node '%s'", vmid, vmid, old.Node)
	}
	q := maps.Clone(p)
	delete(q, "vmid")
	start := q["start"].s == "1"
	delete(q, "start")
	vm := &VMState{VMID: vmid, Node: node, Conf: map[string]string{}, Created: time.Now()}
	set := map[string]string{}
	errs := map[string]string{}
	for k, v := range q {
		checkConfigKey(k, v, set, errs)
	}
	if len(errs) > 0 {
		return nil, &apiError{code: 400, msg: "Parameter verification failed.", errs: errs}
	}
	if _, ok := set["smbios1"]; !ok {
		set["smbios1"] = "uuid=" + newUUID()
	}
	vm.Conf["lock"] = "create"
	s.st.VMs[vmid] = vm
	work := func() ([]string, string) {
		delete(vm.Conf, "lock")
		if msg := s.applyConfig(vm, set, nil, nil, false); msg != "" {
			delete(s.st.VMs, vmid)
			return nil, msg
		}
		if start {
			s.powerOn(vm)
		}
		return nil, ""
	}
	onFault := func() { delete(s.st.VMs, vmid) }
	return s.startTask(node, "qmcreate", strconv.Itoa(vmid), who, work, onFault), nil
}
