package importer

import (
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/importer/terraform"
	"github.com/gitedge/gitedge/infra"
)

// telmateDefaults are the Telmate provider's schema defaults (and values
// that mean "unset"): found in a state they are what nobody declared, so
// they are noted together rather than one by one.
var telmateDefaults = map[string][]any{
	"bios": {"seabios"}, "kvm": {true}, "tablet": {true}, "hotplug": {"network,disk,usb"}, "balloon": {0.0},
	"vcpus": {0.0}, "scsihw": {"lsi", ""}, "qemu_os": {"l26", "other"}, "full_clone": {true}, "numa": {false},
	"sockets": {1.0}, "force_create": {false}, "clone_wait": {10.0, 15.0}, "additional_wait": {5.0},
	"automatic_reboot": {true}, "define_connection_info": {true}, "preprovision": {true}, "oncreate": {true},
	"vm_state": {"running"}, "boot": {"c", "cdn", ""}, "bootdisk": {""}, "os_type": {""}, "force_recreate_on_change_of": {""},
	"protection": {false}, "pxe": {false}, "iso": {""}, "cicustom": {""}, "cloudinit_cdrom_storage": {""},
	"ci_wait": {30.0}, "machine": {""}, "args": {""}, "pool": {""}, "startup": {""}, "tags": {""}, "hastate": {""},
	"hagroup": {""}, "ciuser": {""}, "nameserver": {""}, "searchdomain": {""}, "sshkeys": {""}, "desc": {""},
	"description": {""}, "onboot": {false}, "agent": {0.0}, "cipassword": {""}, "os_network_config": {""},
	"skip_ipv4": {false}, "skip_ipv6": {false}, "memory": {512.0}, "cores": {1.0}, "cpu": {"host"},
	"target_node": {""}, "target_nodes": {}, "clone": {""}, "vmid": {0.0}, "name": {""}, "guest_agent_ready_timeout": {100.0},
	"kvm_arguments": {""}, "hotplug_memory": {false},
}

// diskDefaults are the defaults of a 2.9 disk block's other attributes.
var diskDefaults = map[string][]any{
	"backup": {true, 1.0, 0.0}, "cache": {"none", ""}, "discard": {"", "ignore"}, "iothread": {0.0, false}, "mbps": {0.0},
	"mbps_rd": {0.0}, "mbps_rd_max": {0.0}, "mbps_wr": {0.0}, "mbps_wr_max": {0.0}, "iops": {0.0}, "iops_max": {0.0},
	"iops_max_length": {0.0}, "iops_rd": {0.0}, "iops_rd_max": {0.0}, "iops_rd_max_length": {0.0}, "iops_wr": {0.0},
	"iops_wr_max": {0.0}, "iops_wr_max_length": {0.0}, "replicate": {0.0, false}, "ssd": {0.0, false}, "emulatessd": {false},
	"aio": {""}, "media": {"disk", ""}, "file": {""}, "volume": {""}, "slot": {0.0}, "id": {0.0}, "readonly": {false},
	"serial": {""}, "wwn": {""}, "storage_type": {""}, "asyncio": {""},
}

// nicDefaults are the defaults of a network block's other attributes.
var nicDefaults = map[string][]any{
	"firewall": {false}, "link_down": {false}, "queues": {0.0, -1.0}, "rate": {0.0, -1.0}, "mtu": {0.0},
	"id": {0.0}, "macaddr": {""},
}

func isDefault(table map[string][]any, k string, v any) bool {
	if v == nil {
		return true
	}
	if l, ok := v.([]any); ok && len(l) == 0 {
		return true
	}
	if m, ok := v.(map[string]any); ok && len(m) == 0 {
		return true
	}
	for _, d := range table[k] {
		if d == v {
			return true
		}
	}
	return false
}

// tfVM is one VM as read from one source.
type tfVM struct {
	src    *terraform.VM
	out    *vm
	fields map[string]report.Pos // gitedge fields set, and from where
}

