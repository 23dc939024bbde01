package reconcile

import (
	"cmp"
	"encoding/json"
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
// Old and New are the values as text ("[a, b]" for a list); JSON keeps
// them typed: lists as lists, numbers as numbers, booleans as booleans.
type FieldChange struct {
	Path string `json:"path"`
	Old  string `json:"old,omitempty"`
	New  string `json:"new,omitempty"`

	t              valType
	rawOld, rawNew string // lists: the items joined by listSep
}

func newFieldChange(path string, t valType, old, new string) FieldChange {
	return FieldChange{Path: path, Old: display(t, old), New: display(t, new), t: t, rawOld: old, rawNew: new}
}

// display is a value as text.
func display(t valType, v string) string {
	if t == listVal && v != "" {
		return "[" + strings.ReplaceAll(v, listSep, ", ") + "]"
	}
	return v
}

// MarshalJSON writes the values typed; an absent value is left out.
func (f FieldChange) MarshalJSON() ([]byte, error) {
	out := struct {
		Path string `json:"path"`
		Old  any    `json:"old,omitempty"`
		New  any    `json:"new,omitempty"`
	}{Path: f.Path, Old: typed(f.t, f.rawOld, f.Old), New: typed(f.t, f.rawNew, f.New)}
	return json.Marshal(out)
}

// typed is a value for JSON: nil when absent.
func typed(t valType, raw, text string) any {
	switch {
	case text == "":
		return nil
	case raw == "" || text != display(t, raw):
		return text // a placeholder such as "(set)", or built by hand
	case t == numVal:
		return json.Number(raw)
	case t == boolVal:
		return raw == "true"
	case t == listVal:
		return strings.Split(raw, listSep)
	}
	return text
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

// kv is one flattened field: its text (a list's items joined by
// listSep) and its type, which JSON keeps.
type kv struct {
	k, v string
	t    valType
}

// valType is what a field's value is, so JSON output keeps it typed
// (lists as lists, numbers as numbers).
type valType uint8

const (
	textVal valType = iota
	numVal
	boolVal
	listVal
)

// listSep joins a list's items in a kv; no item holds it.
const listSep = "\x1f"

func num(k string, i int) kv   { return kv{k, itoa(i), numVal} }
func flag(k string, b bool) kv { return kv{k, strconv.FormatBool(b), boolVal} }

func list[T any](k string, xs []T, f func(T) string) kv {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = f(x)
	}
	return kv{k, strings.Join(parts, listSep), listVal}
}

// secret marks a key whose value is compared but never shown (the VRRP
// password): a plan says it changed, never what it is.
const secret = "\x00"

func secretKV(k, v string) kv { return kv{k: secret + k, v: v} }

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
	diffItems(&p, "BGPPeer", peersOf(base), peersOf(head), func(p peerItem) string { return fmtAddr(p.Address) }, peerFields)
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
					fc = append(fc, newFieldChange(f.k, f.t, "", f.v))
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
	types := make(map[string]valType, len(a)+len(b))
	for _, f := range append(slices.Clone(a), b...) {
		types[f.k] = f.t
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
			out = append(out, newFieldChange(f.k, types[f.k], old, f.v))
		}
	}
	for _, f := range a {
		if _, ok := bm[f.k]; !ok && f.v != "" && !strings.HasPrefix(f.k, secret) {
			out = append(out, newFieldChange(f.k, f.t, f.v, ""))
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
	return []kv{{k: "leader", v: i.Leader.String()}, flag("prune", i.Prune)}
}

func nodeFields(n Node) []kv { return []kv{{k: "address", v: fmtAddr(n.Address)}} }

func listenerFields(l dataplane.Listener) []kv {
	return []kv{
		{k: "bind", v: l.Bind.String()},
		{k: "mode", v: string(l.Mode)},
		{k: "defaultBackend", v: l.DefaultBackend},
		flag("forwardFor", l.ForwardFor),
		{k: "inspectTimeout", v: fmtDur(l.InspectTimeout)},
		list("acceptProxy", l.AcceptProxy, netip.Prefix.String),
		{k: "requestTimeout", v: fmtDur(l.RequestTimeout)},
		{k: "clientTimeout", v: fmtDur(l.ClientTimeout)},
		num("maxHeaderBytes", l.MaxHeaderBytes),
		{k: "drainTimeout", v: fmtDur(l.DrainTimeout)},
		num("maxConn", l.MaxConn),
		flag("deferAccept", l.DeferAccept),
	}
}

func routeFields(r dataplane.Route) []kv {
	return []kv{
		list("hosts", r.Hosts, func(s string) string { return s }),
		{k: "http.backend", v: r.HTTPBackend},
		{k: "tls.backend", v: r.TLSBackend},
	}
}

func backendFields(b dataplane.Backend) []kv {
	f := []kv{
		{k: "balance", v: string(b.Balance)},
		{k: "proxyProtocol", v: string(b.ProxyProtocol)},
		{k: "connectTimeout", v: fmtDur(b.ConnectTimeout)},
		{k: "queueTimeout", v: fmtDur(b.QueueTimeout)},
		num("maxQueue", b.MaxQueue),
		{k: "idleTimeout", v: fmtDur(b.IdleTimeout)},
		num("retries", b.Retries),
	}
	if hc := b.HealthCheck; hc.Type != dataplane.CheckNone {
		f = append(f,
			kv{k: "healthCheck.type", v: string(hc.Type)},
			kv{k: "healthCheck.path", v: hc.Path},
			kv{k: "healthCheck.host", v: hc.Host},
			kv{k: "healthCheck.interval", v: fmtDur(hc.Interval)},
			kv{k: "healthCheck.timeout", v: fmtDur(hc.Timeout)},
			num("healthCheck.rise", hc.Rise),
			num("healthCheck.fall", hc.Fall))
	}
	for _, s := range b.Servers {
		p := "servers[" + s.Name + "]."
		f = append(f,
			kv{k: p + "address", v: s.Address.String()},
			num(p+"weight", s.Weight),
			num(p+"maxConn", s.MaxConn))
	}
	return f
}

func instanceFields(v VRRPInstance) []kv {
	f := []kv{
		{k: "interface", v: v.Interface},
		num("virtualRouterID", int(v.VRID)),
		num("version", v.Version),
		{k: "advertInterval", v: fmtDur(v.AdvertInterval)},
	}
	nodes := make([]string, 0, len(v.Priorities))
	for n := range v.Priorities {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		f = append(f, num("priority."+n, int(v.Priorities[n])))
	}
	auth := "" // never the password: where it comes from
	switch {
	case v.AuthFrom != "":
		auth = "pass (password: " + v.AuthFrom + ")"
	case v.AuthPass != "":
		auth = "pass (password set)"
	}
	f = append(f,
		flag("preempt", v.Preempt),
		kv{k: "preemptDelay", v: fmtDur(v.PreemptDelay)},
		kv{k: "auth", v: auth},
		secretKV("auth.password", v.AuthPass),
		flag("unicastPeers", v.Unicast),
		list("vips", v.VIPs, netip.Prefix.String),
		flag("track.proxy", v.TrackProxy),
		list("track.interfaces", v.TrackInterfaces, func(s string) string { return s }),
		num("garp.repeat", v.GARP.Repeat),
		kv{k: "garp.delay", v: fmtDur(v.GARP.Delay)},
		kv{k: "garp.refresh", v: fmtDur(v.GARP.Refresh)},
	)
	return f
}

func vmFields(v infra.VM) []kv {
	f := []kv{
		num("vmid", v.VMID),
		{k: "node", v: v.Node},
		{k: "clone", v: v.Clone},
		{k: "description", v: v.Description},
		{k: "cpu", v: v.CPU},
		num("cores", v.Cores),
		num("memory", v.Memory),
		flag("onBoot", v.OnBoot),
		flag("agent", v.Agent),
		{k: "disk.bus", v: v.Disk.Bus},
		{k: "disk.storage", v: v.Disk.Storage},
		{k: "disk.size", v: sizeStr(v.Disk.Size)},
		{k: "disk.format", v: v.Disk.Format},
	}
	for i, n := range v.Network {
		p := fmt.Sprintf("network[%d].", i)
		vlan := ""
		if n.VLAN != 0 {
			vlan = itoa(n.VLAN)
		}
		f = append(f, kv{k: p + "model", v: n.Model}, kv{k: p + "bridge", v: n.Bridge}, kv{k: p + "vlan", v: vlan})
	}
	ci := v.CloudInit
	f = append(f,
		kv{k: "cloudInit.user", v: ci.User},
		kv{k: "cloudInit.ipConfig", v: ci.IPConfig.String()},
		kv{k: "cloudInit.nameserver", v: ci.Nameserver},
		kv{k: "cloudInit.searchDomain", v: ci.SearchDomain},
		list("cloudInit.sshKeys", ci.SSHKeys, shortKey),
		kv{k: "serial", v: v.Serial},
		kv{k: "vga", v: v.VGA},
	)
	if v.HA != nil {
		f = append(f, kv{k: "ha.group", v: v.HA.Group}, kv{k: "ha.state", v: v.HA.State})
	}
	f = append(f, list("ignoreChanges", v.IgnoreChanges, func(s string) string { return s }))
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
	f := []kv{num("asn", int(b.ASN))}
	for _, n := range slices.Sorted(maps.Keys(b.RouterID)) {
		f = append(f, kv{k: "routerID." + n, v: fmtAddr(b.RouterID[n])})
	}
	return f
}

// peerItem is a BGP peer with where its password comes from when the
// repository names it (Desired.BGPPasswordFrom).
type peerItem struct {
	bgp.Peer
	PasswordFrom string
}

func peersOf(d *Desired) []peerItem {
	out := make([]peerItem, len(d.BGP.Peers))
	for i, p := range d.BGP.Peers {
		out[i] = peerItem{p, d.BGPPasswordFrom[p.Address]}
	}
	return out
}

func peerFields(p peerItem) []kv {
	pw := "" // never the password: where it comes from
	switch {
	case p.PasswordFrom != "":
		pw = p.PasswordFrom
	case p.Password != "":
		pw = "(set)"
	}
	return []kv{
		num("asn", int(p.ASN)),
		{k: "holdTime", v: fmtDur(p.HoldTime)},
		{k: "restartTime", v: fmtDur(p.RestartTime)},
		num("port", int(p.Port)),
		{k: "password", v: pw},
		secretKV("password", p.Password),
		flag("bfd", p.BFD),
	}
}

func announceFields(a bgp.Announcement) []kv {
	f := []kv{
		flag("track.proxy", a.TrackProxy),
		list("communities", a.Communities, bgp.Community.String),
	}
	for _, n := range slices.Sorted(maps.Keys(a.MED)) {
		f = append(f, num("med."+n, int(a.MED[n])))
	}
	return f
}
