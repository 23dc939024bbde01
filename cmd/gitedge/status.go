package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/gitedge/gitedge/bgp"
	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/forge"
	"github.com/gitedge/gitedge/gitsource/relay"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/notify"
	"github.com/gitedge/gitedge/reconcile"
)

// nodeStatus is what a node says about itself: the body of GET /status,
// what `gitedge status` prints, the status page and the demo's summary.
// The loop's status (live commit, last attempt, conditions) is inline;
// each subsystem this process runs adds its own typed status, completed
// with what the live commit declares (weights, routes, node names). Every
// key is lowerCamelCase.
type nodeStatus struct {
	reconcile.Status
	Version   string           `json:"version"`
	VRRP      []vrrpStatus     `json:"vrrp,omitempty"`      // per instance: state, priority, master
	BGP       *bgp.Status      `json:"bgp,omitempty"`       // sessions per peer, prefixes announced
	Listeners []listenerStatus `json:"listeners,omitempty"` // as the live commit declares them
	Routes    []routeStatus    `json:"routes,omitempty"`    // host names to backends, per mode
	Backends  []serverStatus   `json:"backends,omitempty"`  // per backend and server: health, weight, load
	Infra     *infraStatus     `json:"infra,omitempty"`     // the last infra pass
	Forge     *forge.Snapshot  `json:"forge,omitempty"`     // commit statuses posted
	Notify    *notify.Snapshot `json:"notify,omitempty"`    // notification sinks
	// Relay lists the peers told about a commit: the last one, whether
	// they acknowledged it, the last error.
	Relay []relay.PeerStatus `json:"relay,omitempty"`
}

// vrrpStatus is one VRRP instance, with the master named.
type vrrpStatus struct {
	failover.InstanceStatus
	// MasterNode names the master: this node while it is MASTER, else the
	// node of spec.nodes whose address is the master's; "" when unknown.
	MasterNode string `json:"masterNode,omitempty"`
}

// listenerStatus is one listener of the live commit.
type listenerStatus struct {
	Name           string `json:"name"`
	Bind           string `json:"bind"`
	Mode           string `json:"mode"`
	DefaultBackend string `json:"defaultBackend,omitempty"`
}

// routeStatus is one Route of the live commit.
type routeStatus struct {
	Name        string   `json:"name"`
	Hosts       []string `json:"hosts"`
	HTTPBackend string   `json:"httpBackend,omitempty"`
	TLSBackend  string   `json:"tlsBackend,omitempty"`
}

// serverStatus is one backend server: what the proxy sees (health, load)
// and what the live commit declares (weight, maxConn).
type serverStatus struct {
	dataplane.ServerStatus
	Weight  int `json:"weight"`            // 0: drained
	MaxConn int `json:"maxConn,omitempty"` // 0: unlimited
}

// infraStatus is the last infra pass, with the declared VMs and what the
// pass planned: changes left to make and drift found.
type infraStatus struct {
	infra.Status
	VMs []vmStatus `json:"vms,omitempty"`
	// Plan is what the last pass planned, one line per change (on a node
	// that does not lead: what the leader should do).
	Plan  []string `json:"plan,omitempty"`
	Drift []string `json:"drift,omitempty"` // keys changed by hand, as `VM 150 "lb-0": memory is 2048, declared 4096`
}

// vmStatus is one declared VM.
type vmStatus struct {
	Name   string `json:"name"`
	VMID   int    `json:"vmid"`
	Node   string `json:"node"`
	Cores  int    `json:"cores"`
	Memory int    `json:"memory"` // MiB
}

// status is the node's status now: the one place it is put together.
func (n *node) status() nodeStatus {
	s := nodeStatus{Status: n.loop.Status(), Version: version}
	live := n.loop.Live()
	if n.vrrp != nil {
		for _, in := range n.vrrp.Status() {
			s.VRRP = append(s.VRRP, vrrpStatus{InstanceStatus: in, MasterNode: masterNode(s.Node, in, live)})
		}
		vrrpCondition(&s)
	}
	if n.bgp != nil {
		// Shown once the repository declares bgp (or after it removed it).
		if st := n.bgp.Status(); st.State != "idle" || len(st.Peers) > 0 || len(st.Announcements) > 0 {
			s.BGP = &st
		}
	}
	if n.proxy != nil {
		s.Listeners, s.Routes, s.Backends = dataplaneStatus(n.proxy.Status(), live)
	}
	if n.infra != nil {
		s.Infra = infraStatusOf(n.infra, live)
	}
	if n.forge != nil {
		f := n.forge.Snapshot()
		s.Forge = &f
	}
	if n.notify != nil {
		ns := n.notify.Snapshot()
		s.Notify = &ns
	}
	if n.relay != nil {
		s.Relay = n.relay.Status()
	}
	return s
}