// vmFromTerraform maps one resource instance.
func vmFromTerraform(t *terraform.VM, display string, rep *report.List) *tfVM {
	where := t.Address
	v := &vm{pos: t.Pos}
	res := &tfVM{src: t, out: v, fields: map[string]report.Pos{}}
	attrs := t.Attrs
	set := func(field string, at report.Pos) { res.fields[field] = at }
	var defaults []string
	done := map[string]bool{}
	str := func(k string) (string, report.Pos, bool) {
		a, ok := attrs[k]
		if !ok || a.V == nil {
			return "", a.Pos, false
		}
		done[k] = true
		switch x := a.V.(type) {
		case string:
			return x, a.Pos, true
		case float64:
			return strconv.FormatFloat(x, 'f', -1, 64), a.Pos, true
		case bool:
			return strconv.FormatBool(x), a.Pos, true
		}
		rep.Add(a.Pos, report.Dropped, where, k, "not a single value: not carried over")
		return "", a.Pos, false
	}
	integer := func(k string) (*int, report.Pos) {
		s, at, ok := str(k)
		if !ok || s == "" {
			return nil, at
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f != math.Trunc(f) || math.Abs(f) > 1e12 {
			rep.Add(at, report.Dropped, where, k+" = "+s, "not a whole number: not carried over")
			return nil, at
		}
		n := int(f)
		return &n, at
	}
	boolean := func(k string) (bool, report.Pos, bool) {
		s, at, ok := str(k)
		if !ok {
			return false, at, false
		}
		switch s {
		case "true", "1":
			return true, at, true
		case "false", "0", "":
			return false, at, true
		}
		rep.Add(at, report.Dropped, where, k+" = "+s, "not a boolean: not carried over")
		return false, at, false
	}

	if s, at, ok := str("name"); ok && s != "" {
		v.name = s
		set("name", at)
	}
	if n, at := integer("vmid"); n != nil && *n != 0 {
		v.vmid = n
		set("vmid", at)
	}
	if s, at, ok := str("target_node"); ok && s != "" {
		v.node = s
		set("node", at)
	}
	if a, ok := attrs["target_nodes"]; ok {
		done["target_nodes"] = true
		if l, ok := a.V.([]any); ok && len(l) > 0 && v.node == "" {
			v.node = fmt.Sprint(l[0])
			set("node", a.Pos)
			if len(l) > 1 {
				rep.Add(a.Pos, report.Changed, where, "target_nodes", "gitedge places a VM on one node: %s", v.node)
			}
		}
	}
	if s, at, ok := str("clone"); ok && s != "" {
		v.clone = s
		set("clone", at)
	}
	for _, k := range []string{"desc", "description"} {
		if s, at, ok := str(k); ok && strings.TrimSpace(s) != "" {
			v.description = strings.TrimRight(s, " \t\n")
			set("description", at)
		}
	}
	if s, at, ok := str("cpu"); ok && s != "" {
		v.cpu = s
		set("cpu", at)
	}
	if n, at := integer("cores"); n != nil {
		v.cores = n
		set("cores", at)
	}
	if n, at := integer("memory"); n != nil {
		v.memory = n
		set("memory", at)
	}
	if b, at, ok := boolean("onboot"); ok {
		v.onBoot = b
		set("onBoot", at)
	}
	if b, at, ok := boolean("agent"); ok {
		v.agent = b
		set("agent", at)
	}
	if n, at := integer("sockets"); n != nil && *n != 1 {
		rep.Add(at, report.Dropped, where, fmt.Sprintf("sockets = %d", *n), "gitedge has no sockets field: it leaves the template's value")
	}
	// Cloud-init.
	ci := &cloudInit{}
	if s, at, ok := str("ciuser"); ok && s != "" {
		ci.user = s
		set("cloudInit", at)
	}
	if s, at, ok := str("ipconfig0"); ok && s != "" {
		ip, gw, rest := parseIPConfig(s)
		ci.ip, ci.gateway = ip, gw
		for _, r := range rest {
			rep.Add(at, report.Dropped, where, "ipconfig0: "+r, "gitedge's ipConfig has ip and gateway (IPv4) only")
		}
		set("ipconfig0", at)
		if ip != "" && ip != "dhcp" {
			if _, err := netip.ParsePrefix(ip); err != nil {
				rep.Add(at, report.Dropped, where, "ipconfig0: ip="+ip, "not an address with a prefix length")
				ci.ip = ""
			}
		}
		set("cloudInit", at)
	}
	if s, at, ok := str("nameserver"); ok && s != "" {
		ci.nameserver = s
		set("cloudInit", at)
	}
	if s, at, ok := str("searchdomain"); ok && s != "" {
		ci.searchDomain = s
		set("cloudInit", at)
	}
	if s, at, ok := str("sshkeys"); ok && s != "" {
		for line := range strings.SplitSeq(s, "\n") {
			if k := strings.TrimSpace(line); k != "" {
				ci.sshKeys = append(ci.sshKeys, k)
			}
		}
		set("cloudInit", at)
	}
	if ci.user != "" || ci.ip != "" || ci.gateway != "" || ci.nameserver != "" || ci.searchDomain != "" || len(ci.sshKeys) > 0 {
		v.cloudInit = ci
	}
	if a, ok := attrs["cipassword"]; ok {
		done["cipassword"] = true
		if s, _ := a.V.(string); s != "" {
			rep.Add(a.Pos, report.Dropped, where, "cipassword", "a secret: gitedge has no cloud-init password (use sshkeys); its value is not written anywhere")
		}
	}
	for i := 1; i <= 15; i++ {
		k := fmt.Sprintf("ipconfig%d", i)
		if s, at, ok := str(k); ok && s != "" {
			rep.Add(at, report.Dropped, where, k, "gitedge configures ipconfig0 only")
		}
	}
	// HA.
	hs, hsAt, _ := str("hastate")
	hg, hgAt, _ := str("hagroup")
	if hs != "" || hg != "" {
		v.ha = &ha{group: hg, state: hs}
		set("ha", hsAt)
		if hs == "" {
			set("ha", hgAt)
		}
	}
	// Switches with no counterpart, whose value means nothing in Proxmox.
	if s, at, ok := str("os_type"); ok && s != "" {
		rep.Add(at, report.Note, where, "os_type = "+s, "a switch of the Telmate provider (how it provisions), nothing in Proxmox")
	}
	if b, at, ok := boolean("full_clone"); ok && !b {
		rep.Add(at, report.Changed, where, "full_clone = false", "gitedge always makes full clones")
	}
	if s, at, ok := str("tags"); ok && s != "" {
		rep.Add(at, report.Note, where, "tags = "+s, "gitedge adds its own tag and leaves the others as they are")
	}
	// Nested blocks.
	for _, typ := range slices.Sorted(maps.Keys(t.Blocks)) {
		blocks := t.Blocks[typ]
		switch typ {
		case "network":
			for _, b := range blocks {
				n, ok := nicFrom(b, where, rep)
				if ok {
					v.network = append(v.network, n)
					set("network", b.Pos)
				}
			}
		case "disk":
			for i, b := range blocks {
				if i > 0 {
					rep.Add(b.Pos, report.Dropped, where, "disk", "gitedge manages one disk, the boot disk: extra disks are left as they are")
					continue
				}
				v.disk = diskFrom(b, where, rep)
				set("disk", b.Pos)
			}
		case "disks":
			if d := disks3(blocks[0], where, rep); d != nil {
				v.disk = d
				set("disk", blocks[0].Pos)
			}
		case "serial":
			for _, b := range blocks {
				id := numAttr(b, "id")
				typ, _ := b.Attrs["type"].V.(string)
				if id != 0 {
					rep.Add(b.Pos, report.Dropped, where, fmt.Sprintf("serial %d", id), "gitedge manages serial0 only")
					continue
				}
				v.serial = typ
				set("serial", b.Pos)
			}
		case "vga":
			b := blocks[0]
			v.vga, _ = b.Attrs["type"].V.(string)
			set("vga", b.Pos)
			if m := numAttr(b, "memory"); m != 0 {
				rep.Add(b.Pos, report.Dropped, where, fmt.Sprintf("vga memory = %d", m), "gitedge sets the vga type only")
			}
		case "lifecycle":
			for _, b := range blocks {
				lifecycle(b, v, where, rep)
			}
		case "cpu":
			// Telmate 3.x: cpu { cores, sockets, type }.
			b := blocks[0]
			if c := numAttr(b, "cores"); c > 0 {
				v.cores = &c
				set("cores", b.Pos)
			}
			if s := numAttr(b, "sockets"); s > 1 {
				rep.Add(b.Pos, report.Dropped, where, fmt.Sprintf("cpu sockets = %d", s), "gitedge has no sockets field: it leaves the template's value")
			}
			if ty, _ := b.Attrs["type"].V.(string); ty != "" {
				v.cpu = ty
				set("cpu", b.Pos)
			}
		case "timeouts", "smbios", "efidisk", "unused_disk":
			for _, b := range blocks {
				rep.Add(b.Pos, report.Dropped, where, typ, "no gitedge counterpart")
			}
		default:
			for _, b := range blocks {
				rep.Add(b.Pos, report.Dropped, where, typ+" { … }", "no gitedge counterpart")
			}
		}
	}
	// Everything else.
	handled := []string{"name", "vmid", "target_node", "target_nodes", "clone", "desc", "description", "cpu", "cores", "memory",
		"onboot", "agent", "sockets", "ciuser", "ipconfig0", "nameserver", "searchdomain", "sshkeys", "cipassword",
		"hastate", "hagroup", "os_type", "full_clone", "tags"}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		if slices.Contains(handled, k) || done[k] || strings.HasPrefix(k, "ipconfig") {
			continue
		}
		a := attrs[k]
		if isDefault(telmateDefaults, k, a.V) {
			if t.Source == terraform.FromState {
				defaults = append(defaults, k)
			} else {
				rep.Add(a.Pos, report.Note, where, fmt.Sprintf("%s = %v", k, shortValue(a.V)), "the provider's (and Proxmox's) default: nothing to carry over")
			}
			continue
		}
		rep.Add(a.Pos, report.Dropped, where, fmt.Sprintf("%s = %v", k, shortValue(a.V)), "no gitedge counterpart")
	}
	if len(defaults) > 0 {
		rep.Add(t.Pos, report.Note, where, strings.Join(defaults, ", "), "provider defaults in the state, not declared: not carried over")
	}
	for _, u := range t.Unresolved {
		rep.Add(u.Pos, report.Dropped, where, fmt.Sprintf("%s = %s", u.Attr, u.Expr), "cannot be resolved: %s", u.Why)
	}
	v.from = []string{fmt.Sprintf("%s: %s (%s)", report.Pos{File: display, Line: t.Line}, t.Address, t.Source)}
	return res
}

