package infra

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Observed is what one observe step saw of the cluster.
type Observed struct {
	// VMs holds every QEMU guest by VMID, templates included.
	VMs map[int]*ObservedVM
	// HA holds the HA resources by SID ("vm:150").
	HA map[string]HAResource
	// Bridges holds the bridges of the nodes where the plan may create a
	// VM or write a NIC (bridgeNodes), read once per node per pass;
	// BridgeErrs says why a node's could not be read. The bridges of a
	// node in neither are not checked.
	Bridges    map[string][]Bridge
	BridgeErrs map[string]error
}

// ObservedVM is one guest; Config is read for tagged guests and for guests
// holding a declared VMID, nil for the others.
type ObservedVM struct {
	Resource
	Config *VMConfig
	// ConfigErr is why Config could not be read; the VM is left alone.
	ConfigErr error
}

// Op is what an action does.
type Op string

const (
	OpCreate   Op = "create"
	OpUpdate   Op = "update"
	OpResize   Op = "resize"
	OpHACreate Op = "ha-create"
	OpHAUpdate Op = "ha-update"
	OpHARemove Op = "ha-remove"
	OpStart    Op = "start"
	OpDelete   Op = "delete"
)

// Action is one change to one VM.
type Action struct {
	Op     Op
	VM     VMRef
	Fields []FieldChange // update, and what create sets
	Disk   string        // resize: the disk key
	Size   Size          // resize: the new size
	From   Size          // resize: the current size
	HA     *HA           // ha-create, ha-update
	// Clone is the template a create clones (name and VMID).
	Clone     string
	cloneID   int
	cloneNode string
	spec      *VM
	digest    string
}

// FieldChange is one config key to set. Drift marks a key that gitedge had
// set before and someone changed by hand.
type FieldChange struct {
	Key   string // Proxmox config key (memory, net0, …)
	Field string // the spec field, as spelled in ignoreChanges
	Old   string
	New   string
	Drift bool
}

// Conflict is a declared VM that collides with a VM gitedge does not own.
type Conflict struct {
	VM       VMRef // the declared VM
	Existing VMRef // the VM in the way
	Reason   string
}

// PendingReboot is a running VM with changes that apply at its next start.
type PendingReboot struct {
	VM   VMRef
	Keys []string
}

// Plan is what a pass would do. Problems are the terminal and waiting
// conditions found while planning (conflicts, bad templates, locks).
type Plan struct {
	Actions       []Action
	Conflicts     []Conflict
	PendingReboot []PendingReboot
	Orphans       []VMRef // tagged VMs no longer declared, kept because prune is off
	Problems      []*Error
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Actions) == 0 }

// Drift returns the drifted fields of every action.
func (p Plan) Drift() []FieldChange {
	var d []FieldChange
	for _, a := range p.Actions {
		for _, f := range a.Fields {
			if f.Drift {
				d = append(d, f)
			}
		}
	}
	return d
}

