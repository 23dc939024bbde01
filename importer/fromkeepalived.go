package importer

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gitedge/gitedge/importer/keepalived"
	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/secrets"
)

// NodeConfig is one node's keepalived configuration.
type nodeKeepalived struct {
	node string
	cfg  *keepalived.Config
}

// proxyCheck matches the usual ways a vrrp_script checks that HAProxy
// runs: pgrep, pidof, killall -0, systemctl is-active, a stats socket.
var proxyCheck = regexp.MustCompile(`(^|/|\s)(pgrep|pidof)\s+(-\S+\s+)*haproxy\b|killall\s+-0\s+haproxy\b|systemctl\s+(-q\s+|--quiet\s+)?is-active\s+(-q\s+|--quiet\s+)?haproxy\b|\bhaproxy\.sock\b|\bhaproxy\b.*\bstats\b`)

// keepalivedDefaults are keepalived's values for unset directives.
const (
	kaVersion  = 2
	kaPriority = 100
	kaAdvert   = time.Second
)

// passwords decides how the auth passwords land in the repository: as
// they are (the report says they are in git), or, with a secret name
// (--secret-password), as {secret: NAME} with the report saying where the
// value goes on the nodes. Instances sharing one name must share the
// password.
type passwords struct {
	name  string                                 // "" writes the passwords as they are
	given map[string]struct{ pass, inst string } // secret name -> first use
}

const instancePlaceholder = "{instance}"

func (pw *passwords) set(in *instance, pass string, at report.Pos, rep *report.List, errs *report.Errors) {
	where := "vrrp_instance " + in.name
	if pw.name == "" {
		in.auth = &auth{typ: "pass", password: pass}
		rep.Add(at, report.Note, where, "auth_pass", "written into edge.yaml as is: the password is in git (--secret-password NAME writes a reference to a file on the nodes instead)")
		return
	}
	name := strings.ReplaceAll(pw.name, instancePlaceholder, in.name)
	if err := (secrets.Value{Secret: name}).Check(); err != nil {
		errs.Add(at, "%s: --secret-password %s: %v", where, pw.name, err)
		return
	}
	if prev, ok := pw.given[name]; ok && prev.pass != pass {
		errs.Add(at, "%s: --secret-password %s: vrrp_instance %s has another password under the same name: put %s in the name (as vrrp-%s)", where, pw.name, prev.inst, instancePlaceholder, instancePlaceholder)
		return
	} else if !ok {
		pw.given[name] = struct{ pass, inst string }{pass, in.name}
	}
	in.auth = &auth{typ: "pass", secret: name}
	rep.Add(at, report.Note, where, "auth_pass", "written as {secret: %s}: on every node, put this auth_pass into %s/%s (chown root:gitedge, chmod 0640), or name another file in the node config's secrets.files; or encrypt it into the repository with gitedge secret encrypt",
		name, secrets.DefaultDir, name)
}