func shortValue(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

func numAttr(b *terraform.Block, k string) int {
	a, ok := b.Attrs[k]
	if !ok {
		return 0
	}
	switch x := a.V.(type) {
	case float64:
		return int(x)
	case string:
		n, _ := strconv.Atoi(x)
		return n
	case bool:
		if x {
			return 1
		}
	}
	return 0
}

// parseIPConfig reads Proxmox's "ip=192.0.2.10/24,gw=192.0.2.1".
func parseIPConfig(s string) (ip, gw string, rest []string) {
	for part := range strings.SplitSeq(s, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "ip":
			ip = val
		case "gw":
			gw = val
		case "":
		default:
			rest = append(rest, part)
		}
	}
	return ip, gw, rest
}

func nicFrom(b *terraform.Block, where string, rep *report.List) (nic, bool) {
	var n nic
	n.model, _ = b.Attrs["model"].V.(string)
	n.bridge, _ = b.Attrs["bridge"].V.(string)
	if tag := numAttr(b, "tag"); tag > 0 {
		n.vlan = &tag
	}
	for _, k := range slices.Sorted(maps.Keys(b.Attrs)) {
		switch k {
		case "model", "bridge", "tag":
			continue
		case "macaddr":
			if s, _ := b.Attrs[k].V.(string); s != "" {
				rep.Add(b.Pos, report.Note, where, "network macaddr = "+s, "gitedge keeps the MAC address the VM has")
			}
			continue
		}
		if !isDefault(nicDefaults, k, b.Attrs[k].V) {
			rep.Add(b.Pos, report.Dropped, where, fmt.Sprintf("network %s = %v", k, shortValue(b.Attrs[k].V)), "no gitedge counterpart")
		}
	}
	return n, n.bridge != ""
}

