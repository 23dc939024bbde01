package main

import (
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
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/notify"
	"github.com/gitedge/gitedge/reconcile"
)

// nodeStatus is what a node says about itself: the body of GET /status,
// what `gitedge status` prints, the status page and the demo's summary.
// The loop's status (live commit, last attempt, conditions) is inline;
// each subsystem this process runs adds its own typed status. Every key is
// lowerCamelCase.
type nodeStatus struct {
	reconcile.Status
	Version  string                    `json:"version"`
	VRRP     []failover.InstanceStatus `json:"vrrp,omitempty"`     // per instance: state, priority, master
	BGP      *bgp.Status               `json:"bgp,omitempty"`      // sessions per peer, prefixes announced
	Backends []dataplane.ServerStatus  `json:"backends,omitempty"` // per backend and server: health, load
	Infra    *infra.Status             `json:"infra,omitempty"`    // the last infra pass
	Forge    *forge.Snapshot           `json:"forge,omitempty"`    // commit statuses posted
	Notify   *notify.Snapshot          `json:"notify,omitempty"`   // notification sinks
}

// status is the node's status now: the one place it is put together.
func (n *node) status() nodeStatus {
	s := nodeStatus{Status: n.loop.Status(), Version: version}
	if n.vrrp != nil {
		s.VRRP = n.vrrp.Status()
	}
	if n.bgp != nil {
		// Shown once the repository declares bgp (or after it removed it).
		if st := n.bgp.Status(); st.State != "idle" || len(st.Peers) > 0 || len(st.Announcements) > 0 {
			s.BGP = &st
		}
	}
	if n.proxy != nil {
		s.Backends = n.proxy.Status()
	}
	if n.infra != nil {
		s.Infra = n.infra.Status()
	}
	if n.forge != nil {
		f := n.forge.Snapshot()
		s.Forge = &f
	}
	if n.notify != nil {
		ns := n.notify.Snapshot()
		s.Notify = &ns
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
		return 2
	}
	addr := *admin
	if addr == "" {
		c, err := nodeconfig.Load(*config)
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge status: %v (or pass --admin ADDR)\n", err)
			return 1
		}
		if addr = c.AdminListen; addr == "" {
			fmt.Fprintf(env.stderr, "gitedge status: %s: admin.listen is off: no admin server to ask\n", *config)
			return 1
		}
	}
	statusURL, err := adminURL(addr)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: --admin %q: %v\n", addr, err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, statusURL, nil)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: --admin %q: %v\n", addr, err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: is gitedge running? %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(env.stderr, "gitedge status: %s answered %s %v\n", addr, resp.Status, err)
		return 1
	}
	if *output == "json" {
		env.stdout.Write(body)
		return 0
	}
	var s nodeStatus
	if err := json.Unmarshal(body, &s); err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: bad answer from %s: %v\n", addr, err)
		return 1
	}
	printStatus(env.stdout, s)
	if s.LastAttempt != nil && s.LastAttempt.Error != "" {
		return 1
	}
	return 0
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
		if v.Master.IsValid() {
			master = ", master " + v.Master.String()
		}
		fmt.Fprintf(w, "%-13s %s %s, priority %d%s, VIPs %s\n", label, v.Name, v.State, v.Priority, master, strings.Join(v.VIPs, " "))
	}
	if b := s.BGP; b != nil {
		printBGP(w, b)
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
		fmt.Fprintf(w, "%-13s %s/%s %s %s, %d active, %d idle\n", label, b.Backend, b.Server, b.Address, health, b.Active, b.Idle)
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
			fmt.Fprintf(w, ", last error: %s", f.LastError)
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
				fmt.Fprintf(w, ", last error: %s", k.LastError)
			}
			fmt.Fprintln(w)
		}
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
