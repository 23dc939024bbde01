package infra

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"
)

func specLB() VM {
	return VM{
		Name: "lb-0", VMID: 150, Node: "proxmox1", Clone: "tmpl", CPU: "host", Cores: 2, Memory: 4096, OnBoot: true, Agent: true,
		Description: "lb", Disk: Disk{Bus: "scsi", Storage: "vmdata", Size: 8 << 30},
		Network: []NIC{{Model: "virtio", Bridge: "vmbr0", VLAN: 33}},
		CloudInit: CloudInit{User: "ansible", SSHKeys: []string{"ssh-ed25519 AAAA a@b"},
			IPConfig: IPConfig{IP: netip.MustParsePrefix("192.0.2.250/24"), Gateway: netip.MustParseAddr("192.0.2.1")}},
		Serial: "socket", VGA: "serial0",
	}
}

// Spellings Proxmox or the Terraform provider leave in a config that mean
// the same as the spec produce no change.
func TestDiffIgnoresEquivalentSpellings(t *testing.T) {
	obs := map[string]string{
		"name": "lb-0", "tags": "gitedge;lb", "description": "lb\n", "cpu": "cputype=host", "cores": "2",
		"memory": "current=4096", "onboot": "1", "agent": "enabled=1,fstrim_cloned_disks=1",
		"net0": "virtio=BC:24:11:3A:7F:01,bridge=vmbr0,firewall=1,tag=33", "ciuser": "ansible",
		"ipconfig0": "gw=192.0.2.1,ip=192.0.2.250/24", "sshkeys": "ssh-ed25519%20AAAA%20a%40b%0A",
		"serial0": "socket", "vga": "type=serial0",
	}
	if d := diff(specLB(), obs, false); len(d) != 0 {
		t.Errorf("diff = %+v, want none", d)
	}
	for _, tc := range []struct{ key, val, want string }{
		{"memory", "2048", "4096"},
		{"agent", "0", "1"},
		{"tags", "lb", "gitedge;lb"},
		{"net0", "virtio=BC:24:11:3A:7F:01,bridge=vmbr1,firewall=1,tag=33", "virtio=BC:24:11:3A:7F:01,bridge=vmbr0,firewall=1,tag=33"},
		{"net0", "e1000=BC:24:11:3A:7F:01,bridge=vmbr0", "virtio=BC:24:11:3A:7F:01,bridge=vmbr0,tag=33"},
		{"vga", "std", "serial0"},
		{"ipconfig0", "ip=dhcp", "ip=192.0.2.250/24,gw=192.0.2.1"},
	} {
		o := map[string]string{}
		for k, v := range obs {
			o[k] = v
		}
		o[tc.key] = tc.val
		d := diff(specLB(), o, false)
		if len(d) != 1 || d[0].Key != tc.key || d[0].New != tc.want {
			t.Errorf("%s=%s: diff = %+v, want %s -> %s", tc.key, tc.val, d, tc.key, tc.want)
		}
	}
	// Absent keys take Proxmox's defaults: onboot 0, agent off, 1 core, 512 MiB.
	v := VM{Name: "x", Cores: 1, Memory: 512}
	if d := diff(v, map[string]string{"name": "x", "tags": "gitedge"}, false); len(d) != 0 {
		t.Errorf("defaults: diff = %+v", d)
	}
	// ignoreChanges leaves a field alone on an existing VM.
	v = specLB()
	v.IgnoreChanges = []string{"network", "memory"}
	o := map[string]string{}
	for k, val := range obs {
		o[k] = val
	}
	o["net0"], o["memory"] = "e1000=BC:24:11:3A:7F:01,bridge=vmbr9", "1024"
	if d := diff(v, o, true); len(d) != 0 {
		t.Errorf("ignored fields: diff = %+v", d)
	}
}

