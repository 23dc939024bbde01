package reconcile

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/infra"
)

// Review is a plan as a pull request shows it (`gitedge plan --output
// markdown|json`): which commits are compared, whether the head is valid,
// the changes, and their consequences a reviewer cannot see in the YAML.
type Review struct {
	Base  Ref  `json:"base"`
	Head  Ref  `json:"head"`
	Valid bool `json:"valid"`
	// Errors are the head's problems when it is not valid; nothing else
	// is then planned.
	Errors       []string      `json:"errors"`
	Changes      []ItemChange  `json:"changes"`
	Consequences []Consequence `json:"consequences"`
}

// Ref names one side of a review: what the user gave (a directory, a
// branch) and the commit it resolved to, when it is one.
type Ref struct {
	Name   string `json:"name"`
	Commit string `json:"commit,omitempty"`
}

// Consequence is an effect of a change that its YAML does not show: a VIP
// moving to another node, a host falling to a default backend, a VM change
// that waits for a restart, a backend left without servers.
type Consequence struct {
	About   string `json:"about"` // the item it follows from: `VRRPInstance "VI_1"`
	Message string `json:"message"`
}

// NewReview plans head against base (nil: nothing) and works out the
// consequences. The caller fills Base and Head.
func NewReview(base, head *Desired) Review {
	if base == nil {
		base = &Desired{}
	}
	p := Diff(base, head)
	r := Review{Valid: true, Errors: []string{}, Changes: p.Changes, Consequences: Consequences(base, head)}
	if r.Changes == nil {
		r.Changes = []ItemChange{}
	}
	return r
}

// Plan is the review's changes as a Plan.
func (r Review) Plan() Plan { return Plan{Changes: r.Changes} }

// Consequences lists what changing base into head does that the changed
// YAML does not say, in a stable order.
func Consequences(base, head *Desired) []Consequence {
	out := []Consequence{}
	out = append(out, vipConsequences(base, head)...)
	out = append(out, listenerConsequences(base, head)...)
	out = append(out, hostConsequences(base, head)...)
	out = append(out, backendConsequences(base, head)...)
	out = append(out, vmConsequences(base, head)...)
	out = append(out, infraConsequences(base, head)...)
	return out
}

// infraConsequences: who applies VM changes, and prune turned on.
func infraConsequences(base, head *Desired) []Consequence {
	var out []Consequence
	about := fmt.Sprintf("Edge %q", head.Edge.Name)
	if b, h := base.Edge.InfraLeader, head.Edge.InfraLeader; b != h && len(head.Infra.VMs) > 0 {
		who := func(l Leader) string {
			switch {
			case l.VRRP != "":
				return "the VRRP master of " + l.VRRP
			case l.Node != "":
				return "node " + l.Node
			}
			return "every node that runs this repository with a proxmox section"
		}
		out = append(out, Consequence{about, fmt.Sprintf("VM changes are now applied by %s instead of %s", who(h), who(b))})
	}
	if !base.Infra.Prune && head.Infra.Prune {
		msg := "infra.prune turns on: every VM tagged gitedge that the repository no longer declares is deleted by the infra leader, including VMs kept until now, except a VM with Proxmox protection set (left alone, Protected)"
		if r := refusals(base, head); len(r) > 0 {
			msg += fmt.Sprintf("; nothing is deleted while %s is refused (PruneHeld)", strings.Join(r, ", "))
		}
		out = append(out, Consequence{about, msg})
	}
	return out
}

// master is the node VRRP elects for an instance: the highest priority,
// then the highest address (RFC 5798 6.4.3); "" when no node has one.
func master(v VRRPInstance, nodes []Node) string {
	addr := map[string]netip.Addr{}
	for _, n := range nodes {
		addr[n.Name] = n.Address
	}
	best := ""
	for _, n := range slices.Sorted(maps.Keys(v.Priorities)) {
		p := v.Priorities[n]
		if p == 0 {
			continue
		}
		if best == "" || p > v.Priorities[best] || (p == v.Priorities[best] && addr[n].Compare(addr[best]) > 0) {
			best = n
		}
	}
	return best
}

