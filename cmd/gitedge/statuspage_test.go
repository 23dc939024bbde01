package main

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/gitedge/gitedge/bgp"
	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/forge"
	"github.com/gitedge/gitedge/gitsource/relay"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/notify"
	"github.com/gitedge/gitedge/reconcile"
)

// hostile is text an attacker may put where the page shows it: a commit
// message, an error quoting a file, a host name in a repository under
// review, a forge's error body.
const hostile = `<script>alert(1)</script>"><img src=x onerror=alert(2)>'</style>`

// pageStatus is a status with every section set, and hostile text in
// every free-text field.
func pageStatus(now time.Time) nodeStatus {
	return nodeStatus{
		Status: reconcile.Status{
			Node: "lb-0" + hostile,
			Live: &reconcile.CommitInfo{Commit: "0123456789abcdef0123456789abcdef01234567", Author: "Op " + hostile, Message: "msg " + hostile,
				Signer: "Ops Key " + hostile, AppliedAt: now.Add(-90 * time.Second)},
			LastAttempt: &reconcile.Attempt{Commit: "fedcba9876543210", Trigger: "poll" + hostile, Started: now.Add(-3 * time.Second),
				Duration: reconcile.Duration(12 * time.Millisecond), Result: reconcile.ResultInvalid, Error: "routes/x.yaml: " + hostile + "\nsecond line"},
			LastResync: &reconcile.Attempt{Commit: "0123456789abcdef", Trigger: "resync", Started: now.Add(-time.Second), Result: reconcile.ResultUnchanged},
			Conditions: map[string]reconcile.Condition{
				"config": {Status: reconcile.CondStalled, Message: "bad " + hostile, Since: now.Add(-3 * time.Second)},
				"live":   {Status: reconcile.CondReady, Message: "serving commit 0123456789ab", Since: now.Add(-time.Minute)},
			},
		},
		Version: "v1.2.3" + hostile,
		VRRP: []vrrpStatus{
			{InstanceStatus: failover.InstanceStatus{Name: "VI_1" + hostile, State: failover.StateBackup, Priority: 100,
				Master: netip.MustParseAddr("192.0.2.251"), VIPs: []string{"192.0.2.254/24"}}, MasterNode: "lb-1" + hostile},
			{InstanceStatus: failover.InstanceStatus{Name: "VI_2", State: failover.StateMaster, Priority: 150, VIPs: []string{"198.51.100.9/32"}}, MasterNode: "lb-0" + hostile},
		},
		Listeners: []listenerStatus{{Name: "http" + hostile, Bind: ":80", Mode: "http", DefaultBackend: "web" + hostile}},
		Routes:    []routeStatus{{Name: "blog", Hosts: []string{"blog.example.org", "x" + hostile}, HTTPBackend: "web" + hostile, TLSBackend: "tls"}},
		Backends: []serverStatus{
			{ServerStatus: dataplane.ServerStatus{Backend: "web" + hostile, Server: "s1" + hostile, Address: netip.MustParseAddrPort("192.0.2.10:80"), Up: true, Active: 7, Idle: 2}, Weight: 10, MaxConn: 100},
			{ServerStatus: dataplane.ServerStatus{Backend: "web" + hostile, Server: "s2", Address: netip.MustParseAddrPort("192.0.2.11:80"), Active: 0}, Weight: 0},
			{ServerStatus: dataplane.ServerStatus{Backend: "tls", Server: "t1", Address: netip.MustParseAddrPort("192.0.2.12:443"), Up: true}, Weight: 1},
		},
		Infra: &infraStatus{Status: infra.Status{Leader: true, Error: "VM 150: " + hostile, Took: "1.2s", Applied: []string{"start VM 150 " + hostile}},
			VMs:   []vmStatus{{Name: "vm" + hostile, VMID: 150, Node: "pve1", Cores: 2, Memory: 4096}},
			Plan:  []string{"update VM 150 " + hostile},
			Drift: []string{`VM 150 "lb-0": memory is 2048, declared 4096` + hostile}},
		Forge: &forge.Snapshot{Forge: "github", Repository: "infra/edge" + hostile, Context: "gitedge/lb-0", LastError: "422 " + hostile, LastErrorAt: now.Add(-4 * time.Minute),
			Statuses: []forge.Posted{{Commit: "0123456789abcdef", State: "failure", Description: "d " + hostile, At: now}}},
		Notify: &notify.Snapshot{Sinks: []notify.SinkStatus{{Kind: "webhook", URL: "https://hooks.example/" + hostile, Sent: 3, LastError: "e " + hostile, LastErrorAt: now.Add(-7 * time.Second)}}},
		Relay: []relay.PeerStatus{{Name: "lb-1" + hostile, URL: "http://192.0.2.251:9000/hook/relay" + hostile, Commit: "0123456789abcdef",
			SentAt: now.Add(-2 * time.Second), Result: "refused" + hostile, LastError: "403 " + hostile}},
	}
}

