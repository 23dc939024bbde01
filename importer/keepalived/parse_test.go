package keepalived

import (
	"net/netip"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gitedge/gitedge/importer/report/reporttest"
)

func seed(t testing.TB) []byte {
	data, err := os.ReadFile("../testdata/seed/keepalived.conf.j2")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(data), "{{ lb_priority }}", "101")
	return []byte(strings.ReplaceAll(s, "{{ lb_floating_ip }}", "192.0.2.254"))
}

func TestSeed(t *testing.T) {
	c, err := Parse("keepalived.conf", seed(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Instances) != 1 {
		t.Fatalf("%d instances", len(c.Instances))
	}
	in := c.Instances[0]
	got := map[string]any{
		"name": in.Name, "state": in.State, "interface": in.Interface, "vrid": in.VRID, "priority": in.Priority,
		"advert": in.AdvertInt, "auth": in.AuthType + " " + in.AuthPass, "vips": in.VIPs[0].Prefix.String(),
		"haslen": in.VIPs[0].HasLength, "track": in.TrackScripts[0].Name, "script": c.Scripts["chk_haproxy"].Script,
		"interval": c.Scripts["chk_haproxy"].Interval, "other": len(c.Other), "priorityLine": in.Lines["priority"].Line,
	}
	want := map[string]any{
		"name": "VI_1", "state": "BACKUP", "interface": "eth0", "vrid": 33, "priority": 101,
		"advert": time.Second, "auth": "PASS 9999", "vips": "192.0.2.254/32", "haslen": false,
		"track": "chk_haproxy", "script": "/usr/bin/pgrep haproxy", "interval": 2 * time.Second,
		"other": 2, "priorityLine": 15,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("seed (-want +got):\n%s", d)
	}
}

func TestDirectives(t *testing.T) {
	c, err := Parse("k.conf", []byte(`
global_defs { vrrp_version 3 }
vrrp_script chk { script "killall -0 haproxy"
  interval 0.5
  weight -20
  fall 2 }
vrrp_instance V6 {
    interface ens18
    virtual_router_id 51
    priority 150
    advert_int 0.25
    nopreempt
    preempt_delay 30
    unicast_src_ip 2001:db8::1
    unicast_peer {
        2001:db8::2
        2001:db8::3
    }
    virtual_ipaddress {
        2001:db8::100/64 dev ens19 label ens19:1
        2001:db8::101
    }
    virtual_ipaddress_excluded { 2001:db8::102/128 }
    track_script { chk weight 10 }
    track_interface { ens20 }
    garp_master_repeat 3
    garp_master_delay 1
    garp_master_refresh 30
    notify_master /usr/local/bin/master.sh
    use_vmac
}
vrrp_sync_group G { group { V6 } }
`), Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := c.Instances[0]
	if c.Version != 3 || in.Version != 0 || in.Interface != "ens18" || in.VRID != 51 || in.Priority != 150 ||
		in.AdvertInt != 250*time.Millisecond || !in.NoPreempt || in.PreemptDelay != 30*time.Second ||
		in.UnicastSrc != netip.MustParseAddr("2001:db8::1") || len(in.UnicastPeers) != 2 ||
		in.GARPRepeat != 3 || in.GARPDelay != time.Second || in.GARPRefresh != 30*time.Second {
		t.Errorf("instance: %+v", in)
	}
	if d := cmp.Diff([]string{"2001:db8::100/64 ens19 ens19:1 true false", "2001:db8::101/128   false false", "2001:db8::102/128   true true"}, vips(in)); d != "" {
		t.Errorf("vips (-want +got):\n%s", d)
	}
	if tr := in.TrackScripts[0]; tr.Name != "chk" || *tr.Weight != 10 || in.TrackInterfaces[0].Name != "ens20" {
		t.Errorf("tracks: %+v %+v", in.TrackScripts, in.TrackInterfaces)
	}
	if s := c.Scripts["chk"]; s.Interval != 500*time.Millisecond || *s.Weight != -20 || len(s.Other) != 1 || s.Lines("fall").Line != 6 {
		t.Errorf("script: %+v", s)
	}
	var other []string
	for _, o := range in.Other {
		other = append(other, o.Keyword())
	}
	if d := cmp.Diff([]string{"notify_master", "use_vmac"}, other); d != "" {
		t.Errorf("untyped lines (-want +got):\n%s", d)
	}
	if len(c.Other) != 1 || c.Other[0].Keyword() != "vrrp_sync_group" || !c.Other[0].Braced {
		t.Errorf("top-level others: %+v", c.Other)
	}
}

func vips(in *Instance) []string {
	var out []string
	for _, v := range in.VIPs {
		out = append(out, strings.Join([]string{v.Prefix.String(), v.Dev, v.Label, boolStr(v.HasLength), boolStr(v.Excluded)}, " "))
	}
	return out
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func TestInclude(t *testing.T) {
	files := map[string]string{
		"/etc/keepalived/keepalived.conf": "include conf.d/*.conf\n",
		"/etc/keepalived/conf.d/a.conf":   "vrrp_script s { script \"pgrep haproxy\" }\n",
		"/etc/keepalived/conf.d/b.conf":   "vrrp_instance V { interface eth0\n virtual_router_id 1\n track_script { s }\n virtual_ipaddress { 192.0.2.1 }\n}\n",
		"/etc/keepalived/loop.conf":       "include loop.conf\n",
	}
	opts := Options{
		ReadFile: func(n string) ([]byte, error) {
			if d, ok := files[n]; ok {
				return []byte(d), nil
			}
			return nil, os.ErrNotExist
		},
		Glob: func(p string) ([]string, error) {
			var out []string
			for n := range files {
				if ok, _ := path.Match(p, n); ok {
					out = append(out, n)
				}
			}
			return out, nil
		},
	}
	c, err := Parse("/etc/keepalived/keepalived.conf", []byte(files["/etc/keepalived/keepalived.conf"]), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Instances) != 1 || c.Instances[0].Pos.String() != "/etc/keepalived/conf.d/b.conf:1" || c.Scripts["s"] == nil {
		t.Errorf("include: %+v", c)
	}
	_, err = Parse("/etc/keepalived/loop.conf", []byte(files["/etc/keepalived/loop.conf"]), opts)
	if err == nil || !strings.Contains(err.Error(), "/etc/keepalived/loop.conf:1: include loop.conf: /etc/keepalived/loop.conf includes itself") {
		t.Errorf("include loop: %v", err)
	}
	_, err = Parse("/k.conf", []byte("include none/*.conf\n"), opts)
	if err == nil || !strings.Contains(err.Error(), "/k.conf:1: include none/*.conf: no file matches") {
		t.Errorf("include of nothing: %v", err)
	}
}

// TestMalformed: each broken input gets an error with file and line.
func TestMalformed(t *testing.T) {
	const ok = "vrrp_instance V {\n interface eth0\n virtual_router_id 1\n"
	for _, tc := range []struct {
		name, conf, want string
	}{
		{"unterminated block", ok + " virtual_ipaddress {\n  192.0.2.1\n", `k.conf:4: block "virtual_ipaddress" is not terminated`},
		{"unterminated instance", ok, `k.conf:1: block "vrrp_instance" is not terminated: a '}' is missing before the end of the file`},
		{"stray brace", ok + "}\n}\n", "k.conf:5: '}' closes no block"},
		{"placeholder left", ok + " priority {{ lb_priority }}\n}\n", `k.conf:4: a template placeholder "{{ lb_priority }}" is left unfilled`},
		{"bad VIP", ok + " virtual_ipaddress {\n  192.0.2.300/24\n }\n}\n", `k.conf:5: virtual_ipaddress: bad address "192.0.2.300/24"`},
		{"bad unicast peer", ok + " unicast_peer {\n  lb-1\n }\n}\n", `k.conf:5: unicast_peer: bad address "lb-1"`},
		{"bad unicast source", ok + " unicast_src_ip 192.0.2\n}\n", `k.conf:4: unicast_src_ip: bad address "192.0.2"`},
		{"VRID out of range", "vrrp_instance V {\n interface eth0\n virtual_router_id 256\n}\n", `k.conf:3: virtual_router_id: expected 1..255, got "256"`},
		{"priority zero", ok + " priority 0\n}\n", `k.conf:4: priority: expected 1..255, got "0"`},
		{"advert not a number", ok + " advert_int one\n}\n", `k.conf:4: advert_int: expected seconds`},
		{"bad auth", ok + " authentication {\n  auth_type MD5\n }\n}\n", `k.conf:5: auth_type: expected PASS or AH, got "MD5"`},
		{"bad state", ok + " state PRIMARY\n}\n", `k.conf:4: state: expected MASTER or BACKUP, got "PRIMARY"`},
		{"missing VRID", "vrrp_instance V {\n interface eth0\n}\n", "k.conf:1: vrrp_instance V: virtual_router_id is missing"},
		{"missing interface", "vrrp_instance V {\n virtual_router_id 1\n}\n", "k.conf:1: vrrp_instance V: interface is missing"},
		{"unknown script", ok + " track_script {\n  nope\n }\n}\n", `k.conf:5: track_script nope: no vrrp_script named "nope"`},
		{"script without command", "vrrp_script s {\n interval 2\n}\n", "k.conf:1: vrrp_script s: script is missing"},
		{"duplicate instance", ok + "}\n" + ok + "}\n", "k.conf:5: vrrp_instance V is already defined at k.conf:1"},
		{"unterminated quote", "vrrp_script s {\n script \"pgrep haproxy\n}\n", "k.conf:2: unterminated double quote"},
		{"include without a reader", "include other.conf\n", "k.conf:1: include other.conf: includes are not read here"},
		{"bad global version", "global_defs {\n vrrp_version 4\n}\n", `k.conf:2: vrrp_version: expected 2 or 3, got "4"`},
		{"instance without block", "vrrp_instance V\n", "k.conf:1: vrrp_instance needs a name and a { } block"},
		{"Latin-1 name", "vrrp_instance V\x96 {\n interface eth0\n virtual_router_id 1\n}\n", `k.conf:1: "V\x96" is not UTF-8 text, which gitedge's YAML files cannot hold: convert the file to UTF-8`},
		{"Latin-1 quoted word", ok + " notify_master \"/etc/caf\xe9.sh\"\n}\n", `k.conf:4: "/etc/caf\xe9.sh" is not UTF-8 text`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("k.conf", []byte(tc.conf), Options{})
			reporttest.WantLocated(t, err, "k.conf", tc.want)
		})
	}
}
