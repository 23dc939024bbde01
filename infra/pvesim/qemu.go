package pvesim

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

func shaHex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

func newUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// newMAC makes a MAC with the datacenter default prefix BC:24:11.
func (s *Sim) newMAC() string {
	s.st.MACSeq++
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("BC:24:11:%02X:%02X:%02X", b[0], b[1], b[2])
}

// Keys that apply at once to a running VM (API.md 4.4); the rest stay
// pending until the next start.
func hotKey(k string, conf map[string]string) bool {
	switch k {
	case "name", "description", "onboot", "tags", "protection", "startup", "hookscript", "lock",
		"ciuser", "cipassword", "citype", "ciupgrade", "cicustom", "nameserver", "searchdomain", "sshkeys",
		"balloon", "cpulimit", "cpuunits":
		return true
	}
	hotplug := conf["hotplug"]
	if hotplug == "" {
		hotplug = "network,disk,usb"
	}
	hp := splitList(hotplug)
	if hotplug == "1" {
		hp = []string{"network", "disk", "usb"}
	}
	switch t, _ := configKeyType(k); {
	case t == tIPConfig:
		return true
	case t == tNet:
		return slices.Contains(hp, "network")
	case t == tDrive:
		return slices.Contains(hp, "disk")
	case k == "memory":
		return slices.Contains(hp, "memory")
	case k == "vcpus":
		return slices.Contains(hp, "cpu")
	}
	return false
}

func isCloudInitKey(k string) bool {
	switch k {
	case "ciuser", "cipassword", "citype", "ciupgrade", "cicustom", "nameserver", "searchdomain", "sshkeys":
		return true
	}
	t, ok := configKeyType(k)
	return ok && t == tIPConfig
}

func cloudInitData(conf map[string]string) map[string]string {
	m := map[string]string{}
	for k, v := range conf {
		if isCloudInitKey(k) {
			m[k] = v
		}
	}
	return m
}

// typed renders a config value with the JSON type PVE uses (API.md 1.4):
// integer and boolean keys as numbers, everything else (memory included,
// PVE ≥ 8.1) as strings.
func typed(k, v string) any {
	if t, ok := configKeyType(k); ok && (t == tInt || t == tBool) {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return v
}

// getVM finds a VM on a node. A missing VM is a 500 with PVE's text, never
// a 404 or {"data":null}: go-proxmox decodes those without error and then
// dereferences a nil VM (Node.VirtualMachine, VirtualMachine.Ping panic).
func (s *Sim) getVM(node string, vmid int) (*VMState, *apiError) {
	vm := s.st.VMs[vmid]
	if vm == nil || vm.Node != node {
		return nil, errNoVM(node, vmid)
	}
	return vm, nil
}

func (s *Sim) qemuList(node string) []map[string]any {
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(s.st.VMs)) {
		vm := s.st.VMs[id]
		if vm.Node != node {
			continue
		}
		out = append(out, s.listEntry(vm))
	}
	return out
}

// listEntry is one VM of /nodes/{node}/qemu; also the base of status/current.
func (s *Sim) listEntry(vm *VMState) map[string]any {
	c := vm.Conf
	m := map[string]any{
		"vmid": vm.VMID, "name": vm.name(), "status": "stopped", "cpus": cpus(c),
		"maxmem": memMiB(c) << 20, "maxdisk": s.bootDiskSize(c), "mem": 0, "disk": 0,
		"uptime": 0, "netin": 0, "netout": 0, "cpu": 0,
	}
	if vm.Running {
		m["status"] = "running"
		m["pid"] = vm.PID
		m["uptime"] = int(time.Since(vm.StartedAt).Seconds())
		m["mem"] = memMiB(c) << 20 / 4
		m["cpu"] = 0.0123
	}
	if l := c["lock"]; l != "" {
		m["lock"] = l
	}
	if t := vm.tags(); t != "" {
		m["tags"] = t
	}
	// go-proxmox: IsTemplate decodes every value but "" as true, so the key
	// is omitted for non-templates, as PVE does.
	if vm.isTemplate() {
		m["template"] = 1
	}
	if _, ok := c["serial0"]; ok {
		m["serial"] = 1
	}
	return m
}

