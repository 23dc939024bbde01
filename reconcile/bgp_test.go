package reconcile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/gitedge/gitedge/bgp"
	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/secrets"
)

const bgpRepo = "testdata/valid/bgp"

func TestBGPFor(t *testing.T) {
	d := mustLoad(t, bgpRepo)
	tests := []struct {
		node     string
		routerID string
		med      uint32
		hasMED   bool
	}{
		{"lb-0", "192.0.2.11", 10, true}, // its address, its MED
		{"lb-1", "192.0.2.12", 20, true}, //
		{"lb-2", "192.0.2.13", 0, false}, // an IPv6 node: its routerID entry; no MED
	}
	for _, tt := range tests {
		cfg, err := d.BGPFor(tt.node)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Node != tt.node || cfg.LocalRouterID().String() != tt.routerID {
			t.Errorf("%s: node %q router ID %v, want %s", tt.node, cfg.Node, cfg.LocalRouterID(), tt.routerID)
		}
		r := cfg.Routes()[0]
		if r.MED != tt.med || r.HasMED != tt.hasMED {
			t.Errorf("%s: MED %d (%v), want %d (%v)", tt.node, r.MED, r.HasMED, tt.med, tt.hasMED)
		}
		if errs := cfg.Validate(); len(errs) > 0 {
			t.Errorf("%s: the resolved config does not validate: %v", tt.node, errs)
		}
		// Defaults are applied by the loader: what the plan and Apply see.
		if p := cfg.Peers[0]; p.HoldTime.String() != "3s" || p.Port != bgp.DefaultPort || p.RestartTime.String() != "3s" || p.Password != "s3cret-key" {
			t.Errorf("%s: peer 0 %+v", tt.node, p)
		}
		if p := cfg.Peers[1]; p.HoldTime != bgp.DefaultHoldTime || p.Port != 1179 || p.RestartTime.String() != "2m0s" {
			t.Errorf("%s: peer 1 %+v", tt.node, p)
		}
	}
	if _, err := d.BGPFor("lb-9"); err == nil || !strings.Contains(err.Error(), `node "lb-9" is not in`) {
		t.Errorf("unknown node: %v", err)
	}
	a, _ := d.BGPFor("lb-0")
	b, _ := d.BGPFor("lb-1")
	a.Peers[0].ASN = 1
	if b.Peers[0].ASN == 1 || d.BGP.Peers[0].ASN == 1 {
		t.Errorf("BGPFor results share memory")
	}
	// No bgp section: the zero Config, for any node (the speaker stops).
	none := mustLoad(t, "testdata/valid/proxy-only")
	if cfg, err := none.BGPFor("anything"); err != nil || !cfg.Equal(bgp.Config{}) {
		t.Errorf("without bgp: %+v %v", cfg, err)
	}
}

func TestBGPEverythingConverted(t *testing.T) {
	d := mustLoad(t, bgpRepo)
	want := bgp.Config{
		ASN:      65010,
		RouterID: map[string]netip.Addr{"lb-2": netip.MustParseAddr("192.0.2.13")},
		Peers: []bgp.Peer{
			{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, HoldTime: 3e9, Password: "s3cret-key", Port: 179, RestartTime: 3e9},
			{Address: netip.MustParseAddr("2001:db8::1"), ASN: 65000, HoldTime: bgp.DefaultHoldTime, Port: 1179, RestartTime: 120e9},
		},
		Announce: []bgp.Announcement{
			{Prefix: netip.MustParsePrefix("198.51.100.10/32"), TrackProxy: true,
				Communities: []bgp.Community{65010<<16 | 100, bgp.CommunityNoExport}, MED: map[string]uint32{"lb-0": 10, "lb-1": 20}},
			{Prefix: netip.MustParsePrefix("2001:db8:100::10/128")},
		},
	}
	if !d.BGP.Equal(want) {
		t.Errorf("converted:\n%+v\nwant:\n%+v", d.BGP, want)
	}
}

func TestPlanBGP(t *testing.T) {
	noBGP := map[string][][2]string{"edge.yaml": {{
		"  bgp:\n    asn: 65010\n    routerID: {lb-2: 192.0.2.13}\n    peers:\n      - {address: 192.0.2.1, asn: 65000, holdTime: 3s, password: s3cret-key}\n      - {address: \"2001:db8::1\", asn: 65000, restartTime: 120s, port: 1179}\n    announce:\n      - {prefix: 198.51.100.10/32, track: {proxy: true}, communities: [\"65010:100\", no-export], med: {lb-0: 10, lb-1: 20}}\n      - {prefix: \"2001:db8:100::10/128\"}\n", ""}}}
	tests := []struct {
		name    string
		edits   map[string][][2]string // applied to a copy of bgpRepo
		removed bool                   // the copy is the base, bgpRepo the head
	}{
		{name: "bgp-added", edits: noBGP, removed: true},
		{name: "bgp-changes", edits: map[string][][2]string{"edge.yaml": {
			{"password: s3cret-key", "password: other-key"},
			{"med: {lb-0: 10, lb-1: 20}", "med: {lb-0: 10, lb-1: 10}"},
			{`      - {prefix: "2001:db8:100::10/128"}`, `      - {prefix: 198.51.100.11/32, track: {proxy: true}}`},
			{"routerID: {lb-2: 192.0.2.13}", "routerID: {lb-2: 192.0.2.14}"},
		}}},
		{name: "bgp-removed", edits: noBGP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base := mustLoad(t, bgpRepo)
			head := mustLoad(t, testkit.CopyTree(t, bgpRepo, t.TempDir(), tt.edits))
			if tt.removed {
				base, head = head, base
			}
			var b strings.Builder
			if err := Diff(base, head).WriteText(&b); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(b.String(), "s3cret") || strings.Contains(b.String(), "other-key") {
				t.Errorf("the plan shows a BGP password:\n%s", b.String())
			}
			golden(t, tt.name, b.String())
		})
	}
}