func diskFrom(b *terraform.Block, where string, rep *report.List) *disk {
	d := &disk{}
	d.bus, _ = b.Attrs["type"].V.(string)
	d.storage, _ = b.Attrs["storage"].V.(string)
	d.size = sizeOf(b.Attrs["size"].V)
	d.format, _ = b.Attrs["format"].V.(string)
	if d.size != "" {
		if _, err := infra.ParseSize(d.size); err != nil {
			rep.Add(b.Pos, report.Dropped, where, "disk size = "+d.size, "%v", err)
			d.size = ""
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b.Attrs)) {
		switch k {
		case "type", "storage", "size", "format":
			continue
		}
		if !isDefault(diskDefaults, k, b.Attrs[k].V) {
			rep.Add(b.Pos, report.Dropped, where, fmt.Sprintf("disk %s = %v", k, shortValue(b.Attrs[k].V)), "no gitedge counterpart")
		}
	}
	return d
}

func sizeOf(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64) + "G" // Telmate 3.x sizes in GiB
	}
	return ""
}

// disks3 reads Telmate 3.x's disks { scsi { scsi0 { disk { … } } } }.
func disks3(b *terraform.Block, where string, rep *report.List) *disk {
	var found *disk
	for _, bus := range slices.Sorted(maps.Keys(b.Blocks)) {
		for _, slots := range b.Blocks[bus] {
			for _, slot := range slices.Sorted(maps.Keys(slots.Blocks)) {
				for _, s := range slots.Blocks[slot] {
					for _, kind := range slices.Sorted(maps.Keys(s.Blocks)) {
						for _, d := range s.Blocks[kind] {
							if kind != "disk" {
								if kind != "cloudinit" {
									rep.Add(d.Pos, report.Dropped, where, fmt.Sprintf("disks %s %s %s", bus, slot, kind), "gitedge manages the boot disk only")
								}
								continue
							}
							if found != nil {
								rep.Add(d.Pos, report.Dropped, where, fmt.Sprintf("disks %s %s", bus, slot), "gitedge manages one disk, the boot disk: extra disks are left as they are")
								continue
							}
							found = &disk{bus: bus}
							found.storage, _ = d.Attrs["storage"].V.(string)
							found.size = sizeOf(d.Attrs["size"].V)
							found.format, _ = d.Attrs["format"].V.(string)
							if !strings.HasSuffix(slot, "0") {
								rep.Add(d.Pos, report.Changed, where, fmt.Sprintf("disks %s %s", bus, slot), "gitedge's disk is %s0", bus)
							}
						}
					}
				}
			}
		}
	}
	return found
}