func (s *Sim) vmRoute(method, node string, vmid int, rest []string, p params, who principal) (any, *apiError) {
	sub := strings.Join(rest, "/")
	get, post, put, del := method == http.MethodGet, method == http.MethodPost, method == http.MethodPut, method == http.MethodDelete
	vm, verr := s.getVM(node, vmid)
	if verr != nil && !(sub == "" && get) {
		return nil, verr
	}
	switch {
	case sub == "" && get:
		if verr != nil {
			return nil, verr
		}
		var out []map[string]any
		for _, n := range []string{"config", "pending", "status", "clone", "resize", "agent", "cloudinit"} {
			out = append(out, map[string]any{"subdir": n})
		}
		return out, nil
	case sub == "" && del:
		return s.destroy(vm, p, who)
	case sub == "status/current" && get:
		return s.statusCurrent(vm), nil
	case len(rest) == 2 && rest[0] == "status" && post:
		return s.power(vm, rest[1], p, who)
	case sub == "config" && get:
		return s.configGet(vm, p)
	case sub == "config" && (post || put):
		return s.configUpdate(vm, p, who, put)
	case sub == "pending" && get:
		return s.pendingGet(vm), nil
	case sub == "clone" && post:
		return s.clone(vm, p, who)
	case sub == "resize" && put:
		return s.resize(vm, p, who)
	case sub == "cloudinit" && get:
		return s.cloudInitGet(vm), nil
	case sub == "cloudinit" && put:
		if l := vm.lock(); l != "" {
			return nil, errf(500, "VM is locked (%s)", l)
		}
		vm.CloudInit = cloudInitData(vm.effective())
		return nil, nil
	case len(rest) == 2 && rest[0] == "agent":
		return s.agent(vm, rest[1], method)
	}
	return nil, &apiError{code: 501, msg: fmt.Sprintf("Method '%s /nodes/%s/qemu/%d/%s' not implemented", method, node, vmid, sub)}
}

func (s *Sim) statusCurrent(vm *VMState) map[string]any {
	m := s.listEntry(vm)
	m["qmpstatus"] = m["status"]
	if vm.Running {
		m["running-machine"] = "pc-i440fx-8.1+pve0"
		m["running-qemu"] = "8.1.5"
		m["freemem"] = memMiB(vm.Conf) << 20 * 3 / 4
		m["balloon"] = memMiB(vm.Conf) << 20
		m["diskread"] = 0
		m["diskwrite"] = 0
	}
	if a, _ := parseProp(vm.Conf["agent"], "enabled"); a["enabled"] == "1" {
		m["agent"] = 1
	}
	if _, ok := vm.Conf["vga"]; ok {
		m["clipboard"] = nil
	}
	ha := map[string]any{"managed": 0}
	if h := s.st.HA[fmt.Sprintf("vm:%d", vm.VMID)]; h != nil {
		ha = map[string]any{"managed": 1, "group": h.Group, "state": nil}
		if h.CRM != "" {
			ha["state"] = h.CRM
		}
		if h.Group == "" {
			delete(ha, "group")
		}
	}
	m["ha"] = ha
	return m
}

func (s *Sim) configGet(vm *VMState, p params) (any, *apiError) {
	for k := range p {
		if k != "current" && k != "snapshot" {
			return nil, paramErr(k, "property is not defined in schema and the schema does not allow additional properties")
		}
	}
	if snap := p["snapshot"].s; snap != "" {
		return nil, errf(500, "snapshot '%s' does not exist", snap)
	}
	c := vm.effective()
	if p["current"].s == "1" {
		c = vm.Conf
	}
	out := map[string]any{"digest": vm.digest()}
	for k, v := range c {
		if k == "cipassword" {
			v = "**********"
		}
		out[k] = typed(k, v)
	}
	return out, nil
}

func (s *Sim) pendingGet(vm *VMState) []map[string]any {
	out := []map[string]any{}
	keys := map[string]bool{}
	for k := range vm.Conf {
		keys[k] = true
	}
	for k := range vm.Pending {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		it := map[string]any{"key": k}
		if v, ok := vm.Conf[k]; ok {
			it["value"] = typed(k, v)
		}
		if v, ok := vm.Pending[k]; ok {
			it["pending"] = typed(k, v)
		}
		if slices.Contains(vm.PendingDelete, k) {
			it["delete"] = 1
		}
		out = append(out, it)
	}
	out = append(out, map[string]any{"key": "digest", "value": vm.digest()})
	slices.SortFunc(out, func(a, b map[string]any) int { return strings.Compare(a["key"].(string), b["key"].(string)) })
	return out
}