// TestPlanShowsEveryBGPField and TestEqualSeesEveryBGPField are
// fields_test.go's checks for the bgp section.
func TestPlanShowsEveryBGPField(t *testing.T) {
	d := mustLoad(t, bgpRepo)
	key := "the item's name is its key: a rename is a remove and an add"
	everyFieldShows(t, "BGP", bgpOf(d)[0], bgpFields, map[string]string{"Edge": key})
	everyFieldShows(t, "BGPPeer", peersOf(d)[0], peerFields, map[string]string{"Address": key})
	everyFieldShows(t, "BGPAnnouncement", d.BGP.Announce[0], announceFields, map[string]string{"Prefix": key})
	// The resolved fields are not in the repository's form: a plan is
	// about the repository, for every node.
	if d.BGP.Node != "" || d.BGP.NodeAddress.IsValid() {
		t.Errorf("the repository's bgp is resolved for node %q", d.BGP.Node)
	}
}

func TestEqualSeesEveryBGPField(t *testing.T) {
	cfg, err := mustLoad(t, bgpRepo).BGPFor("lb-0")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range testkit.Mutations(cfg) {
		if cfg.Equal(m.Value.(bgp.Config)) {
			t.Errorf("bgp.Config.Equal misses a change of %s", m.Path)
		}
	}
}

type bgpFake func(context.Context, bgp.Config) error

func (f bgpFake) Apply(ctx context.Context, c bgp.Config) error { return f(ctx, c) }

// TestLoopAppliesBGP: the loop applies the node's resolved bgp config
// after the proxy, on every pass (Apply is convergent, so a resync repairs
// drift), the zero config once the section is gone, and reports a failure
// as the bgp condition.
func TestLoopAppliesBGP(t *testing.T) {
	var r recorder
	l := &Loop{
		Node: "lb-1",
		Dataplane: dataplaneFake(func(_ context.Context, c dataplane.Config) error {
			return r.record("dataplane")
		}),
		BGP: bgpFake(func(_ context.Context, c bgp.Config) error {
			if c.Equal(bgp.Config{}) {
				return r.record("bgp none")
			}
			return r.record(fmt.Sprintf("bgp %s id %s med %d peers %d", c.Node, c.LocalRouterID(), c.Routes()[0].MED, len(c.Peers)))
		}),
	}
	ctx := context.Background()
	with := mapFS(t, bgpRepo, nil)
	without := mapFS(t, "testdata/valid/proxy-only", nil)
	steps := []struct {
		files fs.FS
		fail  error
		res   Result
		want  []string
		cond  CondStatus
	}{
		{with, nil, ResultApplied, []string{"dataplane", "bgp lb-1 id 192.0.2.12 med 20 peers 2"}, CondReady},
		{with, nil, ResultUnchanged, []string{"bgp lb-1 id 192.0.2.12 med 20 peers 2"}, CondReady},
		{with, transientErr{errors.New("peer 192.0.2.1: boom")}, ResultFailed, []string{"bgp lb-1 id 192.0.2.12 med 20 peers 2"}, CondFailed},
		{without, nil, ResultApplied, []string{"dataplane", "bgp none"}, CondReady},
	}
	for i, s := range steps {
		r.fail = map[string]error{"bgp lb-1 id 192.0.2.12 med 20 peers 2": s.fail}
		res, err := l.Pass(ctx, Revision{Commit: fmt.Sprint("c", i), Files: s.files}, nil)
		if res != s.res || (err != nil) != (s.fail != nil) {
			t.Fatalf("step %d: %s %v, want %s", i, res, err, s.res)
		}
		if got := r.take(); !slices.Equal(got, s.want) {
			t.Errorf("step %d: calls %q, want %q", i, got, s.want)
		}
		if c := l.Status().Conditions["bgp"]; c.Status != s.cond {
			t.Errorf("step %d: bgp condition %+v, want %s", i, c, s.cond)
		}
	}
}

