package pvesim

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (s *Sim) nodesList() []map[string]any {
	out := []map[string]any{}
	for i, n := range s.st.Nodes {
		m := map[string]any{
			"node":            n.Name,
			"id":              "node/" + n.Name,
			"type":            "node",
			"level":           "",
			"status":          "offline",
			"ssl_fingerprint": fingerprint(i),
		}
		if n.Online && !slices.Contains(s.faults.OfflineNodes, n.Name) {
			m["status"] = "online"
			m["cpu"] = 0.0345
			m["maxcpu"] = 16
			m["mem"] = 14763753472
			m["maxmem"] = 134850183168
			m["disk"] = 8251850752
			m["maxdisk"] = 100861726720
			m["uptime"] = 1209600
		}
		out = append(out, m)
	}
	return out
}

func fingerprint(i int) string {
	b := make([]string, 32)
	for j := range b {
		b[j] = fmt.Sprintf("%02X", (i*37+j*11+5)&0xff)
	}
	return strings.Join(b, ":")
}

func (s *Sim) nodeStatus(node string) map[string]any {
	return map[string]any{
		"uptime":   1209600,
		"idle":     0,
		"cpu":      0.0345912144702842,
		"wait":     0.000129,
		"loadavg":  []string{"0.21", "0.17", "0.12"},
		"kversion": "Linux 6.8.8-2-pve #1 SMP PREEMPT_DYNAMIC PMX 6.8.8-2 (2024-06-24T09:00Z)",
		"cpuinfo": map[string]any{
			"cores": 8, "cpus": 16, "sockets": 1, "user_hz": 100, "hvm": "1", "mhz": "3593.250",
			"model": "AMD Ryzen 7 5800X 8-Core Processor", "flags": "fpu vme de pse tsc msr pae mce cx8 apic sep",
		},
		"memory":     map[string]any{"free": 120086429696, "total": 134850183168, "used": 14763753472},
		"swap":       map[string]any{"free": 8589930496, "total": 8589930496, "used": 0},
		"rootfs":     map[string]any{"avail": 87458451456, "free": 92609875968, "total": 100861726720, "used": 8251850752},
		"ksm":        map[string]any{"shared": 0},
		"pveversion": "pve-manager/8.2.4/faa83925c9641325",
		"current-kernel": map[string]any{
			"machine": "x86_64", "release": "6.8.8-2-pve", "sysname": "Linux",
			"version": "#1 SMP PREEMPT_DYNAMIC PMX 6.8.8-2 (2024-06-24T09:00Z)",
		},
		"boot-info": map[string]any{"mode": "efi", "secureboot": 0},
	}
}

func (s *Sim) nodeStorage(node string) []map[string]any {
	out := []map[string]any{}
	for _, st := range s.st.Storages {
		if !st.onNode(node) {
			continue
		}
		var used int64
		for v, sz := range s.st.Volumes {
			if strings.HasPrefix(v, st.ID+":") {
				used += sz
			}
		}
		total := int64(1999197290496)
		out = append(out, map[string]any{
			"storage": st.ID, "type": st.Type, "content": st.Content, "enabled": 1, "active": 1,
			"shared": b2i(st.Shared), "total": total, "used": used, "avail": total - used,
			"used_fraction": float64(used) / float64(total),
		})
	}
	return out
}

// networkTypes are the type filters of GET /nodes/{node}/network.
var networkTypes = []string{"bridge", "bond", "eth", "alias", "vlan", "OVSBridge", "OVSBond", "OVSPort", "OVSIntPort", "any_bridge", "any_local_bridge"}