// vrrpCondition makes the failover condition Failed while an
// instance does not run (its restart after its interface was made again
// failed, retried meanwhile) or drops a peer's adverts because their
// configurations differ (a password rotated on one node only): the step
// applied, but the node does not take part, or the nodes cannot hear each
// other and both may be master. An apply error already there says more
// and stays; an instance that does not run comes before a mismatch.
func vrrpCondition(s *nodeStatus) {
	if c, ok := s.Conditions["failover"]; ok && (c.Status == reconcile.CondFailed || c.Status == reconcile.CondStalled) {
		return
	}
	var cond *reconcile.Condition
	for _, v := range s.VRRP {
		if v.Error != "" {
			cond = &reconcile.Condition{Status: reconcile.CondFailed, Since: v.ErrorSince, Message: fmt.Sprintf("instance %s: %s", v.Name, v.Error)}
			break
		}
		if pm := v.PeerMismatch; pm != nil && cond == nil {
			cond = &reconcile.Condition{Status: reconcile.CondFailed, Since: pm.First, Message: fmt.Sprintf("instance %s: %s", v.Name, pm.Message)}
		}
	}
	if cond == nil {
		return
	}
	if s.Conditions == nil {
		s.Conditions = map[string]reconcile.Condition{}
	}
	s.Conditions["failover"] = *cond
}

// masterNode names an instance's master: self while MASTER, else the node
// of spec.nodes at the master's address.
func masterNode(self string, in failover.InstanceStatus, live *reconcile.Desired) string {
	if in.State == failover.StateMaster {
		return self
	}
	if !in.Master.IsValid() || live == nil {
		return ""
	}
	for _, nd := range live.Edge.Nodes {
		if nd.Address.Unmap() == in.Master.Unmap() {
			return nd.Name
		}
	}
	return ""
}

// dataplaneStatus joins the proxy's view of its servers with the live
// commit's listeners, routes and server weights.
func dataplaneStatus(servers []dataplane.ServerStatus, live *reconcile.Desired) ([]listenerStatus, []routeStatus, []serverStatus) {
	var cfg dataplane.Config
	if live != nil {
		cfg = live.Dataplane
	}
	var ls []listenerStatus
	for _, l := range cfg.Listeners {
		ls = append(ls, listenerStatus{Name: l.Name, Bind: l.Bind.String(), Mode: string(l.Mode), DefaultBackend: l.DefaultBackend})
	}
	var rs []routeStatus
	for _, r := range cfg.Routes {
		rs = append(rs, routeStatus{Name: r.Name, Hosts: r.Hosts, HTTPBackend: r.HTTPBackend, TLSBackend: r.TLSBackend})
	}
	ss := make([]serverStatus, 0, len(servers))
	for _, st := range servers {
		s := serverStatus{ServerStatus: st, Weight: -1}
		if b, ok := cfg.Backend(st.Backend); ok {
			for _, sv := range b.Servers {
				if sv.Name == st.Server {
					s.Weight, s.MaxConn = sv.Weight, sv.MaxConn
				}
			}
		}
		if s.Weight < 0 {
			s.Weight = 1 // a server the live commit does not name (yet): the default
		}
		ss = append(ss, s)
	}
	return ls, rs, ss
}

// infraStatusOf is the last infra pass with the declared VMs, nil before
// the first pass.
func infraStatusOf(r *infra.Reconciler, live *reconcile.Desired) *infraStatus {
	last, ok := r.Last()
	if !ok {
		return nil
	}
	s := &infraStatus{Status: last.Status()}
	if live != nil {
		for _, vm := range live.Infra.VMs {
			s.VMs = append(s.VMs, vmStatus{Name: vm.Name, VMID: vm.VMID, Node: vm.Node, Cores: vm.Cores, Memory: vm.Memory})
		}
	}
	for _, a := range last.Plan.Actions {
		s.Plan = append(s.Plan, a.String())
		for _, f := range a.Fields {
			if f.Drift {
				s.Drift = append(s.Drift, fmt.Sprintf("VM %d %q: %s is %s, declared %s", a.VM.VMID, a.VM.Name, f.Key, cmp.Or(f.Old, "(none)"), cmp.Or(f.New, "(none)")))
			}
		}
	}
	return s
}

