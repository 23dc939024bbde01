package pvesim

import (
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/gitedge/gitedge/internal/atomicfile"
)

// State is everything the simulated cluster holds. It is what --state
// persists, as JSON.
type State struct {
	Nodes    []NodeState          `json:"nodes"`
	Storages []StorageState       `json:"storages"`
	VMs      map[int]*VMState     `json:"vms"`
	Volumes  map[string]int64     `json:"volumes"` // volume ID → size in bytes
	HA       map[string]*HAState  `json:"ha"`      // sid ("vm:150") → resource
	Groups   map[string]GroupSpec `json:"haGroups"`
	NextPID  int                  `json:"nextPID"`
	MACSeq   int                  `json:"macSeq"`
}

// NodeState is one cluster node.
type NodeState struct {
	Name   string `json:"name"`
	IP     string `json:"ip"`
	Online bool   `json:"online"`
	// Bridges are the node's Linux bridges, up; the first one holds the
	// node's address and its port is the physical NIC eno1.
	Bridges []string `json:"bridges"`
	// DownBridges are written to the node's network configuration but
	// not up (not applied yet): listed without "active", and a VM
	// attached to one does not start.
	DownBridges []string `json:"downBridges,omitempty"`
}

// StorageState is a storage definition, available on Nodes (all when empty).
type StorageState struct {
	ID      string   `json:"id"`
	Type    string   `json:"type"`    // dir, nfs (file based) or lvmthin (block)
	Content string   `json:"content"` // "images,rootdir"
	Shared  bool     `json:"shared"`
	Nodes   []string `json:"nodes,omitempty"`
}

func (s StorageState) fileBased() bool { return s.Type == "dir" || s.Type == "nfs" }

// VMState is one QEMU guest: the active config (Conf), the [PENDING]
// section (Pending, PendingDelete) and the runtime state.
type VMState struct {
	VMID          int               `json:"vmid"`
	Node          string            `json:"node"`
	Conf          map[string]string `json:"conf"`
	Pending       map[string]string `json:"pending,omitempty"`
	PendingDelete []string          `json:"pendingDelete,omitempty"`
	Running       bool              `json:"running"`
	StartedAt     time.Time         `json:"startedAt,omitzero"`
	PID           int               `json:"pid,omitempty"`
	// CloudInit is the cloud-init data the drive was last generated from.
	CloudInit map[string]string `json:"cloudInit,omitempty"`
	// Booted is the cloud-init data the guest booted with (what its agent reports).
	Booted  map[string]string `json:"booted,omitempty"`
	Created time.Time         `json:"created"`
	// PowerChanged and WasRunning let /cluster/resources show the power
	// state from before the last change while the RRD lags.
	PowerChanged time.Time `json:"powerChanged,omitzero"`
	WasRunning   bool      `json:"wasRunning,omitempty"`
}

// HAState is one HA resource.
type HAState struct {
	State       string `json:"state"` // started, stopped, disabled, ignored
	Group       string `json:"group,omitempty"`
	MaxRestart  *int   `json:"maxRestart,omitempty"`
	MaxRelocate *int   `json:"maxRelocate,omitempty"`
	Comment     string `json:"comment,omitempty"`
	// CRM is what the HA manager has processed: "" until its first run.
	CRM string `json:"crm,omitempty"`
}

// GroupSpec is an HA group.
type GroupSpec struct {
	Nodes      string `json:"nodes"`
	Restricted bool   `json:"restricted,omitempty"`
	NoFailback bool   `json:"nofailback,omitempty"`
}

// TemplateName is the cloud-init template a fresh simulator holds.
const TemplateName = "debian-bullseye-cloudinit-template"

// TemplateVMID is its VMID.
const TemplateVMID = 9000

