//go:build linux

package frrlab

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// Daemons is where Debian's frr package installs zebra and bgpd.
const Daemons = "/usr/lib/frr"

// Require fails t when FRR or the tools the lab needs are missing: CI
// runs as root with them installed and must not pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	for _, p := range []string{Daemons + "/zebra", Daemons + "/bgpd"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("FRR is required as the upstream router (apt-get install frr; make deps installs it): %v", err)
		}
	}
	for _, tool := range []string{"ip", "vtysh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (make deps installs it): %v", tool, err)
		}
	}
	if _, err := user.Lookup("frr"); err != nil {
		t.Fatalf("the frr user is missing (the frr package creates it): %v", err)
	}
}

// Config is the router's BGP setup: one passive peer group per address
// family towards the nodes, with 1 s keepalives and a 3 s hold time, and
// ECMP over up to 8 paths.
type Config struct {
	NS        string // the router's namespace, made by the test
	RouterASN uint32
	EdgeASN   uint32 // the nodes' AS
	RouterID  netip.Addr
	Nodes     []netip.Addr // IPv4 neighbours
	Nodes6    []netip.Addr // IPv6 neighbours; none: no IPv6 sessions
	// Password is the TCP MD5 key of the nodes' sessions; "" for none.
	Password string
}

// Router is a running FRR.
type Router struct {
	cfg Config
	// Dir holds the configuration, the vty sockets and bgpd.log.
	Dir string
}

const bgpdConf = `hostname router
log file {{.Dir}}/bgpd.log informational
router bgp {{.RouterASN}}
 bgp router-id {{.RouterID}}
 no bgp ebgp-requires-policy
 no bgp default ipv4-unicast
 neighbor NODES peer-group
 neighbor NODES remote-as {{.EdgeASN}}
 neighbor NODES timers 1 3
 neighbor NODES passive
{{- if .Password}}
 neighbor NODES password {{.Password}}
{{- end}}
{{- range .Nodes}}
 neighbor {{.}} peer-group NODES
{{- end}}
{{- if .Nodes6}}
 neighbor NODES6 peer-group
 neighbor NODES6 remote-as {{.EdgeASN}}
 neighbor NODES6 timers 1 3
 neighbor NODES6 passive
{{- range .Nodes6}}
 neighbor {{.}} peer-group NODES6
{{- end}}
{{- end}}
 address-family ipv4 unicast
  neighbor NODES activate
  maximum-paths 8
 exit-address-family
{{- if .Nodes6}}
 address-family ipv6 unicast
  neighbor NODES6 activate
  maximum-paths 8
 exit-address-family
{{- end}}
`