// runStatus asks a running node's admin server what it runs.
func runStatus(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "status", "[--admin ADDR | --config FILE] [--output text|json]")
	config := fs.String("config", nodeconfig.DefaultPath, "node config; its admin.listen is asked")
	admin := fs.String("admin", "", "admin address to ask (overrides --config), as 127.0.0.1:9100")
	output := fs.String("output", "text", "text or json")
	if _, code, ok := fs.parse(args); !ok {
		return code
	}
	if *output != "text" && *output != "json" {
		fmt.Fprintf(env.stderr, "gitedge status: --output %q: expected text or json\n", *output)
		return statusUsage
	}
	addr := *admin
	if addr == "" {
		c, err := nodeconfig.Load(*config)
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge status: %v (or pass --admin ADDR)\n", err)
			return statusNoAnswer
		}
		if addr = c.AdminListen; addr == "" {
			fmt.Fprintf(env.stderr, "gitedge status: %s: admin.listen is off: no admin server to ask\n", *config)
			return statusNoAnswer
		}
	}
	statusURL, err := adminURL(addr)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: --admin %q: %v\n", addr, err)
		return statusUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, statusURL, nil)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: --admin %q: %v\n", addr, err)
		return statusUsage
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: is gitedge running? %v\n", err)
		return statusNoAnswer
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(env.stderr, "gitedge status: %s answered %s %v\n", addr, resp.Status, err)
		return statusNoAnswer
	}
	var s nodeStatus
	if err := json.Unmarshal(body, &s); err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: bad answer from %s: %v\n", addr, err)
		return statusNoAnswer
	}
	h := judge(s)
	if *output == "json" {
		env.stdout.Write(body)
	} else {
		printStatus(env.stdout, s)
		if !h.OK() {
			fmt.Fprintln(env.stdout, "\nPROBLEM:")
			for _, r := range h.Reasons {
				fmt.Fprintf(env.stdout, "  - %s\n", r)
			}
		}
	}
	return h.Code
}