func TestPlanOwnershipAndTemplates(t *testing.T) {
	tmpl := func(id int, node string) *ObservedVM {
		return &ObservedVM{Resource: Resource{VMID: id, Node: node, Name: "tmpl", Template: true}}
	}
	for _, tc := range []struct {
		name string
		vms  []*ObservedVM
		want string
	}{
		{"no template", nil, `! VM 150 "lb-0" on proxmox1: clone: no template named "tmpl" in the cluster`},
		{"ambiguous", []*ObservedVM{tmpl(9000, "proxmox1"), tmpl(9001, "proxmox1")}, `template name "tmpl" is ambiguous: VMIDs 9000, 9001`},
		{"prefers target node", []*ObservedVM{tmpl(9000, "proxmox2"), tmpl(9001, "proxmox1")}, `+ create VM 150 "lb-0" on proxmox1 from tmpl`},
		{"vmid is a template", []*ObservedVM{tmpl(150, "proxmox1")}, `VMID 150 is the template "tmpl"`},
		{"unreadable config", []*ObservedVM{tmpl(9000, "proxmox1"), {Resource: Resource{VMID: 150, Node: "proxmox1", Name: "lb-0"}, ConfigErr: errors.New("500 boom")}}, "observe: 500 boom"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &Observed{VMs: map[int]*ObservedVM{}, HA: map[string]HAResource{}}
			for _, o := range tc.vms {
				obs.VMs[o.VMID] = o
			}
			p := plan(Config{VMs: []VM{specLB()}}, obs, nil)
			if !strings.Contains(p.String(), tc.want) {
				t.Errorf("plan:\n%s\nwant it to contain %q", p, tc.want)
			}
			if tc.name == "prefers target node" && p.Actions[0].cloneID != 9001 {
				t.Errorf("clones %d, want 9001 on the target node", p.Actions[0].cloneID)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err    error
		kind   Kind
		reason string
	}{
		{errors.New("500 VM is locked (clone)"), Transient, ReasonLocked},
		{errors.New("500 can't lock file '/var/lock/qemu-server/lock-101.conf' - got timeout"), Transient, ReasonLocked},
		{errors.New("500 unable to create VM 101: config file already exists"), Transient, ReasonRaced},
		{errors.New("500 checksum mismatch (file change by other user?)"), Transient, ReasonRaced},
		{errors.New("500 Configuration file 'nodes/proxmox1/qemu-server/199.conf' does not exist"), Transient, ReasonNotFound},
		{errors.New("500 storage 'fast' does not exist"), Terminal, ReasonInvalid},
		{errors.New("bridge 'vmbr9' does not exist"), Terminal, ReasonInvalid},
		{errors.New("500 VM 151 is running - destroy failed"), Transient, ReasonAPI},
		{errors.New(`bad request: 400 Parameter verification failed. - {"cores":"type check"}`), Terminal, ReasonInvalid},
		{proxmox.ErrNotAuthorized, Terminal, ReasonUnauthorized},
		{fmt.Errorf("get: %w", context.DeadlineExceeded), Transient, ReasonTimeout},
		{errors.New("shrinking disks is not supported"), Terminal, ReasonShrink},
		{errors.New("500 hostname lookup 'proxmox9' failed - failed to get address info for: proxmox9: Name or service not known"), Terminal, ReasonInvalid},
	} {
		e := classify("op", VMRef{Name: "lb-0", VMID: 150, Node: "proxmox1"}, tc.err)
		if e.Kind != tc.kind || e.Reason != tc.reason {
			t.Errorf("%v: %v/%s, want %v/%s", tc.err, e.Kind, e.Reason, tc.kind, tc.reason)
		}
		if !errors.Is(e, tc.err) {
			t.Errorf("%v: does not unwrap", tc.err)
		}
		if !strings.HasPrefix(e.Error(), `VM 150 "lb-0" on proxmox1: op: `) {
			t.Errorf("error text %q lacks its location", e.Error())
		}
	}
	joined := errors.Join(&Error{Kind: Terminal, Reason: ReasonConflict}, &Error{Kind: Transient, Reason: ReasonLocked})
	if !isTransient(joined) || !IsTerminal(joined) || !IsConflict(joined) {
		t.Error("joined errors are not seen through")
	}
	// The reconcile loop asks errors.As for a Transient method: a pass with
	// a conflict and a lock is worth retrying; a conflict alone is not.
	type transienter interface{ Transient() bool }
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{join([]error{&Error{Kind: Terminal, Reason: ReasonConflict}, &Error{Kind: Transient, Reason: ReasonLocked}}), true},
		{join([]error{&Error{Kind: Terminal, Reason: ReasonConflict}}), false},
		{fmt.Errorf("infra: %w", join([]error{&Error{Kind: Terminal}, &Error{Kind: Transient}})), true},
	} {
		var tr transienter
		if !errors.As(tc.err, &tr) || tr.Transient() != tc.want {
			t.Errorf("%v: Transient() via errors.As = %v, want %v", tc.err, tr != nil && tr.Transient(), tc.want)
		}
	}
	if join(nil) != nil {
		t.Error("join of nothing is not nil")
	}
}

// fakeAPI is an in-memory API for the plan and ordering logic; every call
// is recorded.
type fakeAPI struct {
	mu      sync.Mutex
	res     []Resource
	configs map[int]VMConfig
	calls   []string
	clone   func(CloneRequest) (string, error)
}

func (f *fakeAPI) record(s string, a ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(s, a...))
}