// cloudInitGet answers GET .../cloudinit with PVE's types: boolean keys
// (ciupgrade) are numbers. go-proxmox: CloudInitPending decodes value and
// pending as strings and so fails on them, as it does against a real node;
// gitedge does not use it.
func (s *Sim) cloudInitGet(vm *VMState) []map[string]any {
	cur := cloudInitData(vm.effective())
	out := []map[string]any{}
	keys := map[string]bool{}
	for k := range cur {
		keys[k] = true
	}
	for k := range vm.CloudInit {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		it := map[string]any{"key": k}
		old, had := vm.CloudInit[k]
		now, has := cur[k]
		if had {
			it["value"] = typed(k, old)
		} else if vm.CloudInit == nil && has {
			it["value"] = typed(k, now)
		}
		if vm.CloudInit != nil && has && (!had || old != now) {
			it["pending"] = typed(k, now)
		}
		if had && !has {
			it["delete"] = 1
		}
		out = append(out, it)
	}
	return out
}

var configSpecial = []string{"delete", "revert", "digest", "force", "skiplock", "background_delay"}

// configUpdate is POST (async, sync=false) and PUT (sync) .../config.
func (s *Sim) configUpdate(vm *VMState, p params, who principal, sync bool) (any, *apiError) {
	set := map[string]string{}
	errs := map[string]string{}
	for k, v := range p {
		if slices.Contains(configSpecial, k) {
			if k == "background_delay" && sync {
				errs[k] = "property is not defined in schema and the schema does not allow additional properties"
			}
			continue
		}
		t, ok := configKeyType(k)
		if !ok {
			errs[k] = "property is not defined in schema and the schema does not allow additional properties"
			continue
		}
		val, msg := check(t, v)
		if msg != "" {
			errs[k] = msg
			continue
		}
		set[k] = val
	}
	for _, b := range []string{"force", "skiplock"} {
		if v, ok := p[b]; ok {
			if _, msg := check(tBool, v); msg != "" {
				errs[b] = msg
			}
		}
	}
	if len(errs) > 0 {
		return nil, &apiError{code: 400, msg: "Parameter verification failed.", errs: errs}
	}
	dels := splitList(p["delete"].s)
	reverts := splitList(p["revert"].s)
	for _, k := range append(slices.Clone(dels), reverts...) {
		if _, ok := configKeyType(k); !ok {
			return nil, paramErr("delete", "invalid configuration key '%s'", k)
		}
		if _, both := set[k]; both {
			return nil, errf(500, "unable to delete '%s' - option is also set", k)
		}
	}
	if len(set) == 0 && len(dels) == 0 && len(reverts) == 0 {
		return nil, errf(500, "no options specified")
	}
	skiplock := p["skiplock"].s == "1"
	if skiplock && who.id() != "root@pam" {
		return nil, errf(500, "Only root may use option 'skiplock'")
	}
	if d, ok := p["digest"]; ok && d.s != vm.digest() {
		return nil, errf(500, "checksum mismatch (file change by other user?)")
	}
	if l := vm.lock(); l != "" && !skiplock {
		return nil, errf(500, "VM is locked (%s)", l)
	}
	if v, ok := set["memory"]; ok {
		if b, err := strconv.Atoi(vm.effective()["balloon"]); err == nil && int64(b) > memMiB(map[string]string{"memory": v}) {
			return nil, errf(500, "balloon value too large (must be smaller than assigned memory)")
		}
	}
	force := p["force"].s == "1"
	work := func() ([]string, string) {
		return nil, s.applyConfig(vm, set, dels, reverts, force)
	}
	if sync {
		if msg := s.applyConfig(vm, set, dels, reverts, force); msg != "" {
			return nil, errf(500, "%s", msg)
		}
		return nil, nil
	}
	upid := s.startTask(vm.Node, "qmconfig", strconv.Itoa(vm.VMID), who, work, nil)
	if bd, ok := p["background_delay"]; ok {
		// With background_delay PVE waits up to that many seconds: null when
		// the task succeeded in time, its error when it failed, else the UPID.
		// go-proxmox: Config then returns a nil *Task (client-calls.md).
		n, err := strconv.Atoi(bd.s)
		if err != nil || n < 1 || n > 30 {
			return nil, paramErr("background_delay", "value must have a minimum value of 1 and a maximum value of 30")
		}
		if t := s.tasks[upid]; !t.running && time.Duration(n)*time.Second >= s.opts.TaskDuration {
			if t.exit != "OK" && !strings.HasPrefix(t.exit, "WARNINGS") {
				return nil, errf(500, "%s", t.exit)
			}
			return nil, nil
		}
	}
	return upid, nil
}