// adminURL is the /status URL of an admin address (host:port; ":port"
// means this host), refused when it is not one.
func adminURL(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("expected HOST:PORT, as 127.0.0.1:9100")
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if _, err := netip.ParseAddr(host); err != nil && !hostName(host) || port == "" {
		return "", fmt.Errorf("expected HOST:PORT, as 127.0.0.1:9100")
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/status"}
	return u.String(), nil
}

// hostName reports whether s can be a DNS name.
func hostName(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == ""
}

func printStatus(w io.Writer, s nodeStatus) {
	fmt.Fprintf(w, "node:         %s (gitedge %s)\n", s.Node, s.Version)
	if s.Live != nil {
		signer := s.Live.Signer
		if signer == "" {
			signer = "not verified"
		}
		restored := ""
		if s.Live.Restored {
			restored = " (restored at start from the last applied record)"
		}
		fmt.Fprintf(w, "live commit:  %s, applied %s ago%s, signed by %s\n", s.Live.Commit, time.Since(s.Live.AppliedAt).Round(time.Second), restored, signer)
		if s.Live.Message != "" {
			fmt.Fprintf(w, "              %q by %s\n", s.Live.Message, s.Live.Author)
		}
	} else {
		why := ""
		if c, ok := s.Conditions["live"]; ok && c.Message != "" {
			why = " (" + c.Message + ")"
		}
		fmt.Fprintf(w, "live commit:  none yet%s\n", why)
	}
	if a := s.LastAttempt; a != nil {
		fmt.Fprintf(w, "last attempt: %s (%s, trigger %s, %s ago, took %s)\n", a.Result, a.Commit, a.Trigger,
			time.Since(a.Started).Round(time.Second), time.Duration(a.Duration).Round(time.Millisecond))
		if a.Plan != "" {
			fmt.Fprintf(w, "              plan: %s\n", a.Plan)
		}
		if a.Error != "" {
			fmt.Fprintf(w, "              error: %s\n", strings.ReplaceAll(a.Error, "\n", "\n                     "))
		}
	}
	if r := s.LastResync; r != nil && r.Error != "" {
		fmt.Fprintf(w, "last resync:  %s (%s ago): %s\n", r.Result, time.Since(r.Started).Round(time.Second), r.Error)
	}
	names := make([]string, 0, len(s.Conditions))
	for n := range s.Conditions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := s.Conditions[n]
		fmt.Fprintf(w, "%-13s %s", n+":", c.Status)
		if c.Message != "" {
			fmt.Fprintf(w, " — %s", c.Message)
		}
		fmt.Fprintln(w)
	}
	for i, v := range s.VRRP {
		label := ""
		if i == 0 {
			label = "vrrp:"
		}
		master := ""
		switch {
		case v.MasterNode != "" && v.Master.IsValid():
			master = ", master " + v.MasterNode + " (" + v.Master.String() + ")"
		case v.MasterNode != "":
			master = ", master " + v.MasterNode
		case v.Master.IsValid():
			master = ", master " + v.Master.String()
		}
		fmt.Fprintf(w, "%-13s %s %s, priority %d%s, VIPs %s\n", label, v.Name, v.State, v.Priority, master, strings.Join(v.VIPs, " "))
	}
	if b := s.BGP; b != nil {
		printBGP(w, b)
	}
	for i, r := range s.Routes {
		label := ""
		if i == 0 {
			label = "routes:"
		}
		var to []string
		if r.HTTPBackend != "" {
			to = append(to, "http → "+r.HTTPBackend)
		}
		if r.TLSBackend != "" {
			to = append(to, "tls → "+r.TLSBackend)
		}
		fmt.Fprintf(w, "%-13s %s: %s\n", label, strings.Join(r.Hosts, " "), strings.Join(to, ", "))
	}
	for i, b := range s.Backends {
		label := ""
		if i == 0 {
			label = "backends:"
		}
		health := "down"
		if b.Up {
			health = "up"
		}
		fmt.Fprintf(w, "%-13s %s/%s %s %s, weight %d, %d active, %d idle\n", label, b.Backend, b.Server, b.Address, health, b.Weight, b.Active, b.Idle)
	}
	if in := s.Infra; in != nil {
		role := "follower (plans only)"
		if in.Leader {
			role = "leader"
		}
		state := "converged"
		if !in.Converged {
			state = "not converged"
		}
		fmt.Fprintf(w, "infra:        %s, %s, last pass took %s\n", role, state, in.Took)
		for _, a := range in.Applied {
			fmt.Fprintf(w, "              done: %s\n", a)
		}
		if in.Error != "" {
			fmt.Fprintf(w, "              error: %s\n", strings.ReplaceAll(in.Error, "\n", "\n                     "))
		}
	}
	if f := s.Forge; f != nil {
		fmt.Fprintf(w, "forge:        %s %s as %s, %d waiting", f.Forge, f.Repository, f.Context, f.QueueLength)
		if f.LastError != "" {
			fmt.Fprintf(w, ", last error %s: %s", ago(time.Now(), f.LastErrorAt), f.LastError)
		}
		fmt.Fprintln(w)
	}
	if ns := s.Notify; ns != nil {
		for i, k := range ns.Sinks {
			label := ""
			if i == 0 {
				label = "notify:"
			}
			fmt.Fprintf(w, "%-13s %s %s: %d sent, %d failed", label, k.Kind, k.URL, k.Sent, k.Failed)
			if k.LastError != "" {
				fmt.Fprintf(w, ", last error %s: %s", ago(time.Now(), k.LastErrorAt), k.LastError)
			}
			fmt.Fprintln(w)
		}
	}
	for i, p := range s.Relay {
		label := ""
		if i == 0 {
			label = "relay:"
		}
		ack := "not acknowledged"
		if p.Acknowledged {
			ack = "acknowledged"
		}
		fmt.Fprintf(w, "%-13s %s %s: %s, %s (%s, %s ago)", label, p.Name, p.URL, short(p.Commit), ack, p.Result, time.Since(p.SentAt).Round(time.Second))
		if p.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", p.LastError)
		}
		fmt.Fprintln(w)
	}
}

// printBGP prints the BGP part of a status: the speaker, each session and
// each announcement.
func printBGP(w io.Writer, b *bgp.Status) {
	id := ""
	if b.ASN != 0 {
		id = fmt.Sprintf(", AS %d, router ID %s", b.ASN, b.RouterID)
	}
	fmt.Fprintf(w, "bgp:          %s%s\n", b.State, id)
	for _, p := range b.Peers {
		up := ""
		if p.State == bgp.StateEstablished {
			up = fmt.Sprintf(" for %s, %d prefixes sent", time.Duration(p.UptimeSeconds)*time.Second, p.PrefixesAnnounced)
		}
		fmt.Fprintf(w, "              peer %s AS %d %s%s, %d flaps", p.Address, p.ASN, p.State, up, p.Flaps)
		if p.LastError != "" {
			fmt.Fprintf(w, ", last error: %s", p.LastError)
		}
		fmt.Fprintln(w)
	}
	for _, a := range b.Announcements {
		state := "announced"
		if !a.Announced {
			state = "not announced (" + a.Reason + ")"
		}
		fmt.Fprintf(w, "              %s %s\n", a.Prefix, state)
	}
}