// Start starts zebra and bgpd in c.NS as the frr user and waits until
// vtysh reaches bgpd. They are killed, and their directory removed, when
// the test ends (before the cleanups registered earlier, such as the
// deletion of the namespaces).
func Start(t testing.TB, c Config) *Router {
	t.Helper()
	// Not t.TempDir: its parent is private to root, and FRR runs as frr.
	dir, err := os.MkdirTemp("", fmt.Sprintf("gitedge-frr-%d-", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // last: after the daemons are gone
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &Router{cfg: c, Dir: dir}
	var conf bytes.Buffer
	data := struct {
		Config
		Dir string
	}{c, dir}
	if err := template.Must(template.New("bgpd").Parse(bgpdConf)).Execute(&conf, data); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"bgpd.conf": conf.String(), "zebra.conf": "hostname router\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("chown", "-R", "frr:frr", dir).CombinedOutput(); err != nil {
		t.Fatalf("chown frr %s: %v %s", dir, err, out)
	}
	for _, d := range []string{"zebra", "bgpd"} {
		r.start(t, d)
		if d == "zebra" {
			// bgpd gives up on a zebra socket that is not there yet.
			Poll(t, 10*time.Second, func() string {
				if _, err := os.Stat(filepath.Join(dir, "zserv.api")); err != nil {
					return "zebra's socket: " + err.Error()
				}
				return ""
			})
		}
	}
	Poll(t, 15*time.Second, func() string {
		if out, err := r.VtyshErr("show bgp summary json"); err != nil {
			return fmt.Sprintf("vtysh: %v %s", err, out)
		}
		return ""
	})
	return r
}

// start runs one daemon; its output goes to DAEMON.out in Dir.
func (r *Router) start(t testing.TB, daemon string) {
	t.Helper()
	out, err := os.Create(filepath.Join(r.Dir, daemon+".out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", r.cfg.NS, filepath.Join(Daemons, daemon),
		"-u", "frr", "-g", "frr", "-f", filepath.Join(r.Dir, daemon+".conf"), "-i", filepath.Join(r.Dir, daemon+".pid"),
		"-z", filepath.Join(r.Dir, "zserv.api"), "--vty_socket", r.Dir, "-P", "0")
	cmd.Stdout, cmd.Stderr = out, out
	// FRR drops its parent-death signal when it changes user: the
	// cleanup below is what ends it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("starting %s in %s: %v", daemon, r.cfg.NS, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		out.Close()
		close(done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
}

// VtyshErr runs one vtysh command against the router.
func (r *Router) VtyshErr(cmd string) (string, error) {
	out, err := exec.Command("ip", "netns", "exec", r.cfg.NS, "vtysh", "--vty_socket", r.Dir, "-c", cmd).CombinedOutput()
	return string(out), err
}

// Vtysh is VtyshErr failing t on an error.
func (r *Router) Vtysh(t testing.TB, cmd string) string {
	t.Helper()
	out, err := r.VtyshErr(cmd)
	if err != nil {
		t.Fatalf("vtysh -c %q: %v\n%s", cmd, err, out)
	}
	return out
}

// Neighbor is a part of `show bgp neighbors json`.
type Neighbor struct {
	State                  string `json:"bgpState"`
	UpEpoch                int64  `json:"bgpTimerUpEstablishedEpoch"`
	UptimeMsec             int64  `json:"bgpTimerUpMsec"`
	ConnectionsEstablished int    `json:"connectionsEstablished"`
	ConnectionsDropped     int    `json:"connectionsDropped"`
	LastReset              string `json:"lastResetDueTo"`
	GR                     struct {
		RemoteMode string `json:"remoteGrMode"`
		RBit       bool   `json:"rBit"`
		Timers     struct {
			Received int `json:"receivedRestartTimer"`
		} `json:"timers"`
	} `json:"gracefulRestartInfo"`
}

// Neighbors returns the router's neighbours by address.
func (r *Router) Neighbors(t testing.TB) map[string]Neighbor {
	t.Helper()
	out := r.Vtysh(t, "show bgp neighbors json")
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		t.Fatalf("show bgp neighbors json: %v\n%s", err, out)
	}
	res := map[string]Neighbor{}
	for k, v := range raw {
		if _, err := netip.ParseAddr(k); err != nil {
			continue
		}
		var n Neighbor
		if err := json.Unmarshal(v, &n); err == nil {
			res[k] = n
		}
	}
	return res
}

// WaitEstablished waits until the router has every given neighbour up.
func (r *Router) WaitEstablished(t testing.TB, within time.Duration, addrs ...netip.Addr) {
	t.Helper()
	Poll(t, within, func() string {
		nb := r.Neighbors(t)
		for _, a := range addrs {
			if s := nb[a.String()].State; s != "Established" {
				return fmt.Sprintf("the router's session with %s is %q", a, s)
			}
		}
		return ""
	})
}

// WaitUptime waits until the router's established sessions with the
// given neighbours (all when none) have been up at least d.
func (r *Router) WaitUptime(t testing.TB, d time.Duration, only ...netip.Addr) {
	t.Helper()
	Poll(t, d+10*time.Second, func() string {
		for a, n := range r.Neighbors(t) {
			if len(only) > 0 && !slices.Contains(only, netip.MustParseAddr(a)) {
				continue
			}
			if n.State == "Established" && time.Duration(n.UptimeMsec)*time.Millisecond < d {
				return fmt.Sprintf("%s up for %dms", a, n.UptimeMsec)
			}
		}
		return ""
	})
}

// Dump logs the router's view and the tail of its logs, for a failed test.
func (r *Router) Dump(t testing.TB) {
	for _, c := range []string{"show bgp summary", "show bgp ipv4 unicast", "show bgp ipv6 unicast"} {
		out, _ := r.VtyshErr(c)
		t.Logf("--- vtysh %s:\n%s", c, out)
	}
	for _, c := range [][]string{{"route", "show"}, {"-6", "route", "show"}, {"nexthop", "show"}} {
		out, _ := exec.Command("ip", append([]string{"-n", r.cfg.NS}, c...)...).CombinedOutput()
		t.Logf("--- ip %s (router):\n%s", strings.Join(c, " "), out)
	}
	logs, _ := filepath.Glob(filepath.Join(r.Dir, "*.log"))
	outs, _ := filepath.Glob(filepath.Join(r.Dir, "*.out"))
	for _, f := range slices.Concat(logs, outs) {
		b, _ := os.ReadFile(f)
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("--- %s:\n%s", filepath.Base(f), b)
	}
}

// FIB samples a namespace's main table every 2 ms and keeps the history
// of each watched prefix's next hops.
type FIB struct {
	mu       sync.Mutex
	h        *netlink.Handle
	prefixes []netip.Prefix
	hist     map[netip.Prefix][]State
}

// State is a prefix's next hops from At on.
type State struct {
	At  time.Time
	Gws []netip.Addr // sorted; empty: no route
}

func (s State) String() string { return fmt.Sprintf("%s %v", s.At.Format("15:04:05.000"), s.Gws) }

// WatchFIB starts sampling ns's routes to prefixes until the test ends.
func WatchFIB(t testing.TB, ns string, prefixes ...netip.Prefix) *FIB {
	t.Helper()
	nsh, err := netns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(nsh)
	nsh.Close()
	if err != nil {
		t.Fatal(err)
	}
	w := &FIB{h: h, prefixes: prefixes, hist: map[netip.Prefix][]State{}}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				w.sample()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; h.Close() })
	return w
}