// TestDocsBGPFieldCheckCatches: spec.bgp's rows live in docs/bgp.md; the
// field check still catches a missing one and a bogus one there.
func TestDocsBGPFieldCheckCatches(t *testing.T) {
	repo, page := readDoc(t, "repository.md"), readDoc(t, "bgp.md")
	check := func(page string) []string {
		return checkFieldDocs([]fieldDoc{
			{file: "docs/repository.md", text: repo, kinds: true},
			{file: "docs/bgp.md", text: page, section: "Edge"},
		}, repositoryFields())
	}
	if p := check(page); len(p) > 0 {
		t.Fatalf("the docs as they are: %q", p)
	}
	row := "| `spec.bgp.peers[].port` |"
	i := strings.Index(page, row)
	if i < 0 {
		t.Fatalf("no row %s in docs/bgp.md", row)
	}
	end := i + strings.IndexByte(page[i:], '\n') + 1
	missing := page[:i] + page[end:]
	bogus := page[:end] + "| `spec.bgp.peers[].ttl` | integer | 1 | | made up |\n" + page[end:]
	for name, tt := range map[string]struct{ doc, mention string }{
		"missing": {missing, "`spec.bgp.peers[].port` (section \"Edge\") is in the code but not documented"},
		"bogus":   {bogus, "docs/bgp.md:"},
	} {
		if p := check(tt.doc); !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tt.mention) }) {
			t.Errorf("%s row: no problem mentions %q; got %q", name, tt.mention, p)
		}
	}
}

// TestBGPPasswordSecret: a BGP peer's password takes the forms of VRRP's
// auth.password. A reference is resolved with the node's secrets (never
// shown), refused with the field named when the node lacks it, skipped by
// a node that runs no BGP, and BGPFor refuses a config loaded without it.
func TestBGPPasswordSecret(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bgp-r1"), []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	node, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(dir, "age.key")
	if err := os.WriteFile(idFile, []byte(node.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	armored, err := secrets.Encrypt([]byte(secretValue), []age.Recipient{node.Recipient()})
	if err != nil {
		t.Fatal(err)
	}
	store := &secrets.Store{Dir: dir, AgeIdentity: idFile}
	repo := func(pw string) string {
		return testkit.CopyTree(t, bgpRepo, t.TempDir(), map[string][][2]string{"edge.yaml": {{"password: s3cret-key}", "password: " + pw + "}"}}})
	}
	ageFlow := "{age: " + strconv.Quote(armored) + "}"
	tests := []struct {
		name, pw string
		local    *Local
		pass     string // the peer's password after BGPFor; "" with err or unresolved
		from     string // in the plan
		err      string
	}{
		{name: "plain", pw: "s3cret-key", pass: "s3cret-key", from: "(set)"},
		{name: "secret, no node", pw: "{secret: bgp-r1}", from: `secret "bgp-r1"`, err: "BGPFor: peer 192.0.2.1: password (secret \"bgp-r1\") was not resolved"},
		{name: "secret on the node", pw: "{secret: bgp-r1}", local: &Local{Secrets: store}, pass: secretValue, from: `secret "bgp-r1"`},
		{name: "age on the node", pw: ageFlow, local: &Local{Secrets: store}, pass: secretValue, from: (secrets.Value{Age: armored}).Source()},
		{name: "secret missing", pw: "{secret: bgp-r2}", local: &Local{Secrets: store},
			err: `Edge "edge": spec.bgp.peers[0].password: secret "bgp-r2" is not on this node: no file ` + filepath.Join(dir, "bgp-r2")},
		{name: "node without BGP", pw: "{secret: bgp-r2}", local: &Local{Secrets: store, NoBGP: true}, from: `secret "bgp-r2"`,
			err: "BGPFor: peer 192.0.2.1: password (secret \"bgp-r2\") was not resolved"},
		{name: "bad name", pw: "{secret: ../x}", err: `spec.bgp.peers[0].password.secret: bad secret name "../x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _, err := LoadDirWith(repo(tt.pw), LoadOptions{Local: tt.local})
			if err != nil {
				if tt.err == "" || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("load: %v, want %q", err, tt.err)
				}
				if strings.Contains(err.Error(), secretValue) {
					t.Errorf("the error shows the secret")
				}
				return
			}
			var plan strings.Builder
			if err := Diff(nil, d).WriteText(&plan); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(plan.String(), "    password: "+tt.from+"\n") || strings.Contains(plan.String(), secretValue) {
				t.Errorf("the plan names the password as %q? it must never show it:\n%s", tt.from, plan.String())
			}
			cfg, err := d.BGPFor("lb-0")
			switch {
			case strings.HasPrefix(tt.err, "BGPFor: "):
				if err == nil || !strings.Contains(err.Error(), strings.TrimPrefix(tt.err, "BGPFor: ")) {
					t.Errorf("BGPFor: %v, want %q: an unresolved secret must never reach the speaker", err, tt.err)
				}
			case err != nil:
				t.Errorf("BGPFor: %v", err)
			case cfg.Peers[0].Password != tt.pass:
				t.Errorf("peer password %q, want %q", cfg.Peers[0].Password, tt.pass)
			}
		})
	}
}
