package importer

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// kaConf is a keepalived.conf for one node, with extra instance lines.
func kaConf(prio, extra string) string {
	return `global_defs {
    router_id LB
}
vrrp_script chk {
    script "/usr/bin/pgrep haproxy"
    interval 2
}
vrrp_instance VI_1 {
    interface eth0
    virtual_router_id 33
    priority ` + prio + `
    advert_int 1
` + extra + `
    virtual_ipaddress {
        192.0.2.254/24
    }
    track_script {
        chk
    }
}
`
}

func runKeepalived(t *testing.T, confs map[string]string, checks ...check) {
	t.Helper()
	files := map[string]string{}
	opts := Options{}
	for _, node := range slices.Sorted(maps.Keys(confs)) {
		name := node + ".conf"
		files[name] = confs[node]
		opts.Keepalived = append(opts.Keepalived, NodeFile{Node: node, Path: name})
	}
	runChecks(t, opts, files, checks...)
}

func TestKeepalived(t *testing.T) {
	uni := func(src, peer string) string {
		return "    unicast_src_ip " + src + "\n    unicast_peer {\n        " + peer + "\n    }\n"
	}
	for _, tc := range []struct {
		name   string
		confs  map[string]string
		checks []check
	}{
		{"merged with a priority per node", map[string]string{
			"lb-0": kaConf("100", uni("192.0.2.10", "192.0.2.11")),
			"lb-1": kaConf("90", uni("192.0.2.11", "192.0.2.10")),
		}, []check{
			"edge.yaml: - {name: lb-0, address: 192.0.2.10} # unicast_src_ip, lb-0.conf:13",
			"edge.yaml: priority: {lb-0: 100, lb-1: 90} # lb-0.conf:11 (lb-0), lb-1.conf:11 (lb-1)",
			"edge.yaml: version: 2", "edge.yaml: advertInterval: 1s", "edge.yaml: unicastPeers: true",
			"edge.yaml: vips: [192.0.2.254/24]", "edge.yaml: track: {proxy: true}", "edge.yaml: preempt: true",
			"note: global_defs: router_id LB",
		}},
		{"nopreempt, v3, sub-second adverts, auth ignored", map[string]string{
			"a": kaConf("100", "    vrrp_version 3\n    nopreempt\n    preempt_delay 5\n    advert_int 0.5\n    authentication {\n        auth_type PASS\n        auth_pass secret\n    }\n    unicast_src_ip 192.0.2.1\n"),
			"b": kaConf("50", "    vrrp_version 3\n    nopreempt\n    preempt_delay 5\n    advert_int 0.5\n    authentication {\n        auth_type PASS\n        auth_pass secret\n    }\n    unicast_src_ip 192.0.2.2\n"),
		}, []check{"edge.yaml: preempt: false", "edge.yaml: version: 3", "edge.yaml: advertInterval: 500ms", "!edge.yaml: auth",
			"!edge.yaml: preemptDelay", "note: preempt_delay: no effect with nopreempt", "note: VRRP v3 has no authentication"}},
		{"v2 rounds sub-second adverts", map[string]string{
			"a": kaConf("100", "    advert_int 0.5\n    unicast_src_ip 192.0.2.1\n"), "b": kaConf("50", "    advert_int 0.5\n    unicast_src_ip 192.0.2.2\n"),
		}, []check{"edge.yaml: advertInterval: 1s", "changed: VRRP v2 counts whole seconds: 500ms becomes 1s"}},
		{"global vrrp_version", map[string]string{
			"a": "global_defs {\n  vrrp_version 3\n}\n" + kaConf("100", "    unicast_src_ip 192.0.2.1\n"),
			"b": "global_defs {\n  vrrp_version 3\n}\n" + kaConf("50", "    unicast_src_ip 192.0.2.2\n"),
		}, []check{"edge.yaml: version: 3"}},
		{"auth and the password in git", map[string]string{
			"a": kaConf("100", "    authentication {\n        auth_type PASS\n        auth_pass 123456789\n    }\n    unicast_src_ip 192.0.2.1\n"),
			"b": kaConf("50", "    authentication {\n        auth_type PASS\n        auth_pass 123456789\n    }\n    unicast_src_ip 192.0.2.2\n"),
		}, []check{`edge.yaml: auth: {type: pass, password: "12345678"}`, "changed: keepalived used only the first 8 characters",
			"note: written into edge.yaml as is: the password is in git"}},
		{"AH", map[string]string{
			"a": kaConf("100", "    authentication {\n        auth_type AH\n        auth_pass x\n    }\n    unicast_src_ip 192.0.2.1\n"),
			"b": kaConf("50", "    authentication {\n        auth_type AH\n        auth_pass x\n    }\n    unicast_src_ip 192.0.2.2\n"),
		}, []check{"dropped: auth_type AH: gitedge supports auth_type PASS only", "!edge.yaml: auth"}},
		{"VIP details", map[string]string{
			"a": kaConf("100", "    unicast_src_ip 192.0.2.1\n    virtual_ipaddress_excluded {\n        192.0.2.253 dev eth1 label eth1:0\n    }\n"),
			"b": kaConf("50", "    unicast_src_ip 192.0.2.2\n    virtual_ipaddress_excluded {\n        192.0.2.253 dev eth1 label eth1:0\n    }\n"),
		}, []check{"edge.yaml: vips: [192.0.2.253/32, 192.0.2.254/24]", "note: 192.0.2.253: no prefix length: keepalived's default /32",
			"changed: 192.0.2.253/32 dev eth1: gitedge adds every VIP of an instance on the instance's interface, eth0",
			"note: label eth1:0", "changed: virtual_ipaddress_excluded 192.0.2.253/32"}},
		{"script that is not a HAProxy check", map[string]string{
			"a": "vrrp_script s {\n  script \"/usr/local/bin/check_db\"\n  weight -10\n}\nvrrp_instance V {\n  interface eth0\n  virtual_router_id 1\n  unicast_src_ip 192.0.2.1\n  virtual_ipaddress {\n    192.0.2.9\n  }\n  track_script {\n    s\n  }\n}\n",
			"b": "vrrp_script s {\n  script \"/usr/local/bin/check_db\"\n}\nvrrp_instance V {\n  interface eth0\n  virtual_router_id 1\n  unicast_src_ip 192.0.2.2\n  virtual_ipaddress {\n    192.0.2.9\n  }\n  track_script {\n    s\n  }\n}\n",
		}, []check{`dropped: track_script s: script "/usr/local/bin/check_db": gitedge tracks only its own proxy listeners`, "!edge.yaml: track:",
			"edge.yaml: priority: {a: 100, b: 100} # a: keepalived's default, b: keepalived's default"}},
		{"weighted HAProxy check", map[string]string{
			"a": kaConf("100", "    unicast_src_ip 192.0.2.1\n"), "b": strings.Replace(kaConf("50", "    unicast_src_ip 192.0.2.2\n"), "        chk\n", "        chk weight -30\n", 1),
		}, []check{"edge.yaml: track: {proxy: true}", "changed: b.conf:19: vrrp_instance VI_1: track_script chk weight: keepalived on b changed the priority by -30"}},
		{"instance lines without counterpart", map[string]string{
			"a": kaConf("100", "    unicast_src_ip 192.0.2.1\n    notify_master /x.sh\n    use_vmac\n    state MASTER\n    track_interface {\n        eth1\n    }\n    garp_master_delay 2\n"),
			"b": kaConf("50", "    unicast_src_ip 192.0.2.2\n    notify_master /x.sh\n    use_vmac\n    track_interface {\n        eth1\n    }\n    garp_master_delay 2\n"),
		}, []check{"dropped: notify_master /x.sh: gitedge runs no scripts on transitions", "dropped: use_vmac", "note: state MASTER: gitedge starts every instance as BACKUP",
			"edge.yaml: track: {proxy: true, interfaces: [eth1]}", "edge.yaml: garp: {delay: 2s}"}},
		{"differences between nodes", map[string]string{
			"a": kaConf("100", "    unicast_src_ip 192.0.2.1\n"),
			"b": strings.Replace(kaConf("50", "    unicast_src_ip 192.0.2.2\n"), "interface eth0", "interface ens18", 1),
		}, []check{"edge.yaml: interface: eth0", "changed: interface: ens18 on b but eth0 on a"}},
		{"unicast peers that are not the other nodes", map[string]string{
			"a": kaConf("100", uni("192.0.2.1", "192.0.2.99")), "b": kaConf("50", uni("192.0.2.2", "192.0.2.1")),
		}, []check{"changed: unicast_peer: a sent to [192.0.2.99]; gitedge sends to the other nodes' addresses [192.0.2.2]"}},
		{"unicast on one node only", map[string]string{
			"a": kaConf("100", uni("192.0.2.1", "192.0.2.2")), "b": kaConf("50", "    unicast_src_ip 192.0.2.2\n"),
		}, []check{"changed: only some nodes use unicast", "!edge.yaml: unicastPeers"}},
		{"other top-level blocks", map[string]string{
			"a": kaConf("100", "    unicast_src_ip 192.0.2.1\n") + "vrrp_sync_group G {\n  group {\n    VI_1\n  }\n}\nvirtual_server 192.0.2.254 80 {\n}\n",
			"b": kaConf("50", "    unicast_src_ip 192.0.2.2\n"),
		}, []check{"dropped: vrrp_sync_group G { … }: gitedge has no sync groups", "dropped: virtual_server 192.0.2.254 80 { … }: LVS virtual servers"}},
		// Errors.
		{"different VRIDs", map[string]string{
			"a": kaConf("100", "    unicast_src_ip 192.0.2.1\n"), "b": strings.Replace(kaConf("50", "    unicast_src_ip 192.0.2.2\n"), "virtual_router_id 33", "virtual_router_id 34", 1),
		}, []check{"error: b.conf:8: vrrp_instance VI_1: virtual_router_id 34 on b but 33 on a: these are different VRRP routers"}},
		{"an instance on one node only", map[string]string{
			"a": kaConf("100", "    unicast_src_ip 192.0.2.1\n") + "vrrp_instance VI_2 {\n  interface eth0\n  virtual_router_id 2\n  virtual_ipaddress {\n    192.0.2.2\n  }\n}\n",
			"b": kaConf("50", "    unicast_src_ip 192.0.2.2\n"),
		}, []check{"error: a.conf:22: vrrp_instance VI_2 is not in the configuration of b: gitedge runs every failover instance on every node"}},
		{"no node address", map[string]string{"a": kaConf("100", ""), "b": kaConf("50", "")},
			[]check{"error: node a: no address: keepalived has no unicast_src_ip for it and no Terraform VM named a has a static ipconfig0"}},
		{"parse errors name file and line", map[string]string{"a": kaConf("{{ prio }}", ""), "b": kaConf("50", "  unicast_src_ip nope\n")},
			[]check{`error: a.conf:11: a template placeholder "{{ prio }}" is left unfilled`, `b.conf:13: unicast_src_ip: bad address "nope"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runKeepalived(t, tc.confs, tc.checks...)
		})
	}
}

// TestKeepalivedSecretPassword: --secret-password writes a reference the
// nodes resolve, never the password, and the report says where it goes.
func TestKeepalivedSecretPassword(t *testing.T) {
	auth := func(pass, src string) string {
		return "    authentication {\n        auth_type PASS\n        auth_pass " + pass + "\n    }\n    unicast_src_ip " + src + "\n"
	}
	two := func(pass2 string) map[string]string {
		c := func(prio, src, pass string) string {
			second := strings.ReplaceAll(strings.ReplaceAll(kaConf(prio, auth(pass, src)), "VI_1", "VI_2"), "virtual_router_id 33", "virtual_router_id 34")
			second = strings.ReplaceAll(second, "192.0.2.254/24", "192.0.2.253/24")
			second = second[strings.Index(second, "vrrp_instance"):]
			return kaConf(prio, auth("pw-one", src)) + second
		}
		return map[string]string{"a": c("100", "192.0.2.1", pass2), "b": c("50", "192.0.2.2", pass2)}
	}
	for _, tc := range []struct {
		name, secret string
		confs        map[string]string
		checks       []check
	}{
		{"one name", "vrrp-vi1", map[string]string{"a": kaConf("100", auth("pw-one", "192.0.2.1")), "b": kaConf("50", auth("pw-one", "192.0.2.2"))},
			[]check{"edge.yaml: auth: {type: pass, password: {secret: vrrp-vi1}}", "!edge.yaml: pw-one",
				"note: written as {secret: vrrp-vi1}: on every node, put this auth_pass into /etc/gitedge/secrets/vrrp-vi1 (chown root:gitedge, chmod 0640)"}},
		{"a name per instance", "vrrp-{instance}", two("pw-two"),
			[]check{"edge.yaml: password: {secret: vrrp-VI_1}", "edge.yaml: password: {secret: vrrp-VI_2}", "!edge.yaml: pw-"}},
		{"one name, one password", "vrrp", two("pw-one"),
			[]check{"edge.yaml: password: {secret: vrrp}}", "!edge.yaml: pw-"}},
		{"one name, two passwords", "vrrp", two("pw-two"),
			[]check{"error: vrrp_instance VI_2: --secret-password vrrp: vrrp_instance VI_1 has another password under the same name: put {instance} in the name"}},
		{"a name that is not a file name", "../x", map[string]string{"a": kaConf("100", auth("pw-one", "192.0.2.1")), "b": kaConf("50", auth("pw-one", "192.0.2.2"))},
			[]check{`error: --secret-password ../x: bad secret name "../x"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{}
			opts := Options{SecretPassword: tc.secret}
			for _, node := range slices.Sorted(maps.Keys(tc.confs)) {
				files[node+".conf"] = tc.confs[node]
				opts.Keepalived = append(opts.Keepalived, NodeFile{Node: node, Path: node + ".conf"})
			}
			runChecks(t, opts, files, tc.checks...)
		})
	}
}