func (w *FIB) sample() {
	now := time.Now()
	for _, p := range w.prefixes {
		gws := w.lookup(p)
		w.mu.Lock()
		h := w.hist[p]
		if len(h) == 0 || !slices.Equal(h[len(h)-1].Gws, gws) {
			w.hist[p] = append(h, State{At: now, Gws: gws})
		}
		w.mu.Unlock()
	}
}

func (w *FIB) lookup(p netip.Prefix) []netip.Addr {
	fam := netlink.FAMILY_V4
	if p.Addr().Is6() {
		fam = netlink.FAMILY_V6
	}
	dst := &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
	routes, err := w.h.RouteListFiltered(fam, &netlink.Route{Dst: dst}, netlink.RT_FILTER_DST)
	if err != nil {
		return nil
	}
	var gws []netip.Addr
	for _, r := range routes {
		if a, ok := netip.AddrFromSlice(r.Gw); ok {
			gws = append(gws, a.Unmap())
		}
		for _, nh := range r.MultiPath {
			if a, ok := netip.AddrFromSlice(nh.Gw); ok {
				gws = append(gws, a.Unmap())
			}
		}
	}
	slices.SortFunc(gws, netip.Addr.Compare)
	return slices.Compact(gws)
}

// Now returns p's next hops as last sampled.
func (w *FIB) Now(p netip.Prefix) []netip.Addr {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hist[p]
	if len(h) == 0 {
		return nil
	}
	return h[len(h)-1].Gws
}

// Since returns p's states from the one current at t on.
func (w *FIB) Since(p netip.Prefix, t time.Time) []State {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := w.hist[p]
	i := 0
	for j, s := range h {
		if !s.At.After(t) {
			i = j
		}
	}
	return slices.Clone(h[i:])
}

// WaitFor waits until p's next hops satisfy ok, and returns when they
// first did (per the samples).
func (w *FIB) WaitFor(t testing.TB, p netip.Prefix, within time.Duration, ok func([]netip.Addr) bool) time.Time {
	t.Helper()
	return w.WaitSince(t, p, time.Now(), within, ok)
}

// WaitSince is WaitFor for a change that may have happened since start.
func (w *FIB) WaitSince(t testing.TB, p netip.Prefix, start time.Time, within time.Duration, ok func([]netip.Addr) bool) time.Time {
	t.Helper()
	var at time.Time
	Poll(t, within, func() string {
		for _, s := range w.Since(p, start) {
			if ok(s.Gws) {
				at = s.At
				return ""
			}
		}
		return fmt.Sprintf("the router's route to %s goes via %v", p, w.Now(p))
	})
	return at
}

// SameSet matches next hops that are exactly want.
func SameSet(want ...netip.Addr) func([]netip.Addr) bool {
	w := slices.Clone(want)
	slices.SortFunc(w, netip.Addr.Compare)
	return func(gws []netip.Addr) bool { return slices.Equal(gws, w) }
}

// Poll calls check every 10 ms until it returns "" or within has passed,
// then fails t with its last answer.
func Poll(t testing.TB, within time.Duration, check func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := check()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