// importKeepalived merges the nodes' configurations into failover
// instances and the node list.
func importKeepalived(nodes []nodeKeepalived, out *repo, rep *report.List, errs *report.Errors, secretName string) {
	pw := &passwords{name: secretName, given: map[string]struct{ pass, inst string }{}}
	// Lines outside instances.
	for _, n := range nodes {
		for _, b := range n.cfg.Other {
			kaOther(b, rep)
		}
		for _, s := range slices.Sorted(maps.Keys(n.cfg.Scripts)) {
			sc := n.cfg.Scripts[s]
			for _, o := range sc.Other {
				sev := report.Note
				why := "gitedge watches its own listeners instead of running a script"
				if o.Keyword() != "fall" && o.Keyword() != "rise" && o.Keyword() != "timeout" && o.Keyword() != "user" && o.Keyword() != "init_fail" {
					sev, why = report.Dropped, "unknown vrrp_script option: not interpreted"
				}
				rep.Add(o.Pos, sev, "vrrp_script "+sc.Name, o.String(), "%s", why)
			}
			if sc.Interval > 0 {
				rep.Add(sc.Lines("interval"), report.Note, "vrrp_script "+sc.Name, "interval", "gitedge watches its listeners continuously instead of running a script every %s", fmtDuration(sc.Interval))
			}
		}
	}
	// Instances by name, in the first node's order.
	var names []string
	for _, n := range nodes {
		for _, in := range n.cfg.Instances {
			if !slices.Contains(names, in.Name) {
				names = append(names, in.Name)
			}
		}
	}
	addrs := map[string]netip.Addr{}
	addrFrom := map[string]report.Pos{}
	for _, name := range names {
		var per []*keepalived.Instance
		var on []nodeKeepalived
		for _, n := range nodes {
			for _, in := range n.cfg.Instances {
				if in.Name == name {
					per = append(per, in)
					on = append(on, n)
				}
			}
		}
		if len(per) != len(nodes) {
			var missing []string
			for _, n := range nodes {
				if !slices.ContainsFunc(on, func(o nodeKeepalived) bool { return o.node == n.node }) {
					missing = append(missing, n.node)
				}
			}
			errs.Add(per[0].Pos, "vrrp_instance %s is not in the configuration of %s: gitedge runs every failover instance on every node in spec.nodes; add it there or import without that node", name, strings.Join(missing, ", "))
			continue
		}
		first, fn := per[0], on[0]
		where := "vrrp_instance " + name
		in := &instance{name: name, iface: first.Interface, vrid: first.VRID, preempt: !first.NoPreempt}
		// Version and advert interval.
		ver := func(k *keepalived.Instance, c *keepalived.Config) int {
			switch {
			case k.Version != 0:
				return k.Version
			case c.Version != 0:
				return c.Version
			}
			return kaVersion
		}
		in.version = ver(first, fn.cfg)
		adv := first.AdvertInt
		if adv == 0 {
			adv = kaAdvert
		}
		if in.version == 2 && adv%time.Second != 0 {
			rounded := max(time.Second, adv.Round(time.Second))
			rep.Add(first.Lines["advert_int"], report.Changed, where, "advert_int", "VRRP v2 counts whole seconds: %s becomes %s", adv, rounded)
			adv = rounded
		}
		if in.version == 3 && adv%(10*time.Millisecond) != 0 {
			rounded := max(10*time.Millisecond, adv.Round(10*time.Millisecond))
			rep.Add(first.Lines["advert_int"], report.Changed, where, "advert_int", "VRRP v3 counts centiseconds: %s becomes %s", adv, rounded)
			adv = rounded
		}
		in.advert = fmtDuration(adv)
		if first.PreemptDelay > 0 {
			in.preemptDelay = fmtDuration(first.PreemptDelay)
			if first.NoPreempt {
				rep.Add(first.Lines["preempt_delay"], report.Note, where, "preempt_delay", "no effect with nopreempt")
				in.preemptDelay = ""
			}
		}
		// Every node must describe the same router.
		for i, k := range per[1:] {
			n := on[i+1]
			diff := func(field string, a, b any) {
				if fmt.Sprint(a) != fmt.Sprint(b) {
					rep.Add(k.Pos, report.Changed, where, field, "%v on %s but %v on %s: gitedge has one value for every node, %v", b, n.node, a, fn.node, a)
				}
			}
			if k.VRID != first.VRID {
				errs.Add(k.Pos, "%s: virtual_router_id %d on %s but %d on %s: these are different VRRP routers, not one instance", where, k.VRID, n.node, first.VRID, fn.node)
			}
			diff("interface", first.Interface, k.Interface)
			diff("vrrp_version", in.version, ver(k, n.cfg))
			diff("advert_int", first.AdvertInt, k.AdvertInt)
			diff("nopreempt", first.NoPreempt, k.NoPreempt)
			diff("preempt_delay", first.PreemptDelay, k.PreemptDelay)
			diff("auth_type", first.AuthType, k.AuthType)
			if k.AuthPass != first.AuthPass {
				// Where each node sets it, never the values: the report
				// is pasted into pull requests and tickets.
				rep.Add(k.Lines["authentication"], report.Changed, where, "auth_pass", "%s (%s) has another password than %s (%s): gitedge has one password for every node, %s's (the values are not shown)",
					n.node, k.Lines["authentication"], fn.node, first.Lines["authentication"], fn.node)
			}
			diff("virtual_ipaddress", vipList(first), vipList(k))
			diff("track_script", trackList(first.TrackScripts), trackList(k.TrackScripts))
			diff("track_interface", trackList(first.TrackInterfaces), trackList(k.TrackInterfaces))
		}
		// Priorities per node.
		var prioFrom []string
		for i, k := range per {
			p := k.Priority
			if p == 0 {
				p = kaPriority
			}
			in.priority = append(in.priority, nodePriority{on[i].node, p})
			if at, ok := k.Lines["priority"]; ok {
				prioFrom = append(prioFrom, fmt.Sprintf("%s (%s)", at, on[i].node))
			} else {
				prioFrom = append(prioFrom, fmt.Sprintf("%s: keepalived's default", on[i].node))
			}
			if k.State != "" {
				rep.Add(k.Lines["state"], report.Note, where, "state "+k.State, "gitedge starts every instance as BACKUP and lets priorities elect the master (RFC 3768 §6.4.1)")
			}
		}
		in.priorityComment = strings.Join(prioFrom, ", ")
		// Authentication.
		switch {
		case first.AuthType == "":
		case in.version == 3:
			rep.Add(first.Lines["authentication"], report.Note, where, "authentication", "VRRP v3 has no authentication (keepalived ignored it): not carried over")
		case first.AuthType == "AH":
			rep.Add(first.Lines["authentication"], report.Dropped, where, "auth_type AH", "gitedge supports auth_type PASS only")
		default:
			pass := first.AuthPass
			if len(pass) > 8 {
				rep.Add(first.Lines["authentication"], report.Changed, where, "auth_pass", "keepalived used only the first 8 characters: so does the import")
				pass = pass[:8]
			}
			pw.set(in, pass, first.Lines["authentication"], rep, errs)
		}
		// VIPs.
		for _, v := range first.VIPs {
			what := v.Prefix.String()
			if !v.HasLength {
				rep.Add(v.Pos, report.Note, where, v.Prefix.Addr().String(), "no prefix length: keepalived's default /%d", v.Prefix.Bits())
			}
			if v.Dev != "" && v.Dev != first.Interface {
				rep.Add(v.Pos, report.Changed, where, what+" dev "+v.Dev, "gitedge adds every VIP of an instance on the instance's interface, %s", first.Interface)
			}
			if v.Label != "" {
				rep.Add(v.Pos, report.Note, where, "label "+v.Label, "gitedge does not label addresses")
			}
			if len(v.Other) > 0 {
				rep.Add(v.Pos, report.Dropped, where, strings.Join(v.Other, " "), "address option: not carried over")
			}
			if v.Excluded {
				rep.Add(v.Pos, report.Changed, where, "virtual_ipaddress_excluded "+what, "gitedge announces every VIP in its advertisements")
			}
			in.vips = append(in.vips, v.Prefix.String())
		}
		// Tracking.
		for _, t := range first.TrackScripts {
			sc := fn.cfg.Scripts[t.Name]
			if sc == nil {
				continue
			}
			if !proxyCheck.MatchString(sc.Script) {
				rep.Add(t.Pos, report.Dropped, where, "track_script "+t.Name, "script %q: gitedge tracks only its own proxy listeners (a HAProxy process check becomes track.proxy) and interfaces", sc.Script)
				continue
			}
			in.trackProxy = true
			rep.Add(t.Pos, report.Note, where, "track_script "+t.Name, "%q checks that HAProxy runs: gitedge tracks the health of its own listeners (track.proxy)", sc.Script)
		}
		// A weight changes the priority instead of leaving mastership, on
		// whichever node sets it.
		for i, k := range per {
			for _, t := range k.TrackScripts {
				sc := on[i].cfg.Scripts[t.Name]
				weight := t.Weight
				if weight == nil && sc != nil {
					weight = sc.Weight
				}
				if weight != nil && *weight != 0 && sc != nil && proxyCheck.MatchString(sc.Script) {
					rep.Add(t.Pos, report.Changed, where, "track_script "+t.Name+" weight", "keepalived on %s changed the priority by %d while the check failed; gitedge gives up mastership instead", on[i].node, *weight)
				}
			}
		}
		for _, t := range first.TrackInterfaces {
			if t.Name != first.Interface && !slices.Contains(in.trackIfaces, t.Name) {
				in.trackIfaces = append(in.trackIfaces, t.Name)
			}
			if t.Weight != nil && *t.Weight != 0 {
				rep.Add(t.Pos, report.Changed, where, "track_interface "+t.Name+" weight", "gitedge puts the instance in fault while a tracked interface is down instead of changing its priority")
			}
		}
		// GARP.
		if first.GARPRepeat > 0 {
			r := first.GARPRepeat
			in.garpRepeat = &r
		}
		if _, ok := first.Lines["garp_master_delay"]; ok {
			in.garpDelay = fmtDuration(first.GARPDelay)
		}
		if _, ok := first.Lines["garp_master_refresh"]; ok {
			in.garpRefresh = fmtDuration(first.GARPRefresh)
		}
		// Unicast: node addresses and peers.
		unicast := 0
		for i, k := range per {
			node := on[i].node
			if k.UnicastSrc.IsValid() {
				if a, ok := addrs[node]; ok && a != k.UnicastSrc {
					rep.Add(k.Lines["unicast_src_ip"], report.Changed, where, "unicast_src_ip", "%s on %s, but %s at %s: gitedge has one address per node, %s", k.UnicastSrc, node, a, addrFrom[node], a)
				} else if !ok {
					addrs[node], addrFrom[node] = k.UnicastSrc, k.Lines["unicast_src_ip"]
				}
			}
			if len(k.UnicastPeers) > 0 {
				unicast++
			}
		}
		switch {
		case unicast == len(per):
			in.unicast = true
			for i, k := range per {
				var want []netip.Addr
				for j := range per {
					if a, ok := addrs[on[j].node]; ok && j != i {
						want = append(want, a)
					}
				}
				got := slices.Clone(k.UnicastPeers)
				slices.SortFunc(got, netip.Addr.Compare)
				slices.SortFunc(want, netip.Addr.Compare)
				if !slices.Equal(got, want) && len(want) == len(per)-1 {
					rep.Add(k.Lines["unicast_peer"], report.Changed, where, "unicast_peer", "%s sent to %v; gitedge sends to the other nodes' addresses %v", on[i].node, got, want)
				}
			}
		case unicast > 0:
			rep.Add(first.Pos, report.Changed, where, "unicast_peer", "only some nodes use unicast: gitedge uses multicast for all of them")
		}
		for i, k := range per {
			for _, o := range k.Other {
				kaInstanceOther(o, where, on[i].node, rep)
			}
		}
		for i, k := range per {
			in.from = append(in.from, fmt.Sprintf("%s (%s): %s", k.Pos, on[i].node, where))
		}
		out.edge.failover = append(out.edge.failover, in)
	}
	for _, n := range nodes {
		nd := &node{name: n.node}
		if a, ok := addrs[n.node]; ok {
			nd.address = a.String()
			nd.from = fmt.Sprintf("unicast_src_ip, %s", addrFrom[n.node])
		}
		out.edge.nodes = append(out.edge.nodes, nd)
	}
}

