package pvesim

import (
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
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
			return nil, paramErr(k, errNotInSchema)
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
				errs[k] = errNotInSchema
			}
			continue
		}
		checkConfigKey(k, v, set, errs)
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