// DefaultState is what a simulator started without a state file holds: node
// proxmox1 with bridge vmbr0, storages local-lvm and vmdata, HA group main
// and the cloud-init template (VMID 9000, a scsi0 disk and a net0).
func DefaultState() *State {
	st := &State{
		Nodes: []NodeState{{Name: "proxmox1", IP: "192.0.2.11", Online: true, Bridges: []string{"vmbr0"}}},
		Storages: []StorageState{
			{ID: "local-lvm", Type: "lvmthin", Content: "images,rootdir"},
			{ID: "vmdata", Type: "nfs", Content: "images,snippets", Shared: true},
		},
		VMs:     map[int]*VMState{},
		Volumes: map[string]int64{},
		HA:      map[string]*HAState{},
		Groups:  map[string]GroupSpec{"main": {Nodes: "proxmox1"}},
		NextPID: 1000,
	}
	tid := TemplateVMID
	st.Volumes[fmt.Sprintf("vmdata:%d/base-%d-disk-0.qcow2", tid, tid)] = 2 << 30
	st.Volumes[fmt.Sprintf("vmdata:%d/vm-%d-cloudinit.qcow2", tid, tid)] = 4 << 20
	st.VMs[tid] = &VMState{
		VMID: tid,
		Node: "proxmox1",
		Conf: map[string]string{
			"agent":       "1",
			"boot":        "order=scsi0",
			"cores":       "2",
			"cpu":         "host",
			"description": "Debian 11 (bullseye) genericcloud image with qemu-guest-agent",
			"ide2":        fmt.Sprintf("vmdata:%d/vm-%d-cloudinit.qcow2,media=cdrom", tid, tid),
			"memory":      "2048",
			"meta":        "creation-qemu=8.1.5,ctime=1717990000",
			"name":        TemplateName,
			"net0":        "virtio=BC:24:11:5E:0A:01,bridge=vmbr0",
			"ostype":      "l26",
			"scsi0":       fmt.Sprintf("vmdata:%d/base-%d-disk-0.qcow2,size=2G", tid, tid),
			"scsihw":      "virtio-scsi-pci",
			"serial0":     "socket",
			"smbios1":     "uuid=4ef765ea-05e8-471d-b16d-a39727a06658",
			"sockets":     "1",
			"template":    "1",
			"vga":         "serial0",
			"vmgenid":     "2d6a1258-6db1-414b-9ea6-abe08cccac43",
		},
		Created: time.Unix(1717990000, 0).UTC(),
	}
	return st
}

func (st *State) node(name string) *NodeState {
	for i := range st.Nodes {
		if st.Nodes[i].Name == name {
			return &st.Nodes[i]
		}
	}
	return nil
}

func (st *State) storage(id string) *StorageState {
	for i := range st.Storages {
		if st.Storages[i].ID == id {
			return &st.Storages[i]
		}
	}
	return nil
}

func (s StorageState) onNode(n string) bool { return len(s.Nodes) == 0 || slices.Contains(s.Nodes, n) }

// effective returns the config as GET .../config shows it: pending values
// applied, pending deletes removed.
func (vm *VMState) effective() map[string]string {
	c := maps.Clone(vm.Conf)
	maps.Copy(c, vm.Pending)
	for _, k := range vm.PendingDelete {
		delete(c, k)
	}
	return c
}

// applyPending moves the [PENDING] section into the active config, as a
// start or reboot does.
func (vm *VMState) applyPending() {
	vm.Conf = vm.effective()
	vm.Pending = nil
	vm.PendingDelete = nil
}