// nodeNetwork lists the node's interfaces as pve-manager does: the
// physical NIC and the bridges (up ones with active 1, others without
// the key), filtered by type; any_bridge matches Linux and OVS bridges
// (and SDN VNets, which the simulator has none of).
func (s *Sim) nodeNetwork(node string, p params) (any, *apiError) {
	for k := range p {
		if k != "type" {
			return nil, paramErr(k, errNotInSchema)
		}
	}
	typ := p["type"].s
	if _, ok := p["type"]; ok && !slices.Contains(networkTypes, typ) {
		return nil, paramErr("type", "value '%s' does not have a value in the enumeration '%s'", typ, strings.Join(networkTypes, ", "))
	}
	n := s.st.node(node)
	var all []map[string]any
	all = append(all, map[string]any{"iface": "eno1", "type": "eth", "method": "manual", "method6": "manual",
		"families": []string{"inet"}, "priority": 3, "exists": 1, "active": 1})
	bridge := func(name string, i int, up bool) map[string]any {
		m := map[string]any{"iface": name, "type": "bridge", "method": "manual", "method6": "manual", "families": []string{"inet"},
			"priority": 4 + i, "autostart": 1, "bridge_ports": "none", "bridge_stp": "off", "bridge_fd": "0"}
		if i == 0 {
			m["bridge_ports"], m["method"] = "eno1", "static"
			m["address"], m["netmask"], m["cidr"] = n.IP, "24", n.IP+"/24"
		}
		if up {
			m["active"] = 1
		}
		return m
	}
	for i, b := range n.Bridges {
		all = append(all, bridge(b, i, true))
	}
	for i, b := range n.DownBridges {
		all = append(all, bridge(b, len(n.Bridges)+i, false))
	}
	out := []map[string]any{}
	for _, m := range all {
		t := m["type"].(string)
		anyBridge := (typ == "any_bridge" || typ == "any_local_bridge") && (t == "bridge" || t == "OVSBridge")
		if typ == "" || typ == t || anyBridge {
			out = append(out, m)
		}
	}
	return out, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// clusterStatus: a single unclustered node gets only its node entry;
// several nodes get the cluster entry too (API.md 5.4). Every flag is a
// number: go-proxmox's Cluster decoder panics on anything else.
func (s *Sim) clusterStatus() []map[string]any {
	var out []map[string]any
	if len(s.st.Nodes) > 1 {
		out = append(out, map[string]any{"id": "cluster", "type": "cluster", "name": "edge1", "nodes": len(s.st.Nodes), "quorate": 1, "version": 7})
	}
	for i, n := range s.st.Nodes {
		online := n.Online && !slices.Contains(s.faults.OfflineNodes, n.Name)
		nodeid := i + 1
		if len(s.st.Nodes) == 1 {
			nodeid = 0
		}
		out = append(out, map[string]any{
			"id": "node/" + n.Name, "type": "node", "name": n.Name, "ip": n.IP, "level": "",
			"local": b2i(i == 0), "online": b2i(online), "nodeid": nodeid,
		})
	}
	return out
}

// nextID answers as a JSON string (API.md 5.5); go-proxmox's NextID
// decodes into a string and converts it.
func (s *Sim) nextID(p params) (any, *apiError) {
	if v, ok := p["vmid"]; ok {
		id, err := strconv.Atoi(v.s)
		if err != nil || id < 100 {
			return nil, paramErr("vmid", "invalid format - value does not look like a valid VM ID")
		}
		if _, used := s.st.VMs[id]; used {
			return nil, paramErr("vmid", "VM %d already exists", id)
		}
		return strconv.Itoa(id), nil
	}
	for id := 100; ; id++ {
		if _, used := s.st.VMs[id]; !used {
			return strconv.Itoa(id), nil
		}
	}
}

// resources lists guests (and nodes and storage without a type filter),
// cluster-wide. tags and lock come from the live config.
func (s *Sim) resources(p params) (any, *apiError) {
	typ := p["type"].s
	if typ != "" && typ != "vm" && typ != "node" && typ != "storage" && typ != "sdn" && typ != "pool" {
		return nil, paramErr("type", "value '%s' does not have a value in the enumeration 'vm, storage, node, sdn, pool'", typ)
	}
	out := []map[string]any{}
	if typ == "" || typ == "vm" {
		for _, id := range slices.Sorted(maps.Keys(s.st.VMs)) {
			out = append(out, s.vmResource(s.st.VMs[id]))
		}
	}
	if typ == "" || typ == "node" {
		for _, n := range s.nodesList() {
			n["id"] = "node/" + n["node"].(string)
			out = append(out, n)
		}
	}
	if typ == "" || typ == "storage" {
		for _, n := range s.st.Nodes {
			for _, st := range s.nodeStorage(n.Name) {
				out = append(out, map[string]any{
					"id": "storage/" + n.Name + "/" + st["storage"].(string), "type": "storage", "node": n.Name,
					"storage": st["storage"], "plugintype": st["type"], "content": st["content"], "shared": st["shared"],
					"status": "available", "disk": st["used"], "maxdisk": st["total"],
				})
			}
		}
	}
	return out, nil
}

func (s *Sim) vmResource(vm *VMState) map[string]any {
	c := vm.effective()
	m := map[string]any{
		"id":   fmt.Sprintf("qemu/%d", vm.VMID),
		"type": "qemu", "vmid": vm.VMID, "node": vm.Node,
	}
	if c["tags"] != "" {
		m["tags"] = c["tags"]
	}
	if c["lock"] != "" {
		// go-proxmox: ClusterResource has no lock field and drops it; PVE
		// sends it, and so does the simulator (clients read the lock from
		// the config or status/current).
		m["lock"] = c["lock"]
	}
	if h := s.st.HA[fmt.Sprintf("vm:%d", vm.VMID)]; h != nil {
		m["hastate"] = h.State
	}
	lag := s.opts.RRDLag
	if (c["lock"] == "clone" && c["name"] == "") || (lag > 0 && time.Since(vm.Created) < lag) {
		// Freshly created: the RRD has no stats yet (API.md 5.6).
		m["status"] = "unknown"
		return m
	}
	running := vm.Running
	if lag > 0 && time.Since(vm.PowerChanged) < lag {
		running = vm.WasRunning
	}
	m["status"] = "stopped"
	if running {
		m["status"] = "running"
		m["uptime"] = int(time.Since(vm.StartedAt).Seconds())
		m["mem"] = memMiB(vm.Conf) << 20 / 4
	} else {
		m["uptime"] = 0
		m["mem"] = 0
	}
	m["name"] = vm.name()
	m["template"] = b2i(vm.isTemplate())
	m["maxcpu"] = cpus(vm.Conf)
	m["maxmem"] = memMiB(vm.Conf) << 20
	m["maxdisk"] = s.bootDiskSize(vm.Conf)
	m["cpu"] = 0.0
	for _, k := range []string{"disk", "netin", "netout", "diskread", "diskwrite"} {
		m[k] = 0
	}
	return m
}

func cpus(c map[string]string) int {
	cores, err := strconv.Atoi(c["cores"])
	if err != nil {
		cores = 1
	}
	sockets, err := strconv.Atoi(c["sockets"])
	if err != nil {
		sockets = 1
	}
	return cores * sockets
}

func memMiB(c map[string]string) int64 {
	n, err := strconv.ParseInt(strings.TrimPrefix(c["memory"], "current="), 10, 64)
	if err != nil {
		return 512
	}
	return n
}

// bootDiskSize is the size of the first disk (by boot order, else scsi0,
// virtio0, sata0, ide0).
func (s *Sim) bootDiskSize(c map[string]string) int64 {
	keys := []string{"scsi0", "virtio0", "sata0", "ide0"}
	if order, ok := strings.CutPrefix(c["boot"], "order="); ok {
		keys = append(strings.Split(order, ";"), keys...)
	}
	for _, k := range keys {
		if v, ok := c[k]; ok && isDriveKey(k) {
			d, _ := parseDrive(v)
			if d.opts["media"] == "cdrom" {
				continue
			}
			return s.st.Volumes[d.file]
		}
	}
	return 0
}

// --- HA (pve-ha-manager 4.0) ---

func (s *Sim) haGroups() []map[string]any {
	out := []map[string]any{}
	for _, g := range slices.Sorted(maps.Keys(s.st.Groups)) {
		spec := s.st.Groups[g]
		m := map[string]any{"group": g, "type": "group", "nodes": spec.Nodes, "digest": "4a0a19218e082a343a1b17e5333409af9d98f0f5"}
		if spec.Restricted {
			m["restricted"] = 1
		}
		if spec.NoFailback {
			m["nofailback"] = 1
		}
		out = append(out, m)
	}
	return out
}

func (s *Sim) haEntry(sid string, h *HAState) map[string]any {
	m := map[string]any{"sid": sid, "type": "vm", "state": h.State, "digest": s.haDigest()}
	if h.Group != "" {
		m["group"] = h.Group
		if _, ok := s.st.Groups[h.Group]; !ok {
			m["errors"] = map[string]string{"group": fmt.Sprintf("group '%s' does not exist", h.Group)}
		}
	}
	if h.MaxRestart != nil {
		m["max_restart"] = *h.MaxRestart
	}
	if h.MaxRelocate != nil {
		m["max_relocate"] = *h.MaxRelocate
	}
	if h.Comment != "" {
		m["comment"] = h.Comment
	}
	return m
}

func (s *Sim) haDigest() string {
	var b strings.Builder
	for _, sid := range slices.Sorted(maps.Keys(s.st.HA)) {
		h := s.st.HA[sid]
		fmt.Fprintf(&b, "%s %s %s\n", sid, h.State, h.Group)
	}
	return shaHex(b.String())
}

func (s *Sim) haList(p params) []map[string]any {
	out := []map[string]any{}
	if t := p["type"].s; t != "" && t != "vm" {
		return out
	}
	for _, sid := range slices.Sorted(maps.Keys(s.st.HA)) {
		out = append(out, s.haEntry(sid, s.st.HA[sid]))
	}
	return out
}

// normSID accepts "vm:101" or "101".
func normSID(sid string) (string, int, bool) {
	sid = strings.TrimPrefix(sid, "vm:")
	id, err := strconv.Atoi(sid)
	if err != nil || id < 100 {
		return "", 0, false
	}
	return "vm:" + sid, id, true
}

// haLookup finds the HA resource raw names.
func (s *Sim) haLookup(raw string) (string, *HAState, *apiError) {
	sid, _, ok := normSID(raw)
	if !ok {
		return "", nil, paramErr("sid", "unable to parse service id '%s'", raw)
	}
	h := s.st.HA[sid]
	if h == nil {
		return "", nil, errf(500, "no such resource '%s'", sid)
	}
	return sid, h, nil
}

func (s *Sim) haGet(raw string) (any, *apiError) {
	sid, h, err := s.haLookup(raw)
	if err != nil {
		return nil, err
	}
	return s.haEntry(sid, h), nil
}

var haStates = []string{"started", "stopped", "enabled", "disabled", "ignored"}

func (s *Sim) haOptions(h *HAState, p params, allowed ...string) *apiError {
	for k, v := range p {
		if !slices.Contains(allowed, k) {
			return paramErr(k, errNotInSchema)
		}
		switch k {
		case "state":
			if !slices.Contains(haStates, v.s) {
				return paramErr("state", "value '%s' does not have a value in the enumeration '%s'", v.s, strings.Join(haStates, ", "))
			}
			h.State = v.s
			if v.s == "enabled" {
				h.State = "started"
			}
		case "group":
			h.Group = v.s
		case "comment":
			h.Comment = v.s
		case "max_restart", "max_relocate":
			n, err := strconv.Atoi(v.s)
			if err != nil || n < 0 {
				return paramErr(k, "type check ('integer') failed - got '%s'", v.s)
			}
			if k == "max_restart" {
				h.MaxRestart = &n
			} else {
				h.MaxRelocate = &n
			}
		case "failback":
			// go-proxmox: HAResourceCreateOption has Failback, a PVE 9 option;
			// PVE 8 rejects it, and so does the simulator.
			return paramErr(k, errNotInSchema)
		}
	}
	return nil
}

func (s *Sim) haCreate(p params) (any, *apiError) {
	raw, ok := p["sid"]
	if !ok {
		return nil, paramErr("sid", "property is missing and it is not optional")
	}
	sid, vmid, ok := normSID(raw.s)
	if !ok {
		return nil, paramErr("sid", "unable to parse service id '%s'", raw.s)
	}
	if t, ok := p["type"]; ok && t.s != "vm" {
		return nil, paramErr("type", "only type 'vm' is simulated")
	}
	if _, exists := s.st.HA[sid]; exists {
		return nil, errf(500, "resource ID '%s' already defined", sid)
	}
	vm := s.st.VMs[vmid]
	if vm == nil {
		return nil, errf(500, "resource '%s' does not exist in cluster", sid)
	}
	h := &HAState{State: "started"}
	q := maps.Clone(p)
	delete(q, "sid")
	delete(q, "type")
	if err := s.haOptions(h, q, "state", "group", "comment", "max_restart", "max_relocate", "failback"); err != nil {
		return nil, err
	}
	// The group is not validated on create (API.md 5.20).
	s.st.HA[sid] = h
	s.scheduleCRM()
	return nil, nil
}

func (s *Sim) haUpdate(raw string, p params) (any, *apiError) {
	_, h, err := s.haLookup(raw)
	if err != nil {
		return nil, err
	}
	if d, ok := p["digest"]; ok && d.s != s.haDigest() {
		return nil, errf(500, "detected modified configuration - file changed by other user? Try again.")
	}
	upd := *h
	q := maps.Clone(p)
	delete(q, "digest")
	del := q["delete"]
	delete(q, "delete")
	if err := s.haOptions(&upd, q, "state", "group", "comment", "max_restart", "max_relocate", "failback"); err != nil {
		return nil, err
	}
	for _, k := range splitList(del.s) {
		switch k {
		case "group":
			upd.Group = ""
		case "comment":
			upd.Comment = ""
		case "max_restart":
			upd.MaxRestart = nil
		case "max_relocate":
			upd.MaxRelocate = nil
		default:
			return nil, paramErr("delete", "invalid option '%s'", k)
		}
	}
	if upd.Group != "" {
		if _, ok := s.st.Groups[upd.Group]; !ok {
			return nil, errf(500, "HA group '%s' does not exist", upd.Group)
		}
	}
	*h = upd
	s.scheduleCRM()
	return nil, nil
}

func (s *Sim) haDelete(raw string, p params) (any, *apiError) {
	if _, ok := p["purge"]; ok {
		// go-proxmox: HAResourceDelete(ctx, sid, true) sends purge=1, a PVE 9
		// parameter; PVE 8 rejects it (client-calls.md).
		return nil, paramErr("purge", errNotInSchema)
	}
	sid, _, ok := normSID(raw)
	if !ok {
		return nil, paramErr("sid", "unable to parse service id '%s'", raw)
	}
	if _, ok := s.st.HA[sid]; !ok {
		return nil, errf(500, "cannot delete service '%s', not HA managed!", sid)
	}
	delete(s.st.HA, sid)
	return nil, nil
}

// scheduleCRM runs the HA manager after HADelay: it starts or stops every
// HA-managed VM to match its requested state.
func (s *Sim) scheduleCRM() {
	s.afterLocked(s.opts.HADelay, s.runCRM)
}

func (s *Sim) runCRM() {
	for _, sid := range slices.Sorted(maps.Keys(s.st.HA)) {
		h := s.st.HA[sid]
		_, vmid, _ := normSID(sid)
		vm := s.st.VMs[vmid]
		if vm == nil {
			continue
		}
		switch h.State {
		case "started":
			if !vm.Running && vm.lock() == "" && !vm.isTemplate() {
				s.powerOn(vm)
			}
		case "stopped", "disabled":
			if vm.Running && vm.lock() == "" {
				s.powerOff(vm)
			}
		}
		h.CRM = h.State
	}
}

// powerOn starts a VM: pending changes are applied and the cloud-init
// drive regenerated (API.md 5.16); the guest boots with it.
func (s *Sim) powerOn(vm *VMState) {
	vm.WasRunning, vm.PowerChanged = vm.Running, time.Now()
	vm.applyPending()
	vm.CloudInit = cloudInitData(vm.Conf)
	vm.Booted = maps.Clone(vm.CloudInit)
	vm.Running = true
	vm.StartedAt = time.Now()
	s.st.NextPID++
	vm.PID = s.st.NextPID
}

func (s *Sim) powerOff(vm *VMState) {
	vm.WasRunning, vm.PowerChanged = vm.Running, time.Now()
	vm.Running = false
	vm.PID = 0
	vm.StartedAt = time.Time{}
}