// applyConfig writes a config change: everything into [PENDING] first, then
// what can apply now (all of it for a stopped VM, hot keys for a running
// one) moves into the active config (API.md 4.4).
func (s *Sim) applyConfig(vm *VMState, set map[string]string, dels, reverts []string, force bool) string {
	if s.st.VMs[vm.VMID] != vm {
		return fmt.Sprintf("VM %d does not exist", vm.VMID)
	}
	eff := vm.effective()
	for _, k := range slices.Sorted(maps.Keys(set)) {
		v := set[k]
		t, _ := configKeyType(k)
		switch t {
		case tNet:
			n, _ := parseNet(v)
			if n.mac == "" {
				n.mac = s.newMAC()
			}
			v = n.String()
		case tDrive:
			nv, msg := s.driveValue(vm, k, v, eff[k])
			if msg != "" {
				return msg
			}
			v = nv
		}
		if k == "description" {
			v = strings.TrimRight(v, " \t\r\n")
		}
		if vm.Pending == nil {
			vm.Pending = map[string]string{}
		}
		vm.Pending[k] = v
		vm.PendingDelete = slices.DeleteFunc(vm.PendingDelete, func(d string) bool { return d == k })
	}
	for _, k := range reverts {
		delete(vm.Pending, k)
		vm.PendingDelete = slices.DeleteFunc(vm.PendingDelete, func(d string) bool { return d == k })
	}
	for _, k := range dels {
		delete(vm.Pending, k)
		if _, ok := vm.Conf[k]; ok && !slices.Contains(vm.PendingDelete, k) {
			vm.PendingDelete = append(vm.PendingDelete, k)
		}
	}
	slices.Sort(vm.PendingDelete)
	// Apply what can be applied now.
	for _, k := range slices.Sorted(maps.Keys(vm.Pending)) {
		if !vm.Running || hotKey(k, vm.Conf) {
			if old, ok := vm.Conf[k]; ok && isDriveKey(k) && old != vm.Pending[k] {
				s.detachDrive(vm, old, false)
			}
			vm.Conf[k] = vm.Pending[k]
			delete(vm.Pending, k)
		}
	}
	var keep []string
	for _, k := range vm.PendingDelete {
		if !vm.Running || hotKey(k, vm.Conf) {
			if isDriveKey(k) {
				s.detachDrive(vm, vm.Conf[k], force)
			}
			delete(vm.Conf, k)
			continue
		}
		keep = append(keep, k)
	}
	vm.PendingDelete = keep
	// cleanup_pending: a pending value equal to the active one is dropped.
	for k, v := range vm.Pending {
		if vm.Conf[k] == v {
			delete(vm.Pending, k)
		}
	}
	if len(vm.Pending) == 0 {
		vm.Pending = nil
	}
	return ""
}

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