func (f *fakeAPI) Resources(context.Context) ([]Resource, error) {
	f.record("resources")
	return f.res, nil
}
func (f *fakeAPI) HAResources(context.Context) ([]HAResource, error) {
	f.record("ha")
	return nil, nil
}
func (f *fakeAPI) Config(_ context.Context, _ string, id int) (VMConfig, error) {
	f.record("config %d", id)
	return f.configs[id], nil
}
func (f *fakeAPI) Status(_ context.Context, _ string, id int) (VMStatus, error) {
	f.record("status %d", id)
	return VMStatus{Status: "stopped"}, nil
}
func (f *fakeAPI) Clone(_ context.Context, r CloneRequest) (string, error) {
	f.record("clone %d", r.VMID)
	return f.clone(r)
}
func (f *fakeAPI) SetConfig(_ context.Context, _ string, id int, _ string, _ map[string]string, _ []string) (string, error) {
	f.record("setconfig %d", id)
	return "UPID:x", nil
}
func (f *fakeAPI) Resize(context.Context, string, int, string, string) (string, error) {
	f.record("resize")
	return "UPID:x", nil
}
func (f *fakeAPI) Power(_ context.Context, _ string, id int, a string) (string, error) {
	f.record("%s %d", a, id)
	return "UPID:x", nil
}
func (f *fakeAPI) Delete(context.Context, string, int) (string, error) {
	f.record("delete")
	return "UPID:x", nil
}
func (f *fakeAPI) RegenerateCloudInit(context.Context, string, int) error { return nil }
func (f *fakeAPI) CreateHA(context.Context, string, HA) error             { f.record("createha"); return nil }
func (f *fakeAPI) UpdateHA(context.Context, string, HA) error             { return nil }
func (f *fakeAPI) DeleteHA(context.Context, string) error                 { return nil }
func (f *fakeAPI) Task(context.Context, string) (TaskStatus, error) {
	return TaskStatus{ExitStatus: "OK"}, nil
}
func (f *fakeAPI) AgentInterfaces(context.Context, string, int) ([]AgentInterface, error) {
	return nil, errors.New("500 QEMU guest agent is not running")
}
func (f *fakeAPI) Bridges(_ context.Context, node string) ([]Bridge, error) {
	f.record("bridges %s", node)
	return []Bridge{{Name: "vmbr0", Type: "bridge", Active: true}}, nil
}