// digest is the SHA-1 of a deterministic rendering of the config file:
// active section, then [PENDING]. Every write changes it.
func (vm *VMState) digest() string {
	var b strings.Builder
	writeSection := func(m map[string]string) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if k == "description" {
				for l := range strings.SplitSeq(m[k], "\n") {
					fmt.Fprintf(&b, "#%s\n", l)
				}
				continue
			}
			fmt.Fprintf(&b, "%s: %s\n", k, m[k])
		}
	}
	writeSection(vm.Conf)
	if len(vm.Pending) > 0 || len(vm.PendingDelete) > 0 {
		b.WriteString("\n[PENDING]\n")
		if len(vm.PendingDelete) > 0 {
			fmt.Fprintf(&b, "delete: %s\n", strings.Join(vm.PendingDelete, ","))
		}
		writeSection(vm.Pending)
	}
	if len(vm.CloudInit) > 0 {
		b.WriteString("\n[special:cloudinit]\n")
		writeSection(vm.CloudInit)
	}
	sum := sha1.Sum([]byte(b.String()))
	return hex.EncodeToString(sum[:])
}

func (vm *VMState) lock() string { return vm.Conf["lock"] }

func (vm *VMState) isTemplate() bool { return vm.Conf["template"] == "1" }

func (vm *VMState) name() string {
	if n := vm.effective()["name"]; n != "" {
		return n
	}
	return fmt.Sprintf("VM %d", vm.VMID)
}

func (vm *VMState) tags() string { return vm.effective()["tags"] }

// LoadState reads a state file written by Save.
func LoadState(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	st := &State{}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("pvesim state %s: %w", path, err)
	}
	if st.VMs == nil {
		st.VMs = map[int]*VMState{}
	}
	if st.Volumes == nil {
		st.Volumes = map[string]int64{}
	}
	if st.HA == nil {
		st.HA = map[string]*HAState{}
	}
	if st.Groups == nil {
		st.Groups = map[string]GroupSpec{}
	}
	return st, nil
}

// save writes the state atomically (temp file + rename).
func (st *State) save(path string) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, data, 0o600)
}

// dump renders the whole state as sorted text for golden tests: one block
// per VM (active config, pending section, power state), then HA and volumes.
// Values that are random by nature (MACs, UUIDs, digests) are masked.
func (st *State) dump() string {
	var b strings.Builder
	ids := slices.Sorted(maps.Keys(st.VMs))
	for _, id := range ids {
		vm := st.VMs[id]
		power := "stopped"
		if vm.Running {
			power = "running"
		}
		fmt.Fprintf(&b, "vm %d node=%s %s\n", id, vm.Node, power)
		for _, k := range slices.Sorted(maps.Keys(vm.Conf)) {
			fmt.Fprintf(&b, "  %s: %s\n", k, maskRandom(k, vm.Conf[k]))
		}
		for _, k := range slices.Sorted(maps.Keys(vm.Pending)) {
			fmt.Fprintf(&b, "  pending %s: %s\n", k, maskRandom(k, vm.Pending[k]))
		}
		for _, k := range vm.PendingDelete {
			fmt.Fprintf(&b, "  pending delete %s\n", k)
		}
	}
	sids := slices.Sorted(maps.Keys(st.HA))
	for _, sid := range sids {
		h := st.HA[sid]
		fmt.Fprintf(&b, "ha %s state=%s group=%s\n", sid, h.State, h.Group)
	}
	vols := slices.Sorted(maps.Keys(st.Volumes))
	for _, v := range vols {
		fmt.Fprintf(&b, "volume %s %d\n", v, st.Volumes[v])
	}
	return b.String()
}

func maskRandom(k, v string) string {
	switch {
	case k == "smbios1" || k == "vmgenid" || k == "meta":
		return "<" + k + ">"
	case strings.HasPrefix(k, "net"):
		parts := strings.Split(v, ",")
		if m, mac, ok := strings.Cut(parts[0], "="); ok && len(mac) == 17 {
			parts[0] = m + "=<mac>"
		}
		return strings.Join(parts, ",")
	}
	return v
}

// sortedTags normalises a tag list the way PVE writes it: split on , ; and
// spaces, lower-cased, de-duplicated, sorted, joined with ';'.
func sortedTags(s string) string {
	f := strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ',' || r == ';' || r == ' ' })
	sort.Strings(f)
	return strings.Join(slices.Compact(f), ";")
}