// clone is POST .../clone (API.md 5.14): early checks answer 500, the new
// VM exists at once as a temporary config locked "clone", the qmclone task
// copies everything and unlocks it.
func (s *Sim) clone(src *VMState, p params, who principal) (any, *apiError) {
	errs := map[string]string{}
	allowed := []string{"newid", "name", "description", "full", "storage", "format", "target", "pool", "snapname", "bwlimit"}
	for k := range p {
		if !slices.Contains(allowed, k) {
			errs[k] = "property is not defined in schema and the schema does not allow additional properties"
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

// resize is PUT .../resize, a task since PVE 8 (API.md 5.15).
func (s *Sim) resize(vm *VMState, p params, who principal) (any, *apiError) {
	errs := map[string]string{}
	for k := range p {
		if !slices.Contains([]string{"disk", "size", "digest", "skiplock"}, k) {
			errs[k] = "property is not defined in schema and the schema does not allow additional properties"
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
			return nil, paramErr(k, "property is not defined in schema and the schema does not allow additional properties")
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
			return nil, paramErr(k, "property is not defined in schema and the schema does not allow additional properties")
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

// ownsVolume: a volume belongs to the VM its name carries (vm-N-…), never
// to the base image of a linked clone.
func ownsVolume(id string, vmid int) bool {
	_, vol, _ := strings.Cut(id, ":")
	last := vol[strings.LastIndex(vol, "/")+1:]
	return strings.HasPrefix(last, fmt.Sprintf("vm-%d-", vmid))
}

// agent answers the guest agent endpoints (API.md 5.19).
func (s *Sim) agent(vm *VMState, cmd, method string) (any, *apiError) {
	switch {
	case cmd == "network-get-interfaces" && method == http.MethodGet,
		cmd == "get-osinfo" && method == http.MethodGet,
		cmd == "ping" && method == http.MethodPost:
	default:
		return nil, &apiError{code: 501, msg: fmt.Sprintf("Method '%s /nodes/%s/qemu/%d/agent/%s' not implemented", method, vm.Node, vm.VMID, cmd)}
	}
	if a, _ := parseProp(vm.Conf["agent"], "enabled"); a["enabled"] != "1" {
		return nil, errf(500, "No QEMU guest agent configured")
	}
	if !vm.Running {
		return nil, errf(500, "VM %d is not running", vm.VMID)
	}
	if time.Since(vm.StartedAt) < s.opts.BootDelay {
		return nil, errf(500, "QEMU guest agent is not running")
	}
	switch cmd {
	case "ping":
		return map[string]any{"result": map[string]any{}}, nil
	case "get-osinfo":
		return map[string]any{"result": map[string]any{
			"id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 11 (bullseye)",
			"version": "11 (bullseye)", "version-id": "11", "kernel-release": "5.10.0-30-cloud-amd64",
			"kernel-version": "#1 SMP Debian 5.10.218-1 (2024-06-01)", "machine": "x86_64",
		}}, nil
	}
	ifaces := []map[string]any{{
		"name": "lo", "hardware-address": "00:00:00:00:00:00",
		"ip-addresses": []map[string]any{
			{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
			{"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
		},
	}}
	var nets []int
	for k := range vm.Conf {
		if n, ok := strings.CutPrefix(k, "net"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				nets = append(nets, i)
			}
		}
	}
	slices.Sort(nets)
	for _, i := range nets {
		n, _ := parseNet(vm.Conf[fmt.Sprintf("net%d", i)])
		mac := strings.ToLower(n.mac)
		var addrs []map[string]any
		ipc, _ := parseProp(vm.Booted[fmt.Sprintf("ipconfig%d", i)], "")
		switch ip := ipc["ip"]; {
		case ip != "" && ip != "dhcp":
			if pfx, err := netip.ParsePrefix(ip); err == nil {
				addrs = append(addrs, map[string]any{"ip-address": pfx.Addr().String(), "ip-address-type": "ipv4", "prefix": pfx.Bits()})
			}
		case i == 0:
			// DHCP: the simulated network's server hands out 198.51.100.0/24.
			addrs = append(addrs, map[string]any{"ip-address": fmt.Sprintf("198.51.100.%d", 10+vm.VMID%200), "ip-address-type": "ipv4", "prefix": 24})
		}
		addrs = append(addrs, map[string]any{"ip-address": linkLocal(mac), "ip-address-type": "ipv6", "prefix": 64})
		ifaces = append(ifaces, map[string]any{
			"name": fmt.Sprintf("eth%d", i), "hardware-address": mac, "ip-addresses": addrs,
			"statistics": map[string]any{"rx-bytes": 0, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 0, "tx-bytes": 0, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 0},
		})
	}
	return map[string]any{"result": ifaces}, nil
}

// linkLocal is the EUI-64 IPv6 link-local address of a MAC.
func linkLocal(mac string) string {
	var b [6]byte
	if _, err := fmt.Sscanf(mac, "%02x:%02x:%02x:%02x:%02x:%02x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]); err != nil {
		return "fe80::1"
	}
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15] = b[0]^2, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]
	return netip.AddrFrom16(a).String()
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
		t, ok := configKeyType(k)
		if !ok {
			errs[k] = "property is not defined in schema and the schema does not allow additional properties"
			continue
		}
		val, msg := check(t, v)
		if msg != "" {
			errs[k] = msg
			continue
		}
		set[k] = val
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
