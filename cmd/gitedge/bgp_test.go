package main

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/bgp"
)

// bgpStatus is a speaker's status with every field set, as a node with
// two sessions (one down) and two prefixes (one withdrawn) reports it.
func bgpStatus() *bgp.Status {
	med := uint32(10)
	at := time.Date(2026, 12, 3, 17, 0, 0, 0, time.UTC)
	return &bgp.Status{
		State: "announcing", ASN: 65010, RouterID: netip.MustParseAddr("192.0.2.11"), Restarting: true,
		Peers: []bgp.PeerStatus{
			{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: bgp.StateEstablished, Since: at, UptimeSeconds: 42, PrefixesAnnounced: 1},
			{Address: netip.MustParseAddr("2001:db8::1"), ASN: 65000, State: bgp.StateActive, Since: at,
				LastError: "hold timer expired", LastErrorAt: at, Flaps: 2},
		},
		Announcements: []bgp.AnnouncementStatus{
			{Prefix: netip.MustParsePrefix("198.51.100.10/32"), Announced: true, MED: &med, Communities: []bgp.Community{65010<<16 | 100}, TrackProxy: true},
			{Prefix: netip.MustParsePrefix("2001:db8:100::10/128"), Reason: "the proxy is unhealthy", TrackProxy: true},
		},
	}
}

// TestStatusBGPKeysLowerCamel: the bgp part of /status keeps the keys
// lowerCamelCase (a running node in TestStatusJSONKeysLowerCamel has no
// bgp: that needs root and a router).
func TestStatusBGPKeysLowerCamel(t *testing.T) {
	raw, err := json.Marshal(nodeStatus{BGP: bgpStatus()})
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	var bad []string
	var walk func(v any, path string)
	walk = func(v any, path string) {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !lowerCamel(k) {
					bad = append(bad, path+"."+k)
				}
				walk(x, path+"."+k)
			}
		case []any:
			for _, x := range v {
				walk(x, path+"[]")
			}
		}
	}
	b, ok := doc["bgp"]
	if !ok {
		t.Fatalf("no bgp key: %s", raw)
	}
	walk(b, "bgp")
	if len(bad) > 0 {
		t.Errorf("keys not lowerCamelCase: %v\n%s", bad, raw)
	}
	for _, want := range []string{`"state":"established"`, `"prefixesAnnounced":1`, `"lastError":"hold timer expired"`, `"communities":["65010:100"]`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("/status lacks %s:\n%s", want, raw)
		}
	}
}

func TestPrintStatusBGP(t *testing.T) {
	var out strings.Builder
	printStatus(&out, nodeStatus{BGP: bgpStatus()})
	for _, want := range []string{
		"bgp:          announcing, AS 65010, router ID 192.0.2.11\n",
		"peer 192.0.2.1 AS 65000 established for 42s, 1 prefixes sent, 0 flaps\n",
		"peer 2001:db8::1 AS 65000 active, 2 flaps, last error: hold timer expired\n",
		"198.51.100.10/32 announced\n",
		"2001:db8:100::10/128 not announced (the proxy is unhealthy)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("gitedge status lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	printStatus(&out, nodeStatus{})
	if strings.Contains(out.String(), "bgp") {
		t.Errorf("a node without bgp prints it:\n%s", out.String())
	}
}

func TestValidateSummarisesBGP(t *testing.T) {
	code, out, errOut := gitedge(t, "validate", "../../reconcile/testdata/valid/bgp")
	if code != 0 || !strings.Contains(out, ", BGP: 2 peer(s), 2 prefix(es)") || strings.Contains(out+errOut, "s3cret") {
		t.Fatalf("validate: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	code, out, errOut = gitedge(t, "validate", "../../examples/homelab")
	if code != 0 || strings.Contains(out, "BGP") {
		t.Fatalf("a repository without bgp: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
}

// TestStatusPageBGP: the status page's BGP section shows the sessions and
// the announcements, and is absent without bgp.
func TestStatusPageBGP(t *testing.T) {
	now := time.Date(2026, 12, 3, 18, 0, 0, 0, time.UTC)
	page, err := renderStatusPage(nodeStatus{BGP: bgpStatus()}, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<section id="bgp">`, "AS 65010", "<code>192.0.2.1</code>", "hold timer expired", "<code>2001:db8:100::10/128</code>", "the proxy is unhealthy"} {
		if !strings.Contains(string(page), want) {
			t.Errorf("the status page lacks %q", want)
		}
	}
	page, err = renderStatusPage(nodeStatus{}, now)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(page), `<section id="bgp">`) {
		t.Errorf("a node without bgp has a BGP section")
	}
}
