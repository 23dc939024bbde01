package reconcile

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gitedge/gitedge/bgp"
	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/infra"
)

// Action is what a plan does to one item.
type Action string

const (
	Add    Action = "add"
	Change Action = "change"
	Remove Action = "remove"
)

// Plan is the difference between two desired states, item by item: what a
// pull request would change. It compares desired with desired, so it is
// deterministic; each subsystem diffs against observed reality on Apply.
type Plan struct {
	Changes []ItemChange `json:"changes"`
}

// ItemChange is one added, changed or removed item. Fields lists every
// field for an added item, the differing ones for a changed item, and
// nothing for a removed one.
type ItemChange struct {
	Kind   string        `json:"kind"` // Node, Listener, Route, Backend, VRRPInstance, BGP, BGPPeer, BGPAnnouncement, VirtualMachine, Infra
	Name   string        `json:"name"`
	Action Action        `json:"action"`
	Fields []FieldChange `json:"fields,omitempty"`
}

// FieldChange is one field of an item; Old is empty for an added item.
type FieldChange struct {
	Path string `json:"path"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`
}

// Empty reports whether the plan changes nothing.
func (p Plan) Empty() bool { return len(p.Changes) == 0 }

// Counts returns how many items are added, changed and removed.
func (p Plan) Counts() (add, change, remove int) {
	for _, c := range p.Changes {
		switch c.Action {
		case Add:
			add++
		case Change:
			change++
		case Remove:
			remove++
		}
	}
	return
}