// WriteText renders the plan for people and golden tests, one line per item.
func (p Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, a := range p.Actions {
		ref := fmt.Sprintf("VM %d %q", a.VM.VMID, a.VM.Name)
		switch a.Op {
		case OpCreate:
			fmt.Fprintf(&b, "+ create %s on %s from %s\n", ref, a.VM.Node, a.Clone)
			for _, f := range a.Fields {
				fmt.Fprintf(&b, "    %s: %s\n", f.Key, f.New)
			}
			if s := a.spec; s != nil && s.Disk.Size > 0 {
				fmt.Fprintf(&b, "    %s: %s on %s\n", s.Disk.Key(), s.Disk.Size, s.Disk.Storage)
			}
			if s := a.spec; s != nil && s.HA != nil {
				fmt.Fprintf(&b, "    ha: group=%s state=%s\n", s.HA.Group, s.HA.State)
			}
		case OpUpdate:
			for _, f := range a.Fields {
				drift := ""
				if f.Drift {
					drift = " (drift)"
				}
				fmt.Fprintf(&b, "~ update %s %s: %s -> %s%s\n", ref, f.Key, cmp.Or(f.Old, "(none)"), cmp.Or(f.New, "(none)"), drift)
			}
		case OpResize:
			fmt.Fprintf(&b, "~ resize %s %s: %s -> %s\n", ref, a.Disk, a.From, a.Size)
		case OpHACreate, OpHAUpdate:
			fmt.Fprintf(&b, "~ %s %s group=%s state=%s\n", a.Op, ref, a.HA.Group, a.HA.State)
		case OpHARemove, OpStart:
			fmt.Fprintf(&b, "~ %s %s\n", a.Op, ref)
		case OpDelete:
			fmt.Fprintf(&b, "- delete %s on %s\n", ref, a.VM.Node)
		}
	}
	for _, c := range p.Conflicts {
		fmt.Fprintf(&b, "! conflict VM %d %q: %s\n", c.VM.VMID, c.VM.Name, c.Reason)
	}
	for _, e := range p.Problems {
		if e.Reason != ReasonConflict {
			fmt.Fprintf(&b, "! %s\n", e.Error())
		}
	}
	for _, pr := range p.PendingReboot {
		fmt.Fprintf(&b, "* pending until restart VM %d %q: %s\n", pr.VM.VMID, pr.VM.Name, strings.Join(pr.Keys, ", "))
	}
	for _, o := range p.Orphans {
		fmt.Fprintf(&b, "* kept VM %d %q: no longer declared, infra.prune is off\n", o.VMID, o.Name)
	}
	if b.Len() == 0 {
		b.WriteString("No changes.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (p Plan) String() string {
	var b strings.Builder
	_ = p.WriteText(&b)
	return b.String()
}

// cloneMarker is the description a clone gets until its first config write
// sets the real description and the gitedge tag. An untagged VM at the
// declared VMID and name that still carries it was created by a gitedge
// writer that stopped half-way (crash, timeout): it is adopted, not a
// conflict.
func cloneMarker(v VM) string {
	return fmt.Sprintf("gitedge: creating VirtualMachine %s (VMID %d)", v.Name, v.VMID)
}

// want is one config key the spec manages.
type want struct {
	key, field string
	value      string // what to write
	same       func(obs string, present bool) bool
}

// hot keys apply at once to a running VM; the others stay pending until
// the next start (API.md 4.4).
func hotKey(k string) bool {
	switch k {
	case "name", "description", "onboot", "tags", "ciuser", "nameserver", "searchdomain", "sshkeys":
		return true
	}
	return strings.HasPrefix(k, "ipconfig") || strings.HasPrefix(k, "net")
}

func cloudInitKey(k string) bool {
	switch k {
	case "ciuser", "nameserver", "searchdomain", "sshkeys":
		return true
	}
	return strings.HasPrefix(k, "ipconfig")
}

// wants lists the config keys of a spec, given the observed config (needed
// to keep MACs and tags that are not ours).
func wants(v VM, obs map[string]string) []want {
	eq := func(s string) func(string, bool) bool {
		return func(o string, _ bool) bool { return o == s }
	}
	var ws []want
	ws = append(ws, want{key: "name", value: v.Name, same: eq(v.Name)})
	// tags: ours must be there; other tags are left alone.
	tags := splitTags(obs["tags"])
	ws = append(ws, want{key: "tags", value: joinTags(append(tags, Tag)), same: func(o string, _ bool) bool { return hasTag(splitTags(o), Tag) }})
	if v.Description != "" {
		d := strings.TrimRight(v.Description, " \t\r\n")
		ws = append(ws, want{key: "description", field: "description", value: d, same: func(o string, _ bool) bool { return strings.TrimRight(o, " \t\r\n") == d }})
	}
	if v.CPU != "" {
		ws = append(ws, want{key: "cpu", field: "cpu", value: v.CPU, same: func(o string, _ bool) bool { return propEqual(o, v.CPU, "cputype") }})
	}
	if v.Cores > 0 {
		c := strconv.Itoa(v.Cores)
		ws = append(ws, want{key: "cores", field: "cores", value: c, same: intDefault(c, "1")})
	}
	if v.Memory > 0 {
		m := strconv.Itoa(v.Memory)
		ws = append(ws, want{key: "memory", field: "memory", value: m, same: func(o string, ok bool) bool {
			if !ok {
				o = "512"
			}
			return strings.TrimPrefix(o, "current=") == m
		}})
	}
	ws = append(ws, want{key: "onboot", field: "onBoot", value: b01(v.OnBoot), same: intDefault(b01(v.OnBoot), "0")})
	ws = append(ws, want{key: "agent", field: "agent", value: b01(v.Agent), same: func(o string, ok bool) bool {
		m := parseProp(o, "enabled")
		if !ok {
			m["enabled"] = "0"
		}
		return m["enabled"] == b01(v.Agent)
	}})
	for i, n := range v.Network {
		key := fmt.Sprintf("net%d", i)
		ws = append(ws, want{key: key, field: "network", value: netValue(n, obs[key]), same: func(o string, ok bool) bool {
			if !ok {
				return false
			}
			model, _, opts := parseNet(o)
			return model == n.Model && opts["bridge"] == n.Bridge && opts["tag"] == vlanString(n.VLAN)
		}})
	}
	ci := v.CloudInit
	if ci.User != "" {
		ws = append(ws, want{key: "ciuser", field: "cloudInit", value: ci.User, same: eq(ci.User)})
	}
	if ipc := ci.IPConfig.String(); ipc != "" {
		ws = append(ws, want{key: "ipconfig0", field: "cloudInit", value: ipc, same: func(o string, _ bool) bool {
			return maps.Equal(parseProp(o, ""), parseProp(ipc, ""))
		}})
	}
	if ci.Nameserver != "" {
		ws = append(ws, want{key: "nameserver", field: "cloudInit", value: ci.Nameserver, same: func(o string, _ bool) bool {
			return slices.Equal(strings.Fields(o), strings.Fields(ci.Nameserver))
		}})
	}
	if ci.SearchDomain != "" {
		ws = append(ws, want{key: "searchdomain", field: "cloudInit", value: ci.SearchDomain, same: eq(ci.SearchDomain)})
	}
	if len(ci.SSHKeys) > 0 {
		enc := encodeSSHKeys(ci.SSHKeys)
		ws = append(ws, want{key: "sshkeys", field: "cloudInit", value: enc, same: func(o string, _ bool) bool {
			dec, err := url.PathUnescape(o)
			if err != nil {
				return false
			}
			var got []string
			for l := range strings.SplitSeq(dec, "\n") {
				if l = strings.TrimSpace(l); l != "" {
					got = append(got, l)
				}
			}
			return slices.Equal(got, ci.SSHKeys)
		}})
	}
	if v.Serial != "" {
		ws = append(ws, want{key: "serial0", field: "serial", value: v.Serial, same: eq(v.Serial)})
	}
	if v.VGA != "" {
		ws = append(ws, want{key: "vga", field: "vga", value: v.VGA, same: func(o string, _ bool) bool { return propEqual(o, v.VGA, "type") }})
	}
	return ws
}

// diff returns the changes that make obs match the spec, skipping ignored
// fields when ignore is set (existing VMs).
func diff(v VM, obs map[string]string, ignore bool) []FieldChange {
	var out []FieldChange
	for _, w := range wants(v, obs) {
		if ignore && w.field != "" && v.Ignores(w.field) {
			continue
		}
		o, ok := obs[w.key]
		if w.same(o, ok) {
			continue
		}
		out = append(out, FieldChange{Key: w.key, Field: w.field, Old: o, New: w.value})
	}
	return append(out, extraNICs(v, obs, ignore)...)
}

// extraNICs returns the removals (New "") of the netN keys past the end of
// a declared spec.network: the list is the VM's whole set of NICs, as
// Terraform's network blocks are, so a NIC dropped from it (or added by
// hand) is removed. An empty list is "not managed" (the NICs are left
// alone), as is a network in ignoreChanges on an existing VM.
func extraNICs(v VM, obs map[string]string, ignore bool) []FieldChange {
	if len(v.Network) == 0 || ignore && v.Ignores("network") {
		return nil
	}
	var idx []int
	for k := range obs {
		if i, ok := nicIndex(k); ok && i >= len(v.Network) {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	var out []FieldChange
	for _, i := range idx {
		k := "net" + strconv.Itoa(i)
		out = append(out, FieldChange{Key: k, Field: "network", Old: obs[k]})
	}
	return out
}

// nicIndex reads N from a "netN" config key.
func nicIndex(k string) (int, bool) {
	n, ok := strings.CutPrefix(k, "net")
	if !ok || n == "" || strings.Trim(n, "0123456789") != "" {
		return 0, false
	}
	i, err := strconv.Atoi(n)
	return i, err == nil
}

func intDefault(want, def string) func(string, bool) bool {
	return func(o string, ok bool) bool {
		if !ok || o == "" {
			o = def
		}
		return o == want
	}
}

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func vlanString(v int) string {
	if v == 0 {
		return ""
	}
	return strconv.Itoa(v)
}

func joinTags(t []string) string {
	t = slices.Clone(t)
	slices.Sort(t)
	return strings.Join(slices.Compact(t), ";")
}

// encodeSSHKeys URL-encodes keys with %20 for spaces, as PVE requires.
func encodeSSHKeys(keys []string) string {
	return strings.ReplaceAll(url.QueryEscape(strings.Join(keys, "\n")), "+", "%20")
}

// parseProp splits a property string; the first part may omit its key.
func parseProp(s, defKey string) map[string]string {
	m := map[string]string{}
	for i, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok && i == 0 {
			k, v = defKey, part
		}
		m[k] = v
	}
	return m
}

func propEqual(a, b, defKey string) bool {
	return maps.Equal(parseProp(a, defKey), parseProp(b, defKey))
}

var nicModels = []string{"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"}

// parseNet reads "virtio=BC:24:11:3A:7F:01,bridge=vmbr0,tag=33".
func parseNet(s string) (model, mac string, opts map[string]string) {
	opts = map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch {
		case k == "model":
			model = v
		case k == "macaddr":
			mac = v
		case slices.Contains(nicModels, k) && model == "":
			model, mac = k, v
		default:
			opts[k] = v
		}
	}
	return model, mac, opts
}

// netValue is the netN value to write: model, bridge and VLAN from the
// spec, the MAC and any other option from the existing device, so a write
// never changes the MAC (terraform-mapping.md, quirk 8).
func netValue(n NIC, obs string) string {
	_, mac, opts := parseNet(obs)
	if opts == nil {
		opts = map[string]string{}
	}
	opts["bridge"] = n.Bridge
	delete(opts, "tag")
	if n.VLAN != 0 {
		opts["tag"] = strconv.Itoa(n.VLAN)
	}
	first := n.Model
	if mac != "" {
		first += "=" + mac
	}
	parts := []string{first}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if k != "" {
			parts = append(parts, k+"="+opts[k])
		}
	}
	return strings.Join(parts, ",")
}

// diskSize reads size= from a disk value.
func diskSize(v string) (Size, bool) {
	s, ok := parseProp(v, "file")["size"]
	if !ok {
		return 0, false
	}
	n, err := ParseSize(s)
	return n, err == nil
}

// haSID is the HA resource ID of a VM.
func haSID(vmid int) string { return "vm:" + strconv.Itoa(vmid) }

// nicWrites returns the indexes into spec.network of the NICs that
// fields set (removals name no bridge).
func nicWrites(fields []FieldChange) []int {
	var idx []int
	for _, f := range fields {
		if i, ok := nicIndex(f.Key); ok && f.New != "" {
			idx = append(idx, i)
		}
	}
	return idx
}

// bridgeNodes lists the nodes whose bridges the plan checks: the node of
// every declared VM still to be created, and of every VM whose NICs a
// config write would set. A converged pass reads none.
func bridgeNodes(cfg Config, obs *Observed) []string {
	need := map[string]bool{}
	for _, v := range cfg.VMs {
		o := obs.VMs[v.VMID]
		switch {
		case len(v.Network) == 0:
		case o == nil:
			need[v.Node] = true
		case o.Config != nil && len(nicWrites(diff(v, o.Config.Values, true))) > 0:
			need[o.Node] = true
		}
	}
	return slices.Sorted(maps.Keys(need))
}

// checkBridges refuses, in the plan, a VM whose NICs (idx: those a clone
// or config write sets) name a bridge its node lacks or has not brought
// up. Proxmox takes such a NIC into the config and refuses it only when
// the VM starts (or hotplugs it): a create left a cloned, tagged VM that
// does not start. A node whose bridges could not be read holds the write
// too, with that error; one not read at all (a plan made without
// Observe) is not checked.
func checkBridges(v VM, node, op string, idx []int, obs *Observed) *Error {
	if len(idx) == 0 {
		return nil
	}
	ref := VMRef{Name: v.Name, VMID: v.VMID, Node: node}
	if err := obs.BridgeErrs[node]; err != nil {
		e := classify(op, ref, err)
		return &Error{Kind: e.Kind, Reason: e.Reason, Op: op, Name: v.Name, VMID: v.VMID, Node: node,
			Err: fmt.Errorf("listing the bridges of node %s: %w", node, e.Err)}
	}
	list, ok := obs.Bridges[node]
	if !ok {
		return nil
	}
	active := map[string]bool{}
	for _, b := range list {
		active[b.Name] = b.Active
	}
	var bad []string
	for _, i := range idx {
		if i >= len(v.Network) || v.Network[i].Bridge == "" {
			continue
		}
		b, field := v.Network[i].Bridge, fmt.Sprintf("spec.network[%d].bridge", i)
		switch up, ok := active[b]; {
		case !ok:
			bad = append(bad, fmt.Sprintf("no bridge %q on node %s (%s): create it on the node or fix the spec", b, node, field))
		case !up:
			bad = append(bad, fmt.Sprintf("bridge %q on node %s is not active (%s): apply the node's network configuration or fix the spec", b, node, field))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	outcome := "the VM is not created"
	if op != "clone" {
		outcome = "its config is not changed"
	}
	return &Error{Kind: Terminal, Reason: ReasonInvalid, Op: op, Name: v.Name, VMID: v.VMID, Node: node,
		Err: fmt.Errorf("%s; %s", strings.Join(bad, "; "), outcome)}
}

// findTemplate resolves a clone template by name, preferring the copy on
// the target node; names are not unique in PVE, so more than one candidate
// on that node is an error (terraform-mapping.md quirk 1).
func findTemplate(obs *Observed, name, node string) (Resource, *Error) {
	var onNode, elsewhere []Resource
	for _, id := range slices.Sorted(maps.Keys(obs.VMs)) {
		r := obs.VMs[id].Resource
		if !r.Template || r.Name != name {
			continue
		}
		if r.Node == node {
			onNode = append(onNode, r)
		} else {
			elsewhere = append(elsewhere, r)
		}
	}
	cands := onNode
	if len(cands) == 0 {
		cands = elsewhere
	}
	switch len(cands) {
	case 1:
		return cands[0], nil
	case 0:
		return Resource{}, &Error{Kind: Terminal, Reason: ReasonTemplate, Op: "clone",
			Err: fmt.Errorf("no template named %q in the cluster (spec.clone): create it or fix the name", name)}
	}
	ids := make([]string, len(cands))
	for i, c := range cands {
		ids[i] = strconv.Itoa(c.VMID)
	}
	return Resource{}, &Error{Kind: Terminal, Reason: ReasonTemplate, Op: "clone",
		Err: fmt.Errorf("template name %q is ambiguous: VMIDs %s; rename all but one", name, strings.Join(ids, ", "))}
}

// plan computes the actions that make the observed cluster match cfg.
// applied holds, per VMID, the values gitedge last set or saw in sync: a
// differing key whose desired value is unchanged since then is drift.
func plan(cfg Config, obs *Observed, applied map[int]map[string]string) Plan {
	var p Plan
	declared := map[int]bool{}
	for i := range cfg.VMs {
		v := cfg.VMs[i]
		declared[v.VMID] = true
		ref := VMRef{Name: v.Name, VMID: v.VMID, Node: v.Node}
		o := obs.VMs[v.VMID]
		if o == nil {
			if c, ok := nameClash(obs, v); ok {
				p.conflict(ref, c, fmt.Sprintf("name %q is used by VM %d on %s, which gitedge does not manage (no tag %q); rename one of them", v.Name, c.VMID, c.Node, Tag))
				continue
			}
			t, err := findTemplate(obs, v.Clone, v.Node)
			if err != nil {
				err.Name, err.VMID, err.Node = v.Name, v.VMID, v.Node
				p.Problems = append(p.Problems, err)
				continue
			}
			a := Action{Op: OpCreate, VM: ref, Clone: v.Clone, cloneID: t.VMID, cloneNode: t.Node, spec: &cfg.VMs[i]}
			a.Fields = diff(v, nil, false)
			if err := checkBridges(v, v.Node, "clone", nicWrites(a.Fields), obs); err != nil {
				p.Problems = append(p.Problems, err)
				continue
			}
			p.Actions = append(p.Actions, a)
			continue
		}
		ref.Node = o.Node
		existing := VMRef{Name: o.Name, VMID: o.VMID, Node: o.Node}
		switch {
		case o.Template:
			p.conflict(ref, existing, fmt.Sprintf("VMID %d is the template %q; pick another VMID", v.VMID, o.Name))
			continue
		case o.ConfigErr != nil:
			p.Problems = append(p.Problems, classify("observe", ref, o.ConfigErr))
			continue
		}
		c := o.Config
		tagged := hasTag(splitTags(c.Values["tags"]), Tag)
		if !tagged {
			switch {
			case c.Lock() == "clone":
				p.Problems = append(p.Problems, &Error{Kind: Transient, Reason: ReasonWaiting, Op: "clone", Name: v.Name, VMID: v.VMID, Node: o.Node,
					Err: fmt.Errorf("VM %d is being cloned; waiting for the clone task to finish", v.VMID)})
				continue
			case c.Values["description"] == cloneMarker(v) && c.Values["name"] == v.Name:
				// An interrupted create of ours: finish it below.
			default:
				p.conflict(ref, existing, fmt.Sprintf("VMID %d is used by %q on %s, which gitedge does not manage (no tag %q); it is left alone: pick another VMID or tag it %q to adopt it", v.VMID, o.Name, o.Node, Tag, Tag))
				continue
			}
		}
		p.planExisting(v, ref, o, obs, applied[v.VMID])
	}
	// Tagged VMs that left the repository.
	for _, id := range slices.Sorted(maps.Keys(obs.VMs)) {
		o := obs.VMs[id]
		if declared[id] || o.Template || o.Config == nil || !hasTag(splitTags(o.Config.Values["tags"]), Tag) {
			continue
		}
		ref := VMRef{Name: o.Name, VMID: id, Node: o.Node}
		switch {
		case !cfg.Prune:
			p.Orphans = append(p.Orphans, ref)
		case o.Config.Values["protection"] == "1":
			// Proxmox's own guard (Terraform's prevent_destroy): checked
			// before anything is done to the VM, which a delete would
			// first stop.
			p.Orphans = append(p.Orphans, ref)
			p.Problems = append(p.Problems, &Error{Kind: Terminal, Reason: ReasonProtected, Op: "delete", Name: ref.Name, VMID: id, Node: ref.Node,
				Err: fmt.Errorf("VM %d is tagged %q and declared by no document, but has protection set in Proxmox: it is not stopped nor deleted; declare it again, or clear its protection (qm set %d --protection 0) to let prune delete it", id, Tag, id)})
		default:
			p.Actions = append(p.Actions, Action{Op: OpDelete, VM: ref})
		}
	}
	p.holdPrune()
	return p
}

// holdPrune keeps the deletes of a plan that has a terminal problem: a
// VM whose replacement cannot be made (a VMID taken by a VM gitedge does
// not own, a missing template) must not be deleted first, and a pass
// that needs a person does not destroy. The VMs wait as orphans until the
// problems are resolved.
func (p *Plan) holdPrune() {
	var terminal *Error
	for _, e := range p.Problems {
		if e.Kind == Terminal && e.Reason != ReasonProtected {
			terminal = e
			break
		}
	}
	if terminal == nil {
		return
	}
	kept := p.Actions[:0]
	for _, a := range p.Actions {
		if a.Op != OpDelete {
			kept = append(kept, a)
			continue
		}
		p.Orphans = append(p.Orphans, a.VM)
		p.Problems = append(p.Problems, &Error{Kind: Terminal, Reason: ReasonPruneHeld, Op: "delete", Name: a.VM.Name, VMID: a.VM.VMID, Node: a.VM.Node,
			Err: fmt.Errorf("VM %d is declared by no document; prune deletes it once the plan has no other terminal problem (now: %v)", a.VM.VMID, terminal)})
	}
	p.Actions = kept
}

func (p *Plan) conflict(ref, existing VMRef, reason string) {
	p.Conflicts = append(p.Conflicts, Conflict{VM: ref, Existing: existing, Reason: reason})
	p.Problems = append(p.Problems, &Error{Kind: Terminal, Reason: ReasonConflict, Op: "ownership", Name: ref.Name, VMID: ref.VMID, Node: ref.Node, Err: fmt.Errorf("%s", reason)})
}

// nameClash finds a VM gitedge does not own that already has the name.
func nameClash(obs *Observed, v VM) (VMRef, bool) {
	for _, id := range slices.Sorted(maps.Keys(obs.VMs)) {
		o := obs.VMs[id]
		if o.Name != v.Name || o.Template || o.Tagged() {
			continue
		}
		return VMRef{Name: o.Name, VMID: o.VMID, Node: o.Node}, true
	}
	return VMRef{}, false
}

func (p *Plan) planExisting(v VM, ref VMRef, o *ObservedVM, obs *Observed, applied map[string]string) {
	c := o.Config
	fields := diff(v, c.Values, true)
	if c.Values["description"] == cloneMarker(v) && v.Description == "" {
		// An adopted, interrupted create: drop the marker (New "" deletes).
		fields = append(fields, FieldChange{Key: "description", Field: "description", Old: c.Values["description"]})
	}
	for i := range fields {
		if last, ok := applied[fields[i].Key]; ok && last == fields[i].New {
			fields[i].Drift = true
		}
	}
	if err := checkBridges(v, ref.Node, "config", nicWrites(fields), obs); err != nil {
		// The whole write waits, not only the NIC: its other keys (the
		// ipconfig0 of the new network) may only make sense with it.
		p.Problems = append(p.Problems, err)
	} else if len(fields) > 0 {
		p.Actions = append(p.Actions, Action{Op: OpUpdate, VM: ref, Fields: fields, digest: c.Digest, spec: &v})
	}
	if v.Disk.Bus != "" && v.Disk.Size > 0 && !v.Ignores("disk") {
		key := v.Disk.Key()
		cur, ok := diskSize(c.Values[key])
		switch {
		case !ok:
			p.Problems = append(p.Problems, &Error{Kind: Terminal, Reason: ReasonInvalid, Op: "resize", Name: v.Name, VMID: v.VMID, Node: ref.Node,
				Err: fmt.Errorf("disk %s is not in the VM's config (spec.disk.bus): the template has no such disk", key)})
		case cur < v.Disk.Size:
			p.Actions = append(p.Actions, Action{Op: OpResize, VM: ref, Disk: key, Size: v.Disk.Size, From: cur})
		case cur > v.Disk.Size:
			p.Problems = append(p.Problems, &Error{Kind: Terminal, Reason: ReasonShrink, Op: "resize", Name: v.Name, VMID: v.VMID, Node: ref.Node,
				Err: fmt.Errorf("disk %s is %s, larger than spec.disk.size %s: disks only grow; raise spec.disk.size", key, cur, v.Disk.Size)})
		}
	}
	if !v.Ignores("ha") {
		h, has := obs.HA[haSID(v.VMID)]
		switch {
		case v.HA != nil && !has:
			p.Actions = append(p.Actions, Action{Op: OpHACreate, VM: ref, HA: v.HA})
		case v.HA != nil && (h.Group != v.HA.Group || h.State != v.HA.State):
			p.Actions = append(p.Actions, Action{Op: OpHAUpdate, VM: ref, HA: v.HA})
		case v.HA == nil && has:
			p.Actions = append(p.Actions, Action{Op: OpHARemove, VM: ref})
		}
	}
	// Without HA, gitedge keeps the VM running (HA does it otherwise; an
	// HA resource kept by ignoreChanges: [ha] still owns the power state).
	_, haManaged := obs.HA[haSID(v.VMID)]
	// "unknown" is a listing whose stats lag (a new VM): wait for them.
	if v.HA == nil && !(haManaged && v.Ignores("ha")) && o.Status != "running" && o.Status != "unknown" {
		p.Actions = append(p.Actions, Action{Op: OpStart, VM: ref})
	}
	if o.Status == "running" && len(c.Pending) > 0 {
		p.PendingReboot = append(p.PendingReboot, PendingReboot{VM: ref, Keys: slices.Clone(c.Pending)})
	}
}