// TestKeepalivedPasswordsNeverInTheReport: nodes that disagree on the
// password get a report item naming the nodes and where each one sets it,
// never a value, with or without --secret-password; nor does an error
// about a malformed auth_pass line show it.
func TestKeepalivedPasswordsNeverInTheReport(t *testing.T) {
	auth := func(pass, src string) string {
		return "    authentication {\n        auth_type PASS\n        auth_pass " + pass + "\n    }\n    unicast_src_ip " + src + "\n"
	}
	for _, tc := range []struct {
		name, secret string
		a, b         string // auth_pass of each node
		want         string // a report item or "error: " and the error
	}{
		{"values in git", "", "pw-aaaa", "pw-bbbb",
			"b.conf:13: vrrp_instance VI_1: auth_pass: b (b.conf:13) has another password than a (a.conf:13): gitedge has one password for every node, a's (the values are not shown)"},
		{"a secret", "vrrp-{instance}", "pw-aaaa", "pw-bbbb", "auth_pass: b (b.conf:13) has another password than a (a.conf:13)"},
		{"a malformed line", "", "pw-aaaa", "pw-bbbb extra", "error: b.conf:15: authentication: auth_pass takes one value (the password, not shown here), got 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"a.conf": kaConf("100", auth(tc.a, "192.0.2.1")), "b.conf": kaConf("50", auth(tc.b, "192.0.2.2"))}
			opts := Options{SecretPassword: tc.secret, ReadFile: memFiles(files),
				Keepalived: []NodeFile{{Node: "a", Path: "a.conf"}, {Node: "b", Path: "b.conf"}}}
			res, err := Import(opts)
			var out string
			if err != nil {
				out = err.Error()
			}
			if res != nil {
				var b strings.Builder
				_ = res.Report.Write(&b)
				out += b.String()
			}
			want, isErr := strings.CutPrefix(tc.want, "error: ")
			if isErr != (err != nil) || !strings.Contains(out, want) {
				t.Errorf("error %v; want %q in:\n%s", err, tc.want, out)
			}
			if strings.Contains(out, "pw-aaaa") || strings.Contains(out, "pw-bbbb") {
				t.Errorf("the report or error shows a password:\n%s", out)
			}
		})
	}
}