// A second writer whose clone is refused because the VMID now exists backs
// off at once: no retry, no config write, a transient Raced error.
func TestRacedCloneBacksOff(t *testing.T) {
	f := &fakeAPI{
		res:     []Resource{{VMID: 9000, Node: "proxmox1", Name: "tmpl", Template: true}},
		configs: map[int]VMConfig{9000: {Values: map[string]string{"scsi0": "vmdata:base-9000-disk-0,size=2G"}}},
		clone: func(r CloneRequest) (string, error) {
			return "", fmt.Errorf("500 unable to create VM %d: config file already exists", r.VMID)
		},
	}
	rec, err := New(Options{API: f, PollInterval: time.Millisecond, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	v := specLB()
	_, err = rec.Apply(context.Background(), Config{VMs: []VM{v}}, func() bool { return true })
	if !HasReason(err, ReasonRaced) || !isTransient(err) || IsTerminal(err) {
		t.Fatalf("err = %v, want transient Raced", err)
	}
	var clones, writes int
	for _, c := range f.calls {
		if strings.HasPrefix(c, "clone") {
			clones++
		}
		if strings.HasPrefix(c, "setconfig") || strings.HasPrefix(c, "createha") || strings.HasPrefix(c, "start") {
			writes++
		}
	}
	if clones != 1 || writes != 0 {
		t.Errorf("calls = %v: want one clone and nothing after it", f.calls)
	}
}

// Concurrency bounds the number of VMs changed at once.
func TestCreateConcurrencyBound(t *testing.T) {
	var mu sync.Mutex
	inFlight, peak := 0, 0
	f := &fakeAPI{res: []Resource{{VMID: 9000, Node: "proxmox1", Name: "tmpl", Template: true}}, configs: map[int]VMConfig{}}
	f.clone = func(r CloneRequest) (string, error) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		return "UPID:x", nil
	}
	rec, err := New(Options{API: f, Concurrency: 3, PollInterval: time.Millisecond, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	for i := range 10 {
		v := specLB()
		v.Name, v.VMID, v.Disk = fmt.Sprintf("vm-%d", i), 200+i, Disk{}
		cfg.VMs = append(cfg.VMs, v)
	}
	if _, err := rec.Apply(context.Background(), cfg, func() bool { return true }); err != nil {
		t.Fatal(err)
	}
	if peak != 3 {
		t.Errorf("peak concurrent clones = %d, want 3", peak)
	}
}

// The plan checks the bridges Observe read: a NIC on a bridge the node
// lacks or has not brought up refuses the create or the whole config
// write (terminal), a node whose bridges could not be read holds them
// with its error's kind, a node not read is not checked, and a removal or
// an ignored network names no bridge.
func TestPlanChecksBridges(t *testing.T) {
	vmbr0 := []Bridge{{Name: "vmbr0", Type: "bridge", Active: true}}
	existing := func(bridge string, extra map[string]string) *ObservedVM {
		v := specLB()
		v.Network[0].Bridge = bridge
		vals := map[string]string{"scsi0": "vmdata:150/vm-150-disk-0.qcow2,size=8G"}
		for _, w := range wants(v, nil) {
			vals[w.key] = w.value
		}
		maps.Copy(vals, extra)
		return &ObservedVM{Resource: Resource{VMID: 150, Node: "proxmox1", Name: "lb-0", Status: "running"}, Config: &VMConfig{Values: vals}}
	}
	bridge := func(b string) func(*VM) { return func(v *VM) { v.Network[0].Bridge = b } }
	for _, tc := range []struct {
		name    string
		vm      *ObservedVM // VM 150; nil: to be created
		spec    func(*VM)
		bridges []Bridge // proxmox1's; nil: not read
		listErr error
		want    string // in the plan; "! …": a problem
		kind    Kind   // of that problem
	}{
		{name: "create on a missing bridge", spec: bridge("vmbr9"), bridges: vmbr0,
			want: `! VM 150 "lb-0" on proxmox1: clone: no bridge "vmbr9" on node proxmox1 (spec.network[0].bridge): create it on the node or fix the spec; the VM is not created`, kind: Terminal},
		{name: "create on a bridge not up", bridges: []Bridge{{Name: "vmbr0", Type: "bridge"}},
			want: `! VM 150 "lb-0" on proxmox1: clone: bridge "vmbr0" on node proxmox1 is not active (spec.network[0].bridge)`, kind: Terminal},
		{name: "create on an OVS bridge", spec: bridge("vmbr1"), bridges: []Bridge{{Name: "vmbr1", Type: "OVSBridge", Active: true}},
			want: `+ create VM 150 "lb-0" on proxmox1 from tmpl`},
		{name: "create, bridges not read", spec: bridge("vmbr9"), want: `+ create VM 150 "lb-0" on proxmox1 from tmpl`},
		{name: "create, bridges unreadable", listErr: &Error{Kind: Transient, Reason: ReasonAPI, Err: errors.New("500 boom")},
			want: `! VM 150 "lb-0" on proxmox1: clone: listing the bridges of node proxmox1: 500 boom`, kind: Transient},
		{name: "update to a missing bridge holds the whole write", vm: existing("vmbr0", nil),
			spec: func(v *VM) { v.Network[0].Bridge, v.Memory = "vmbr9", 8192 }, bridges: vmbr0,
			want: `! VM 150 "lb-0" on proxmox1: config: no bridge "vmbr9" on node proxmox1 (spec.network[0].bridge): create it on the node or fix the spec; its config is not changed`, kind: Terminal},
		{name: "new VLAN on a bridge gone from the node", vm: existing("vmbr7", nil),
			spec: func(v *VM) { v.Network[0].Bridge, v.Network[0].VLAN = "vmbr7", 44 }, bridges: vmbr0,
			want: `! VM 150 "lb-0" on proxmox1: config: no bridge "vmbr7" on node proxmox1 (spec.network[0].bridge)`, kind: Terminal},
		{name: "ignored network", vm: existing("vmbr0", nil),
			spec: func(v *VM) { v.Network[0].Bridge, v.IgnoreChanges = "vmbr9", []string{"network"} }, bridges: vmbr0,
			want: "No changes."},
		{name: "NIC removed, net0 on a bridge gone", vm: existing("vmbr7", map[string]string{"net1": "e1000=BC:24:11:00:00:01,bridge=vmbr7"}),
			spec: bridge("vmbr7"), bridges: vmbr0,
			want: `~ update VM 150 "lb-0" net1: e1000=BC:24:11:00:00:01,bridge=vmbr7 -> (none)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			obs := &Observed{VMs: map[int]*ObservedVM{9000: {Resource: Resource{VMID: 9000, Node: "proxmox1", Name: "tmpl", Template: true}}},
				HA: map[string]HAResource{}, Bridges: map[string][]Bridge{}, BridgeErrs: map[string]error{}}
			if tc.vm != nil {
				obs.VMs[150] = tc.vm
			}
			if tc.bridges != nil {
				obs.Bridges["proxmox1"] = tc.bridges
			}
			if tc.listErr != nil {
				obs.BridgeErrs["proxmox1"] = tc.listErr
			}
			v := specLB()
			if tc.spec != nil {
				tc.spec(&v)
			}
			p := plan(Config{VMs: []VM{v}}, obs, nil)
			if !strings.Contains(p.String(), tc.want) {
				t.Fatalf("plan:\n%s\nwant it to contain %q", p, tc.want)
			}
			if !strings.HasPrefix(tc.want, "! ") {
				if len(p.Problems) != 0 {
					t.Errorf("problems %v, want none", p.Problems)
				}
				return
			}
			if len(p.Problems) != 1 || p.Problems[0].Kind != tc.kind || !p.Empty() {
				t.Errorf("problems %v, actions %v: want one %v problem and no action", p.Problems, p.Actions, tc.kind)
			}
		})
	}
}