// tfToGitedge maps Terraform's ignore_changes names to gitedge's.
var tfToGitedge = map[string]string{
	"network": "network", "disk": "disk", "disks": "disk", "ipconfig0": "cloudInit", "ciuser": "cloudInit",
	"sshkeys": "cloudInit", "nameserver": "cloudInit", "searchdomain": "cloudInit", "desc": "description",
	"description": "description", "memory": "memory", "cores": "cores", "cpu": "cpu", "onboot": "onBoot",
	"agent": "agent", "serial": "serial", "vga": "vga", "hastate": "ha", "hagroup": "ha",
}

func lifecycle(b *terraform.Block, v *vm, where string, rep *report.List) {
	for _, k := range slices.Sorted(maps.Keys(b.Attrs)) {
		a := b.Attrs[k]
		if k != "ignore_changes" {
			rep.Add(a.Pos, report.Dropped, where, "lifecycle "+k, "a Terraform setting with no gitedge counterpart")
			continue
		}
		if a.V == "all" {
			rep.Add(a.Pos, report.Dropped, where, "ignore_changes = all", "list the fields gitedge should leave alone in ignoreChanges")
			continue
		}
		list, _ := a.V.([]any)
		for _, e := range list {
			name := fmt.Sprint(e)
			g, ok := tfToGitedge[name]
			if !ok {
				rep.Add(a.Pos, report.Dropped, where, "ignore_changes "+name, "no gitedge field to ignore")
				continue
			}
			if !slices.Contains(v.ignore, g) {
				v.ignore = append(v.ignore, g)
			}
		}
	}
}