// TestKeepalivedNodeAddresses: a multicast keepalived setup names no node
// address; --address gives it (issue 13's review: "node lb-0: no address"
// with no way out but Terraform), and a missing one says which flag adds
// it.
func TestKeepalivedNodeAddresses(t *testing.T) {
	uni := "    unicast_src_ip 192.0.2.10\n    unicast_peer {\n        192.0.2.11\n    }\n"
	uni1 := "    unicast_src_ip 192.0.2.11\n    unicast_peer {\n        192.0.2.10\n    }\n"
	files := map[string]string{"a.conf": kaConf("100", ""), "b.conf": kaConf("90", ""), "u.conf": kaConf("100", uni), "v.conf": kaConf("90", uni1)}
	addr := func(node, a string) NodeAddress { return NodeAddress{node, netip.MustParseAddr(a)} }
	for _, tc := range []struct {
		name  string
		confs []NodeFile
		given []NodeAddress
		want  string // in edge.yaml, or "error: " and the error
	}{
		{"given", []NodeFile{{"lb-0", "a.conf"}, {"lb-1", "b.conf"}}, []NodeAddress{addr("lb-0", "192.0.2.250"), addr("lb-1", "192.0.2.251")},
			"- {name: lb-0, address: 192.0.2.250} # --address lb-0=192.0.2.250\n    - {name: lb-1, address: 192.0.2.251} # --address lb-1=192.0.2.251"},
		{"missing", []NodeFile{{"lb-0", "a.conf"}, {"lb-1", "b.conf"}}, []NodeAddress{addr("lb-0", "192.0.2.250")},
			"error: node lb-1: no address: keepalived has no unicast_src_ip for it and no Terraform VM named lb-1 has a static ipconfig0; spec.nodes needs every node's address: give it with --address lb-1=ADDRESS"},
		{"unknown node", []NodeFile{{"lb-0", "a.conf"}}, []NodeAddress{addr("lb-0", "192.0.2.250"), addr("lb-9", "192.0.2.9")},
			"error: --address lb-9=192.0.2.9: no node lb-9; the nodes are those of --keepalived: lb-0"},
		{"same as unicast_src_ip", []NodeFile{{"lb-0", "u.conf"}, {"lb-1", "v.conf"}}, []NodeAddress{addr("lb-0", "192.0.2.10")},
			"- {name: lb-0, address: 192.0.2.10} # unicast_src_ip, u.conf:13"},
		{"other than unicast_src_ip", []NodeFile{{"lb-0", "u.conf"}, {"lb-1", "v.conf"}}, []NodeAddress{addr("lb-0", "192.0.2.99")},
			"error: --address lb-0=192.0.2.99: keepalived gives node lb-0 the address 192.0.2.10 (unicast_src_ip, u.conf:13)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Import(Options{Keepalived: tc.confs, Addresses: tc.given, ReadFile: memFiles(files)})
			want, isErr := strings.CutPrefix(tc.want, "error: ")
			switch {
			case isErr && (err == nil || !strings.Contains(err.Error(), want)):
				t.Errorf("error %v, want %q", err, want)
			case !isErr && err != nil:
				t.Errorf("error %v", err)
			case !isErr && !strings.Contains(string(res.Files["edge.yaml"]), want):
				t.Errorf("edge.yaml lacks %q:\n%s", want, res.Files["edge.yaml"])
			}
		})
	}
}