// TestStatusPageEscapes: hostile text in every field the page shows comes
// out as text, never as markup, and every section renders.
func TestStatusPageEscapes(t *testing.T) {
	now := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	d := newPageData(pageStatus(now), now)
	d.BGP = bgp.Status{State: "announcing", ASN: 65010, RouterID: netip.MustParseAddr("192.0.2.11"),
		Peers:         []bgp.PeerStatus{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: bgp.StateEstablished, LastError: "hold " + hostile}},
		Announcements: []bgp.AnnouncementStatus{{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Reason: "proxy " + hostile}}}
	page, err := d.render()
	if err != nil {
		t.Fatal(err)
	}
	out := string(page)
	for _, bad := range []string{"<script>alert", "<img", "onerror=alert(2)>", "</style>'"} {
		if strings.Contains(out, bad) {
			t.Errorf("the page holds %q unescaped", bad)
		}
	}
	if n := strings.Count(out, "&lt;script&gt;alert(1)&lt;/script&gt;"); n < 25 {
		t.Errorf("the hostile text appears escaped %d times, want every field (25+)", n)
	}
	for _, want := range []string{
		`id="live-commit">0123456789abcdef0123456789abcdef01234567<`, // the live commit, whole
		`1m30s ago`,               // its age
		`>PROBLEM</span>`,         // config is Stalled
		`<li>config Stalled: bad`, // and the banner says why
		`<td class="host">blog.example.org</td>`,
		`w10 · 7 active`, `0 (drained)`, `>DOWN<`, // weights, load, health
		`held by lb-1`, `held here`, `<b>lb-1`, // VRRP master by name
		`id="infra"`, `Drift`, `memory is 2048, declared 4096`,
		`id="bgp"`, `AS 65010`, `198.51.100.10/32`,
		`id="forge"`, `id="notify"`, `id="relay"`,
		`last error 4m0s ago: 422 `, `>7s ago</span>: e `, // when forge and notify last failed
		`href="/status"`, `href="/metrics"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	// Parsed as a browser would: no element or attribute came from the
	// data, nothing is loaded from elsewhere, links stay on the node.
	z := html.NewTokenizer(strings.NewReader(out))
	scripts, texts := 0, 0
	for tt := z.Next(); tt != html.ErrorToken; tt = z.Next() {
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			switch tok.Data {
			case "img", "iframe", "object", "embed", "base", "form":
				t.Errorf("the page has a <%s> element", tok.Data)
			case "script":
				scripts++
			}
			for _, a := range tok.Attr {
				icon := tok.Data == "link" && a.Key == "href" && strings.HasPrefix(a.Val, "data:image/svg+xml,")
				if strings.HasPrefix(a.Key, "on") || a.Key == "src" || a.Key == "href" && !strings.HasPrefix(a.Val, "/") && !icon {
					t.Errorf("<%s %s=%q>: an attribute that loads or runs something", tok.Data, a.Key, a.Val)
				}
			}
		case html.TextToken:
			if strings.Contains(tok.Data, hostile) {
				texts++
			}
		}
	}
	if scripts != 1 {
		t.Errorf("%d <script> elements, want the one refresh script", scripts)
	}
	if texts < 20 {
		t.Errorf("the hostile text comes out as text %d times, want 20+", texts)
	}
}

// TestStatusPageBGPField: the BGP section follows nodeStatus's BGP field
// when there is one, and is absent otherwise.
func TestStatusPageBGPField(t *testing.T) {
	if fieldOf(nodeStatus{}, "NoSuchField") != nil {
		t.Error("fieldOf a missing field is not nil")
	}
	var nilPtr struct{ BGP *bgp.Status }
	if fieldOf(nilPtr, "BGP") != nil {
		t.Error("fieldOf a nil pointer is not nil")
	}
	set := struct{ BGP *bgp.Status }{&bgp.Status{State: "idle"}}
	if v, ok := fieldOf(set, "BGP").(*bgp.Status); !ok || v.State != "idle" {
		t.Errorf("fieldOf a set field = %v", fieldOf(set, "BGP"))
	}
	now := time.Now()
	s := pageStatus(now)
	page, err := renderStatusPage(s, now)
	if err != nil {
		t.Fatal(err)
	}
	if has, want := strings.Contains(string(page), `id="bgp"`), fieldOf(s, "BGP") != nil; has != want {
		t.Errorf("BGP section rendered: %v, want %v", has, want)
	}
}

// TestStatusPageFirstStart: a node with nothing applied yet renders, says
// so, and is a problem.
func TestStatusPageFirstStart(t *testing.T) {
	now := time.Now()
	s := nodeStatus{Status: reconcile.Status{Node: "lb-0", Conditions: map[string]reconcile.Condition{
		"live": {Status: reconcile.CondFailed, Message: "no commit applied yet: dial tcp: refused (retrying)"}}}}
	page, err := renderStatusPage(s, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"No commit serves yet. no commit applied yet: dial tcp: refused (retrying)", "<li>no commit serves</li>", ">none<", "No pass yet."} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the page lacks %q:\n%s", want, page)
		}
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now.Add(-1400 * time.Millisecond), "1s ago"},
		{now.Add(time.Second), "0s ago"}, // a clock step back
		{now.Add(-(26*time.Hour + 5*time.Minute)), "1d2h ago"},
	} {
		if got := ago(now, c.t); got != c.want {
			t.Errorf("ago(%v) = %q, want %q", now.Sub(c.t), got, c.want)
		}
	}
}

// TestStatusJoinsLiveCommit: /status's masterNode, weights and routes come
// from the live commit, joined with what the subsystems see.
func TestStatusJoinsLiveCommit(t *testing.T) {
	live := &reconcile.Desired{
		Edge: reconcile.Edge{Nodes: []reconcile.Node{{Name: "lb-0", Address: netip.MustParseAddr("192.0.2.250")}, {Name: "lb-1", Address: netip.MustParseAddr("192.0.2.251")}}},
		Dataplane: dataplane.Config{
			Listeners: []dataplane.Listener{{Name: "http", Bind: dataplane.Bind{Port: 80}, Mode: dataplane.ModeHTTP, DefaultBackend: "web"}},
			Routes:    []dataplane.Route{{Name: "blog", Hosts: []string{"blog.example.org"}, HTTPBackend: "web"}},
			Backends:  []dataplane.Backend{{Name: "web", Servers: []dataplane.Server{{Name: "s1", Weight: 10, MaxConn: 5}, {Name: "s2", Weight: 0}}}},
		},
	}
	for _, c := range []struct {
		name   string
		in     failover.InstanceStatus
		live   *reconcile.Desired
		master string
	}{
		{"master: this node", failover.InstanceStatus{State: failover.StateMaster}, live, "lb-0"},
		{"backup: the peer by address", failover.InstanceStatus{State: failover.StateBackup, Master: netip.MustParseAddr("192.0.2.251")}, live, "lb-1"},
		{"backup: an address not in spec.nodes", failover.InstanceStatus{State: failover.StateBackup, Master: netip.MustParseAddr("192.0.2.9")}, live, ""},
		{"backup: no master seen", failover.InstanceStatus{State: failover.StateBackup}, live, ""},
		{"nothing applied yet", failover.InstanceStatus{State: failover.StateBackup, Master: netip.MustParseAddr("192.0.2.251")}, nil, ""},
	} {
		if got := masterNode("lb-0", c.in, c.live); got != c.master {
			t.Errorf("%s: masterNode = %q, want %q", c.name, got, c.master)
		}
	}
	ls, rs, ss := dataplaneStatus([]dataplane.ServerStatus{{Backend: "web", Server: "s1", Up: true}, {Backend: "web", Server: "s2"}, {Backend: "old", Server: "x"}}, live)
	if len(ls) != 1 || ls[0] != (listenerStatus{Name: "http", Bind: ":80", Mode: "http", DefaultBackend: "web"}) {
		t.Errorf("listeners = %+v", ls)
	}
	if len(rs) != 1 || rs[0].HTTPBackend != "web" || rs[0].Hosts[0] != "blog.example.org" {
		t.Errorf("routes = %+v", rs)
	}
	if len(ss) != 3 || ss[0].Weight != 10 || ss[0].MaxConn != 5 || ss[1].Weight != 0 || ss[2].Weight != 1 {
		t.Errorf("servers = %+v, want weights 10 (maxConn 5), 0 (drained), 1 (not in the live commit: the default)", ss)
	}
}

// BenchmarkRenderStatusPage: the server-side cost of one page (every
// section set), and its size.
func BenchmarkRenderStatusPage(b *testing.B) {
	now := time.Now()
	s := pageStatus(now)
	var size int
	for b.Loop() {
		page, err := renderStatusPage(s, now)
		if err != nil {
			b.Fatal(err)
		}
		size = len(page)
	}
	b.ReportMetric(float64(size), "bytes/page")
}