// mergeVMs merges the VMs of every Terraform source by name: values from
// the configuration win, the state fills what the configuration lacks
// (the VMID, which Proxmox picked) and differences are noted.
func mergeVMs(all []*tfVM, rep *report.List, errs *report.Errors) []*vm {
	var out []*vm
	byName := map[string]*tfVM{}
	// Configuration first.
	slices.SortStableFunc(all, func(a, b *tfVM) int {
		ra, rb := a.src.Source == terraform.FromState, b.src.Source == terraform.FromState
		switch {
		case ra == rb:
			return 0
		case ra:
			return 1
		}
		return -1
	})
	for _, t := range all {
		if t.out.name == "" {
			errs.Add(t.src.Pos, "%s: no name the importer can resolve: a VirtualMachine needs one", t.src.Address)
			continue
		}
		prev := byName[t.out.name]
		if prev == nil {
			byName[t.out.name] = t
			out = append(out, t.out)
			continue
		}
		if prev.src.Source == t.src.Source {
			errs.Add(t.src.Pos, "%s: a second VM named %q (the first is %s at %s)", t.src.Address, t.out.name, prev.src.Address, prev.src.Pos)
			continue
		}
		fill(prev, t, rep)
		prev.out.from = append(prev.out.from, t.out.from...)
	}
	slices.SortFunc(out, func(a, b *vm) int { return strings.Compare(a.name, b.name) })
	for _, v := range out {
		if v.vmid == nil {
			t := byName[v.name]
			errs.Add(t.src.Pos, "%s: no vmid: Proxmox picked it when Terraform created the VM; add the state (terraform show -json > state.json, then --terraform state.json) so the import knows it", t.src.Address)
		}
	}
	return out
}

// fill completes the configuration's VM with the state's, noting drift.
func fill(cfg, st *tfVM, rep *report.List) {
	a, b := cfg.out, st.out
	where := cfg.src.Address
	drift := func(field string, x, y any) {
		rep.Add(cfg.fields[field], report.Note, where, field, "the state has %v, the configuration %v: the configuration's value is imported", y, x)
	}
	if a.vmid == nil {
		a.vmid = b.vmid
	}
	cmpStr := func(field string, x *string, y string) {
		if _, ok := cfg.fields[field]; !ok {
			*x = y
		} else if _, ok := st.fields[field]; ok && *x != y {
			drift(field, *x, y)
		}
	}
	cmpStr("node", &a.node, b.node)
	cmpStr("clone", &a.clone, b.clone)
	cmpStr("description", &a.description, b.description)
	cmpStr("cpu", &a.cpu, b.cpu)
	cmpStr("serial", &a.serial, b.serial)
	cmpStr("vga", &a.vga, b.vga)
	cmpInt := func(field string, x **int, y *int) {
		if _, ok := cfg.fields[field]; !ok {
			*x = y
		} else if y != nil && *x != nil && **x != *y {
			drift(field, **x, *y)
		}
	}
	cmpInt("cores", &a.cores, b.cores)
	cmpInt("memory", &a.memory, b.memory)
	if _, ok := cfg.fields["disk"]; !ok {
		a.disk = b.disk
	}
	if _, ok := cfg.fields["network"]; !ok {
		a.network = b.network
	}
	if _, ok := cfg.fields["cloudInit"]; !ok {
		a.cloudInit = b.cloudInit
	}
	if _, ok := cfg.fields["ha"]; !ok {
		a.ha = b.ha
	}
	if _, ok := cfg.fields["onBoot"]; !ok {
		a.onBoot = b.onBoot
	}
	if _, ok := cfg.fields["agent"]; !ok {
		a.agent = b.agent
	}
}