func vipConsequences(base, head *Desired) []Consequence {
	var out []Consequence
	old := map[string]VRRPInstance{}
	for _, v := range base.Edge.Failover {
		old[v.Name] = v
	}
	seen := map[string]bool{}
	for _, h := range head.Edge.Failover {
		seen[h.Name] = true
		about := fmt.Sprintf("VRRPInstance %q", h.Name)
		to := master(h, head.Edge.Nodes)
		b, ok := old[h.Name]
		if !ok {
			if to != "" {
				out = append(out, Consequence{about, fmt.Sprintf("VIPs %s will be held by %s (highest priority)", prefixes(h.VIPs), to)})
			}
			continue
		}
		from := master(b, base.Edge.Nodes)
		kept := slices.DeleteFunc(slices.Clone(h.VIPs), func(p netip.Prefix) bool { return !slices.Contains(b.VIPs, p) })
		if from != to && from != "" && to != "" && len(kept) > 0 {
			var why []string
			for _, n := range slices.Sorted(maps.Keys(h.Priorities)) {
				if b.Priorities[n] != h.Priorities[n] {
					why = append(why, fmt.Sprintf("%s %d → %d", n, b.Priorities[n], h.Priorities[n]))
				}
			}
			msg := fmt.Sprintf("this change moves VIP %s of VRRP instance %s from %s to %s", prefixes(kept), h.Name, from, to)
			if len(why) > 0 {
				msg = fmt.Sprintf("this priority change (%s) moves VIP %s of VRRP instance %s from %s to %s", strings.Join(why, ", "), prefixes(kept), h.Name, from, to)
			}
			if !h.Preempt {
				msg += "; preempt is off, so it moves only when " + from + " gives up mastership"
			}
			out = append(out, Consequence{about, msg})
		}
		for _, p := range h.VIPs {
			if !slices.Contains(b.VIPs, p) && to != "" {
				out = append(out, Consequence{about, fmt.Sprintf("VIP %s will be held by %s", p, to)})
			}
		}
		for _, p := range b.VIPs {
			if !slices.Contains(h.VIPs, p) && from != "" {
				out = append(out, Consequence{about, fmt.Sprintf("VIP %s is released by %s: nothing answers on it any more", p, from)})
			}
		}
	}
	for _, b := range base.Edge.Failover {
		if !seen[b.Name] && len(b.VIPs) > 0 {
			out = append(out, Consequence{fmt.Sprintf("VRRPInstance %q", b.Name),
				fmt.Sprintf("VIPs %s are released by %s: nothing answers on them any more", prefixes(b.VIPs), cmp.Or(master(b, base.Edge.Nodes), "their master"))})
		}
	}
	return out
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// listenerConsequences: a listener removed or moved to another address
// stops accepting there; its connections drain first.
func listenerConsequences(base, head *Desired) []Consequence {
	now := map[string]dataplane.Listener{}
	for _, l := range head.Dataplane.Listeners {
		now[l.Name] = l
	}
	var out []Consequence
	for _, b := range base.Dataplane.Listeners {
		about := fmt.Sprintf("Listener %q", b.Name)
		drain := "its connections in flight drain"
		if b.DrainTimeout > 0 {
			drain += " (up to " + fmtDur(b.DrainTimeout) + ")"
		}
		h, ok := now[b.Name]
		switch {
		case !ok:
			out = append(out, Consequence{about, fmt.Sprintf("listener %s stops accepting on %s: %s, then the port closes", b.Name, b.Bind, drain)})
		case h.Bind != b.Bind:
			out = append(out, Consequence{about, fmt.Sprintf("listener %s moves from %s to %s: %s stops accepting, %s, then closes", b.Name, b.Bind, h.Bind, b.Bind, drain)})
		case h.Mode != b.Mode:
			out = append(out, Consequence{about, fmt.Sprintf("listener %s on %s switches from %s to %s routing: clients speaking %s there are no longer served", b.Name, b.Bind, b.Mode, h.Mode, b.Mode)})
		}
	}
	return out
}

// routeTarget is where a host goes in one mode.
type routeTarget struct{ route, backend string }

// routesByHost maps each host pattern to its route and backend for mode.
func routesByHost(d *Desired, mode dataplane.Mode) map[string]routeTarget {
	m := map[string]routeTarget{}
	for _, r := range d.Dataplane.Routes {
		b := r.HTTPBackend
		if mode == dataplane.ModeTLS {
			b = r.TLSBackend
		}
		if b == "" {
			continue
		}
		for _, h := range r.Hosts {
			m[strings.ToLower(h)] = routeTarget{r.Name, b}
		}
	}
	return m
}

// hostConsequences: a host that loses its own route falls to a wildcard
// or to the listeners' defaultBackend, which the YAML of the change does
// not say.
func hostConsequences(base, head *Desired) []Consequence {
	var out []Consequence
	for _, mode := range []dataplane.Mode{dataplane.ModeHTTP, dataplane.ModeTLS} {
		var listeners []dataplane.Listener
		for _, l := range head.Dataplane.Listeners {
			if l.Mode == mode {
				listeners = append(listeners, l)
			}
		}
		if len(listeners) == 0 {
			continue // no listener of the mode: the host is not served either way
		}
		old, now := routesByHost(base, mode), routesByHost(head, mode)
		for _, h := range slices.Sorted(maps.Keys(old)) {
			if _, ok := now[h]; ok {
				continue
			}
			about := fmt.Sprintf("Route %q", old[h].route)
			what := string(mode) + " host " + h
			if strings.HasPrefix(h, "*.") {
				what = string(mode) + " hosts under " + h
			}
			if w, ok := wildcardFor(h, now); ok {
				if now[w].backend == old[h].backend {
					continue // same backend by another route: nothing changes for clients
				}
				out = append(out, Consequence{about, fmt.Sprintf("%s now matches %s (Route %q) and goes to backend %s instead of %s",
					what, w, now[w].route, now[w].backend, old[h].backend)})
				continue
			}
			var defs []string
			same := true
			for _, l := range listeners {
				same = same && l.DefaultBackend == old[h].backend
				if l.DefaultBackend == "" {
					defs = append(defs, "no backend (listener "+l.Name+" has no defaultBackend: the request is refused)")
				} else {
					defs = append(defs, "defaultBackend "+l.DefaultBackend+" (listener "+l.Name+")")
				}
			}
			if same {
				continue // every listener's default is the backend it had
			}
			out = append(out, Consequence{about, fmt.Sprintf("%s now falls to %s instead of backend %s", what, strings.Join(defs, ", "), old[h].backend)})
		}
	}
	return out
}

// wildcardFor is the longest "*.suffix" pattern in routes matching host.
func wildcardFor(host string, routes map[string]routeTarget) (string, bool) {
	name := strings.TrimPrefix(host, "*.")
	for {
		i := strings.IndexByte(name, '.')
		if i < 0 {
			return "", false
		}
		name = name[i+1:]
		if _, ok := routes["*."+name]; ok {
			return "*." + name, true
		}
	}
}

// backendConsequences: a backend left with no server that takes
// connections (none, or every weight 0) while routes or listeners still
// send to it.
func backendConsequences(base, head *Desired) []Consequence {
	serving := func(b dataplane.Backend) int {
		n := 0
		for _, s := range b.Servers {
			if s.Weight > 0 {
				n++
			}
		}
		return n
	}
	old := map[string]dataplane.Backend{}
	for _, b := range base.Dataplane.Backends {
		old[b.Name] = b
	}
	var out []Consequence
	for _, b := range head.Dataplane.Backends {
		o, ok := old[b.Name]
		if !ok || serving(o) == 0 || serving(b) > 0 {
			continue
		}
		var users []string
		for _, r := range head.Dataplane.Routes {
			if r.HTTPBackend == b.Name || r.TLSBackend == b.Name {
				users = append(users, "Route "+r.Name)
			}
		}
		for _, l := range head.Dataplane.Listeners {
			if l.DefaultBackend == b.Name {
				users = append(users, "listener "+l.Name)
			}
		}
		msg := fmt.Sprintf("backend %s loses its last server taking connections (none left with a weight above 0)", b.Name)
		if len(users) > 0 {
			msg += ": " + strings.Join(users, ", ") + " will have nowhere to send connections"
		}
		out = append(out, Consequence{fmt.Sprintf("Backend %q", b.Name), msg})
	}
	return out
}

// vmConsequences: when a VM change takes effect (infra's own
// classification), a disk that cannot shrink, a rename, a VMID change
// that makes a new VM, and what happens to a VM that leaves the
// repository. VMs are matched by VMID, as infra identifies them in
// Proxmox: a new name on the same VMID is the same VM renamed.
func vmConsequences(base, head *Desired) []Consequence {
	old, now := vmsByID(base), vmsByID(head)
	oldByName := map[string]infra.VM{}
	for _, v := range base.Infra.VMs {
		oldByName[v.Name] = v
	}
	nowByName := map[string]bool{}
	for _, v := range head.Infra.VMs {
		nowByName[v.Name] = true
	}
	refused := refusals(base, head)
	var out []Consequence
	told := map[int]bool{} // base VMIDs whose fate a VMID change already tells
	for _, v := range head.Infra.VMs {
		about := fmt.Sprintf("VirtualMachine %q", v.Name)
		o, ok := old[v.VMID]
		if !ok {
			p, had := oldByName[v.Name]
			if !had {
				continue
			}
			if n, stays := now[p.VMID]; stays {
				out = append(out, Consequence{about, fmt.Sprintf("VM %s: VMID %d → %d: a new VM is cloned at %d; VM %d stays, renamed %s",
					v.Name, p.VMID, v.VMID, v.VMID, p.VMID, n.Name)})
				continue
			}
			told[p.VMID] = true
			out = append(out, Consequence{about, fmt.Sprintf("VM %s: VMID %d → %d: a new VM is cloned at %d, and the VM at %d %s",
				v.Name, p.VMID, v.VMID, v.VMID, p.VMID, leftVM(head.Infra.Prune, refused))})
			continue
		}
		for _, c := range infra.Preview(o, v) {
			when := "pending until the VM's next start"
			if c.Live {
				when = "applied live"
			}
			switch c.Key {
			case "tags":
				continue
			case "name":
				if c.Live {
					when = "updated live"
				}
				msg := fmt.Sprintf("VM %d: renamed %s → %s (config name %s): the same VM, neither deleted nor cloned", v.VMID, o.Name, v.Name, when)
				if _, taken := oldByName[v.Name]; !taken && !nowByName[o.Name] {
					// The changes compare documents by name.
					msg += fmt.Sprintf(", though the changes list %s as removed and %s as added", o.Name, v.Name)
				}
				out = append(out, Consequence{about, msg})
				continue
			}
			unit := ""
			if c.Key == "memory" {
				unit = " MiB"
			}
			out = append(out, Consequence{about, fmt.Sprintf("VM %s: %s %s → %s%s (%s)", v.Name, c.Key, cmp.Or(c.Old, "(none)"), cmp.Or(c.New, "(none)"), unit, when)})
		}
		switch infra.DiskPreview(o, v) {
		case infra.DiskGrow:
			out = append(out, Consequence{about, fmt.Sprintf("VM %s: disk %s → %s (grown online; the guest grows its filesystem)", v.Name, o.Disk.Size, v.Disk.Size)})
		case infra.DiskShrink:
			out = append(out, Consequence{about, fmt.Sprintf("VM %s: disk %s → %s is refused: disks only grow, so this VM's apply will fail", v.Name, o.Disk.Size, v.Disk.Size)})
		}
	}
	for _, o := range base.Infra.VMs {
		if _, stays := now[o.VMID]; !stays && !told[o.VMID] {
			out = append(out, Consequence{fmt.Sprintf("VirtualMachine %q", o.Name), fmt.Sprintf("VM %s (VMID %d) %s", o.Name, o.VMID, leftVM(head.Infra.Prune, refused))})
		}
	}
	return out
}

func vmsByID(d *Desired) map[int]infra.VM {
	m := map[int]infra.VM{}
	for _, v := range d.Infra.VMs {
		m[v.VMID] = v
	}
	return m
}

// refusals are the changes of head that infra refuses as terminal in
// every pass until the repository fixes them. While a plan has one, infra
// deletes nothing (PruneHeld): a review must not promise the deletes.
func refusals(base, head *Desired) []string {
	old := vmsByID(base)
	var out []string
	for _, v := range head.Infra.VMs {
		if o, ok := old[v.VMID]; ok && infra.DiskPreview(o, v) == infra.DiskShrink {
			out = append(out, "the disk shrink of VM "+v.Name)
		}
	}
	return out
}

// leftVM is what happens to a VM no longer declared. Whether Proxmox
// protects it is not in the specs, so the review can only say the rule.
func leftVM(prune bool, refused []string) string {
	switch {
	case !prune:
		return "is kept but no longer managed (infra.prune is off)"
	case len(refused) > 0:
		return fmt.Sprintf("is not deleted yet: infra.prune holds every delete while %s is refused (PruneHeld); once that is fixed it is deleted unless Proxmox protection is set on it", strings.Join(refused, ", "))
	}
	return "is deleted (infra.prune is on) unless Proxmox protection is set on it: a protected VM is left alone (Protected)"
}

// WriteMarkdown renders the review as a pull-request comment.
func (r Review) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	b.WriteString("### gitedge plan\n\n")
	fmt.Fprintf(&b, "Base: %s · Head: %s\n\n", refMD(r.Base), refMD(r.Head))
	if !r.Valid {
		fmt.Fprintf(&b, "**Invalid**: %d error(s); a node refuses this commit and keeps its last good one.\n\n", len(r.Errors))
		for _, e := range r.Errors {
			fmt.Fprintf(&b, "- %s\n", code(e))
		}
		_, err := io.WriteString(w, b.String())
		return err
	}
	a, c, rm := r.Plan().Counts()
	if len(r.Changes) == 0 {
		b.WriteString("**Valid**: no changes.\n")
		_, err := io.WriteString(w, b.String())
		return err
	}
	fmt.Fprintf(&b, "**Valid**: %d to add, %d to change, %d to remove.\n", a, c, rm)
	if len(r.Consequences) > 0 {
		b.WriteString("\n#### Consequences\n\n")
		for _, c := range r.Consequences {
			fmt.Fprintf(&b, "- %s\n", mdText(c.Message))
		}
	}
	var kinds []string
	byKind := map[string][]ItemChange{}
	for _, ch := range r.Changes {
		if _, ok := byKind[ch.Kind]; !ok {
			kinds = append(kinds, ch.Kind)
		}
		byKind[ch.Kind] = append(byKind[ch.Kind], ch)
	}
	for _, k := range kinds {
		fmt.Fprintf(&b, "\n#### %s\n\n", k)
		for _, ch := range byKind[k] {
			sign := map[Action]string{Add: "added", Change: "changed", Remove: "removed"}[ch.Action]
			fmt.Fprintf(&b, "- **%s** %s\n", mdText(ch.Name), sign)
			for _, f := range ch.Fields {
				if ch.Action == Add {
					fmt.Fprintf(&b, "  - %s: %s\n", code(f.Path), code(f.New))
				} else {
					fmt.Fprintf(&b, "  - %s: %s → %s\n", code(f.Path), valueMD(f.Old), valueMD(f.New))
				}
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func refMD(r Ref) string {
	s := code(cmp.Or(r.Name, "(nothing)"))
	if r.Commit != "" && r.Commit != r.Name {
		s += " (" + code(short(r.Commit)) + ")"
	}
	return s
}

func valueMD(v string) string {
	if v == "" {
		return "_(none)_"
	}
	return code(v)
}

// code puts s in an inline code span that holds any backticks in s.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		s = " " + s + " "
	}
	return fence + strings.ReplaceAll(s, "\n", " ") + fence
}

// mdText escapes the characters Markdown would read as formatting.
func mdText(s string) string {
	r := strings.NewReplacer(`\`, `\\`, "*", `\*`, "_", `\_`, "`", "\\`", "[", `\[`, "]", `\]`, "<", "&lt;", ">", "&gt;", "|", `\|`)
	return r.Replace(s)
}