func vipList(k *keepalived.Instance) string {
	var s []string
	for _, v := range k.VIPs {
		s = append(s, v.Prefix.String())
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

func trackList(ts []keepalived.Track) string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Name)
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// kaOther reports a top-level block or global_defs line.
func kaOther(b *keepalived.Block, rep *report.List) {
	switch b.Keyword() {
	case "router_id", "script_user", "enable_script_security", "notification_email", "notification_email_from",
		"smtp_server", "smtp_connect_timeout", "lvs_id", "max_auto_priority", "vrrp_garp_master_refresh_repeat",
		"vrrp_skip_check_adv_addr", "vrrp_strict", "vrrp_iptables", "vrrp_no_swap", "checker_no_swap",
		"dynamic_interfaces", "vrrp_check_unicast_src", "enable_traps", "process_names", "process_name",
		"vrrp_startup_delay", "vrrp_priority", "checker_priority", "vrrp_rt_priority", "vrrp_garp_interval",
		"vrrp_gna_interval", "vrrp_lower_prio_no_advert", "vrrp_higher_prio_send_advert", "lvs_flush", "nftables":
		rep.Add(b.Pos, report.Note, "global_defs", b.String(), "%s", whyProcess)
	case "vrrp_sync_group":
		rep.Add(b.Pos, report.Dropped, "", b.String(), "gitedge has no sync groups: each instance fails over on its own (track the same things to keep them together)")
	case "virtual_server", "virtual_server_group", "real_server":
		rep.Add(b.Pos, report.Dropped, "", b.String(), "LVS virtual servers: gitedge's dataplane proxies instead; declare the service as a listener and Backend")
	case "static_ipaddress", "static_routes", "static_rules":
		rep.Add(b.Pos, report.Dropped, "", b.String(), "static addresses and routes are the system's network configuration, not gitedge's")
	default:
		rep.Add(b.Pos, report.Dropped, "", b.String(), "unknown keyword: not interpreted")
	}
}

// kaInstanceOther reports an instance line that is not mapped.
func kaInstanceOther(b *keepalived.Block, where, node string, rep *report.List) {
	what := b.String()
	switch kw := b.Keyword(); {
	case strings.HasPrefix(kw, "notify") || kw == "smtp_alert":
		rep.Add(b.Pos, report.Dropped, where, what, "gitedge runs no scripts on transitions: watch /status, the metrics or the node config's notify")
	case kw == "use_vmac" || kw == "vmac_xmit_base":
		rep.Add(b.Pos, report.Dropped, where, what, "gitedge uses the interface's own MAC address")
	case kw == "dont_track_primary":
		rep.Add(b.Pos, report.Changed, where, what, "gitedge always tracks the instance's interface")
	case kw == "mcast_src_ip":
		rep.Add(b.Pos, report.Dropped, where, what, "gitedge sends from the interface's primary address")
	case kw == "accept" || kw == "no_accept" || kw == "native_ipv6" || kw == "debug" || kw == "strict_mode" ||
		kw == "skip_check_adv_addr" || strings.HasPrefix(kw, "garp_lower_prio") || kw == "lvs_sync_daemon_interface" || kw == "check_unicast_src":
		rep.Add(b.Pos, report.Note, where, what, "no effect on failover in gitedge")
	default:
		rep.Add(b.Pos, report.Dropped, where, what, "unknown keyword (on %s): not interpreted", node)
	}
}