// WriteText renders the plan for people, as a pull-request comment.
func (p Plan) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, c := range p.Changes {
		sign := map[Action]string{Add: "+", Change: "~", Remove: "-"}[c.Action]
		fmt.Fprintf(&b, "%s %s %q\n", sign, c.Kind, c.Name)
		for _, f := range c.Fields {
			if c.Action == Add {
				fmt.Fprintf(&b, "    %s: %s\n", f.Path, f.New)
			} else {
				fmt.Fprintf(&b, "    %s: %s → %s\n", f.Path, cmp.Or(f.Old, "(none)"), cmp.Or(f.New, "(none)"))
			}
		}
	}
	a, ch, r := p.Counts()
	if p.Empty() {
		b.WriteString("No changes.\n")
	} else {
		fmt.Fprintf(&b, "\nPlan: %d to add, %d to change, %d to remove.\n", a, ch, r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// kv is one flattened field.
type kv struct{ k, v string }

// secret marks a key whose value is compared but never shown (the VRRP
// password): a plan says it changed, never what it is.
const secret = "\x00"

func secretKV(k, v string) kv { return kv{secret + k, v} }

// Diff computes the plan that turns base into head. A nil base is the empty
// state: everything in head is added.
func Diff(base, head *Desired) Plan {
	if base == nil {
		base = &Desired{}
	}
	if head == nil {
		head = &Desired{}
	}
	var p Plan
	diffItems(&p, "Node", base.Edge.Nodes, head.Edge.Nodes, func(n Node) string { return n.Name }, nodeFields)
	diffItems(&p, "Listener", base.Dataplane.Listeners, head.Dataplane.Listeners, func(l dataplane.Listener) string { return l.Name }, listenerFields)
	diffItems(&p, "Route", base.Dataplane.Routes, head.Dataplane.Routes, func(r dataplane.Route) string { return r.Name }, routeFields)
	diffItems(&p, "Backend", base.Dataplane.Backends, head.Dataplane.Backends, func(b dataplane.Backend) string { return b.Name }, backendFields)
	diffItems(&p, "VRRPInstance", base.Edge.Failover, head.Edge.Failover, func(v VRRPInstance) string { return v.Name }, instanceFields)
	diffItems(&p, "BGP", bgpOf(base), bgpOf(head), func(b bgpItem) string { return b.Edge }, bgpFields)
	diffItems(&p, "BGPPeer", base.BGP.Peers, head.BGP.Peers, func(p bgp.Peer) string { return fmtAddr(p.Address) }, peerFields)
	diffItems(&p, "BGPAnnouncement", base.BGP.Announce, head.BGP.Announce, func(a bgp.Announcement) string { return a.Prefix.String() }, announceFields)
	diffItems(&p, "VirtualMachine", base.Infra.VMs, head.Infra.VMs, func(v infra.VM) string { return v.Name }, vmFields)
	diffItems(&p, "Infra", infraOf(base), infraOf(head), func(i infraItem) string { return i.Edge }, infraFields)
	return p
}

func diffItems[T any](p *Plan, kind string, base, head []T, name func(T) string, fields func(T) []kv) {
	old := make(map[string]T, len(base))
	for _, b := range base {
		old[name(b)] = b
	}
	seen := make(map[string]bool, len(head))
	var changes []ItemChange
	for _, h := range head {
		n := name(h)
		seen[n] = true
		b, ok := old[n]
		if !ok {
			var fc []FieldChange
			for _, f := range fields(h) {
				if f.v != "" && !strings.HasPrefix(f.k, secret) {
					fc = append(fc, FieldChange{Path: f.k, New: f.v})
				}
			}
			changes = append(changes, ItemChange{Kind: kind, Name: n, Action: Add, Fields: fc})
			continue
		}
		if fc := diffFields(fields(b), fields(h)); len(fc) > 0 {
			changes = append(changes, ItemChange{Kind: kind, Name: n, Action: Change, Fields: fc})
		}
	}
	for _, b := range base {
		if n := name(b); !seen[n] {
			changes = append(changes, ItemChange{Kind: kind, Name: n, Action: Remove})
		}
	}
	slices.SortStableFunc(changes, func(a, b ItemChange) int { return strings.Compare(a.Name, b.Name) })
	p.Changes = append(p.Changes, changes...)
}

// diffFields compares two flattened items; keys present on one side only
// (a server added to a backend) show as (none) on the other.
func diffFields(a, b []kv) []FieldChange {
	am := make(map[string]string, len(a))
	for _, f := range a {
		am[f.k] = f.v
	}
	bm := make(map[string]string, len(b))
	for _, f := range b {
		bm[f.k] = f.v
	}
	var out []FieldChange
	for _, f := range b {
		old := am[f.k]
		switch {
		case old == f.v:
		case strings.HasPrefix(f.k, secret):
			// Set or unset shows in the field that goes with it (auth);
			// a secret replaced by another shows here, never its value.
			if old != "" && f.v != "" {
				out = append(out, FieldChange{Path: strings.TrimPrefix(f.k, secret), Old: "(set)", New: "(changed)"})
			}
		default:
			out = append(out, FieldChange{Path: f.k, Old: old, New: f.v})
		}
	}
	for _, f := range a {
		if _, ok := bm[f.k]; !ok && f.v != "" && !strings.HasPrefix(f.k, secret) {
			out = append(out, FieldChange{Path: f.k, Old: f.v})
		}
	}
	return out
}

func fmtDur(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func fmtList[T any](xs []T, f func(T) string) string {
	if len(xs) == 0 {
		return ""
	}
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = f(x)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func fmtAddr(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

// infraItem is the Edge's infra settings as one plan item; a repository
// without infra has none.
type infraItem struct {
	Edge   string // the item's name
	Leader Leader
	Prune  bool
}

func infraOf(d *Desired) []infraItem {
	if d.Edge.InfraLeader == (Leader{}) && !d.Infra.Prune {
		return nil
	}
	return []infraItem{{d.Edge.Name, d.Edge.InfraLeader, d.Infra.Prune}}
}

func infraFields(i infraItem) []kv {
	return []kv{{"leader", i.Leader.String()}, {"prune", strconv.FormatBool(i.Prune)}}
}

func nodeFields(n Node) []kv { return []kv{{"address", fmtAddr(n.Address)}} }

func listenerFields(l dataplane.Listener) []kv {
	return []kv{
		{"bind", l.Bind.String()},
		{"mode", string(l.Mode)},
		{"defaultBackend", l.DefaultBackend},
		{"forwardFor", strconv.FormatBool(l.ForwardFor)},
		{"inspectTimeout", fmtDur(l.InspectTimeout)},
		{"acceptProxy", fmtList(l.AcceptProxy, netip.Prefix.String)},
		{"requestTimeout", fmtDur(l.RequestTimeout)},
		{"clientTimeout", fmtDur(l.ClientTimeout)},
		{"maxHeaderBytes", itoa(l.MaxHeaderBytes)},
		{"drainTimeout", fmtDur(l.DrainTimeout)},
	}
}

func routeFields(r dataplane.Route) []kv {
	return []kv{
		{"hosts", fmtList(r.Hosts, func(s string) string { return s })},
		{"http.backend", r.HTTPBackend},
		{"tls.backend", r.TLSBackend},
	}
}

func backendFields(b dataplane.Backend) []kv {
	f := []kv{
		{"balance", string(b.Balance)},
		{"proxyProtocol", string(b.ProxyProtocol)},
		{"connectTimeout", fmtDur(b.ConnectTimeout)},
		{"queueTimeout", fmtDur(b.QueueTimeout)},
		{"idleTimeout", fmtDur(b.IdleTimeout)},
		{"retries", itoa(b.Retries)},
	}
	if hc := b.HealthCheck; hc.Type != dataplane.CheckNone {
		f = append(f,
			kv{"healthCheck.type", string(hc.Type)},
			kv{"healthCheck.path", hc.Path},
			kv{"healthCheck.host", hc.Host},
			kv{"healthCheck.interval", fmtDur(hc.Interval)},
			kv{"healthCheck.timeout", fmtDur(hc.Timeout)},
			kv{"healthCheck.rise", itoa(hc.Rise)},
			kv{"healthCheck.fall", itoa(hc.Fall)})
	}
	for _, s := range b.Servers {
		p := "servers[" + s.Name + "]."
		f = append(f,
			kv{p + "address", s.Address.String()},
			kv{p + "weight", itoa(s.Weight)},
			kv{p + "maxConn", itoa(s.MaxConn)})
	}
	return f
}

func instanceFields(v VRRPInstance) []kv {
	f := []kv{
		{"interface", v.Interface},
		{"virtualRouterID", itoa(int(v.VRID))},
		{"version", itoa(v.Version)},
		{"advertInterval", fmtDur(v.AdvertInterval)},
	}
	nodes := make([]string, 0, len(v.Priorities))
	for n := range v.Priorities {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		f = append(f, kv{"priority." + n, itoa(int(v.Priorities[n]))})
	}
	auth := ""
	if v.AuthPass != "" {
		auth = "pass (password set)" // never print the password
	}
	f = append(f,
		kv{"preempt", strconv.FormatBool(v.Preempt)},
		kv{"preemptDelay", fmtDur(v.PreemptDelay)},
		kv{"auth", auth},
		secretKV("auth.password", v.AuthPass),
		kv{"unicastPeers", strconv.FormatBool(v.Unicast)},
		kv{"vips", fmtList(v.VIPs, netip.Prefix.String)},
		kv{"track.proxy", strconv.FormatBool(v.TrackProxy)},
		kv{"track.interfaces", fmtList(v.TrackInterfaces, func(s string) string { return s })},
		kv{"garp.repeat", itoa(v.GARP.Repeat)},
		kv{"garp.delay", fmtDur(v.GARP.Delay)},
		kv{"garp.refresh", fmtDur(v.GARP.Refresh)},
	)
	return f
}

func vmFields(v infra.VM) []kv {
	f := []kv{
		{"vmid", itoa(v.VMID)},
		{"node", v.Node},
		{"clone", v.Clone},
		{"description", v.Description},
		{"cpu", v.CPU},
		{"cores", itoa(v.Cores)},
		{"memory", itoa(v.Memory)},
		{"onBoot", strconv.FormatBool(v.OnBoot)},
		{"agent", strconv.FormatBool(v.Agent)},
		{"disk.bus", v.Disk.Bus},
		{"disk.storage", v.Disk.Storage},
		{"disk.size", sizeStr(v.Disk.Size)},
		{"disk.format", v.Disk.Format},
	}
	for i, n := range v.Network {
		p := fmt.Sprintf("network[%d].", i)
		vlan := ""
		if n.VLAN != 0 {
			vlan = itoa(n.VLAN)
		}
		f = append(f, kv{p + "model", n.Model}, kv{p + "bridge", n.Bridge}, kv{p + "vlan", vlan})
	}
	ci := v.CloudInit
	f = append(f,
		kv{"cloudInit.user", ci.User},
		kv{"cloudInit.ipConfig", ci.IPConfig.String()},
		kv{"cloudInit.nameserver", ci.Nameserver},
		kv{"cloudInit.searchDomain", ci.SearchDomain},
		kv{"cloudInit.sshKeys", fmtList(ci.SSHKeys, shortKey)},
		kv{"serial", v.Serial},
		kv{"vga", v.VGA},
	)
	if v.HA != nil {
		f = append(f, kv{"ha.group", v.HA.Group}, kv{"ha.state", v.HA.State})
	}
	f = append(f, kv{"ignoreChanges", fmtList(v.IgnoreChanges, func(s string) string { return s })})
	return f
}

func sizeStr(s infra.Size) string {
	if s == 0 {
		return ""
	}
	return s.String()
}

// shortKey keeps an SSH key readable in a plan: type and comment.
func shortKey(k string) string {
	f := strings.Fields(k)
	if len(f) >= 3 {
		return f[0] + " …" + " " + strings.Join(f[2:], " ")
	}
	if len(f) == 2 && len(f[1]) > 12 {
		return f[0] + " …" + f[1][len(f[1])-8:]
	}
	return k
}

// bgpItem is the bgp section's own settings as one plan item, named after
// the Edge; its peers and announcements are items of their own, so a
// plan says which session or prefix a change touches.
type bgpItem struct {
	Edge     string // the item's name
	ASN      uint32
	RouterID map[string]netip.Addr
}

func bgpOf(d *Desired) []bgpItem {
	if d.BGP.ASN == 0 && len(d.BGP.Peers) == 0 && len(d.BGP.Announce) == 0 {
		return nil
	}
	return []bgpItem{{d.Edge.Name, d.BGP.ASN, d.BGP.RouterID}}
}

func bgpFields(b bgpItem) []kv {
	f := []kv{{"asn", strconv.FormatUint(uint64(b.ASN), 10)}}
	for _, n := range slices.Sorted(maps.Keys(b.RouterID)) {
		f = append(f, kv{"routerID." + n, fmtAddr(b.RouterID[n])})
	}
	return f
}

func peerFields(p bgp.Peer) []kv {
	pw := ""
	if p.Password != "" {
		pw = "(set)" // never print the password
	}
	return []kv{
		{"asn", strconv.FormatUint(uint64(p.ASN), 10)},
		{"holdTime", fmtDur(p.HoldTime)},
		{"restartTime", fmtDur(p.RestartTime)},
		{"port", itoa(int(p.Port))},
		{"password", pw},
		secretKV("password", p.Password),
		{"bfd", strconv.FormatBool(p.BFD)},
	}
}

func announceFields(a bgp.Announcement) []kv {
	f := []kv{
		{"track.proxy", strconv.FormatBool(a.TrackProxy)},
		{"communities", fmtList(a.Communities, bgp.Community.String)},
	}
	for _, n := range slices.Sorted(maps.Keys(a.MED)) {
		f = append(f, kv{"med." + n, strconv.FormatUint(uint64(a.MED[n]), 10)})
	}
	return f
}
