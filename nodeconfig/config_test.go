package nodeconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	k8syaml "sigs.k8s.io/yaml"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/gitsource/relay"
	"github.com/gitedge/gitedge/reconcile"
	"github.com/gitedge/gitedge/secrets"
)

func TestExamples(t *testing.T) {
	for _, n := range []string{"lb-0", "lb-1"} {
		c, err := Load("../examples/nodes/" + n + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		if c.Node != n || c.Source.Branch != "main" || c.Webhook.Path != "/hook" || c.Proxmox.TokenID != "gitedge@pve!edge" {
			t.Errorf("%s: %+v", n, c)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"minimal", "node: a\nsource: {url: /srv/edge}\n", ""},
		{"no node", "source: {url: /srv/edge}\n", "node: missing"},
		{"no source", "node: a\n", "source.url: missing"},
		{"unknown field", "node: a\nsource: {url: x, brnch: main}\n", `node config test.yaml:2: source.brnch: unknown field "brnch" (check its spelling and the node config's fields in docs/node-config.md)`},
		{"two unknown fields", "node: a\nsource: {url: x}\nadmn: {}\nstatDir: /x\n", "node config test.yaml: 2 errors:\n  test.yaml:3: admn: unknown field \"admn\" (check its spelling and the node config's fields in docs/node-config.md)\n  test.yaml:4: statDir: unknown field"},
		// Was "json: cannot unmarshal array into Go struct field File.node of type string".
		{"wrong type", "node: [a]\nsource: {url: x}\n", "node config test.yaml:1: node: expected a string, got an array"},
		{"wrong type deep", "node: a\nsource:\n  url: x\n  depth: deep\n", "node config test.yaml:4: source.depth: expected a number, got a string"},
		{"tag and commit", "node: a\nsource: {url: x, tag: v1, commit: abc}\n", "source: set only one of branch, tag and commit"},
		{"branch and tag", "node: a\nsource: {url: x, branch: main, tag: v1}\n", "source: set only one of branch, tag and commit"},
		{"bad poll", "node: a\nsource: {url: x, poll: sometimes}\n", `source.poll: "sometimes"`},
		{"force push", "node: a\nsource: {url: x, forcePush: maybe}\n", "source.forcePush"},
		{"webhook without secret", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000'}\n", "unsigned webhooks are not accepted"},
		{"webhook without listen", "node: a\nsource: {url: x}\nwebhook: {secretFile: /s}\n", "webhook.listen: missing"},
		{"webhook path", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000', secretFile: /s, path: hook}\n", `webhook.path: "hook": expected an absolute path`},
		{"proxmox incomplete", "node: a\nsource: {url: x}\nproxmox: {url: 'https://pve:8006/api2/json'}\n", "tokenSecretFile are all required"},
		{"forge", "node: a\nsource: {url: x}\nforge: {kind: github, repository: infra/edge, tokenFile: /etc/gitedge/forge.token}\n", ""},
		{"forge incomplete", "node: a\nsource: {url: x}\nforge: {kind: gitbucket}\n", `forge.kind: "gitbucket"`},
		{"forge unknown field", "node: a\nsource: {url: x}\nforge: {kind: github, node: b}\n", `node config test.yaml:3: forge.node: unknown field "node"`},
		{"notify", "node: a\nsource: {url: x}\nnotify: [{kind: webhook, url: 'https://hooks.example/gitedge'}]\n", ""},
		{"notify incomplete", "node: a\nsource: {url: x}\nnotify: [{kind: slack}]\n", "notify[0].url: missing"},
		{"admin and webhook", "node: a\nsource: {url: /x}\nadmin: {listen: '127.0.0.1:9000'}\nwebhook: {listen: ':9000', secretFile: /s}\n",
			"webhook.listen: :9000 clashes with admin.listen 127.0.0.1:9000: use two ports"},
		{"admin off", "node: a\nsource: {url: /x}\nadmin: {listen: 'off'}\nwebhook: {listen: '127.0.0.1:9100', secretFile: /s}\n", ""},
		{"syntax", "node: lb-0\nsource: {url: [\n", "node config test.yaml:2: not valid YAML: did not find expected node content"},
		{"secrets", "node: a\nsource: {url: x}\nsecrets: {dir: /etc/gitedge/secrets, files: {vrrp-vi1: /etc/keepalived/vi1.pass}, ageIdentity: /etc/gitedge/age.key}\n", ""},
		{"secret name", "node: a\nsource: {url: x}\nsecrets: {files: {../x: /y}}\n", `secrets.files.../x: bad secret name "../x"`},
		{"secret file", "node: a\nsource: {url: x}\nsecrets: {files: {x: ''}}\n", "secrets.files.x: missing"},
		{"relay off", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000', secretFile: /s, relay: false}\n", ""},
		{"relay word", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000', secretFile: /s, relay: disabled}\n", "node config test.yaml:3: webhook.relay: expected true or false, got a string"},
		{"relay unknown field", "node: a\nsource: {url: x}\nwebhook:\n  listen: ':9000'\n  secretFile: /s\n  relay: {prot: 9000}\n", `node config test.yaml:6: webhook.relay.prot: unknown field "prot"`},
		{"relay port", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000', secretFile: /s, relay: {port: 70000}}\n", "webhook.relay.port: 70000: expected a port, 1 to 65535"},
		{"relay no port", "node: a\nsource: {url: x}\nwebhook: {listen: 'localhost:http', secretFile: /s}\n", `webhook.relay.port: missing: webhook.listen "localhost:http" names no port number`},
		{"relay window", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000', secretFile: /s, relay: {window: 1h}}\n", `webhook.relay.window: "1h": expected a duration from 1s to 10m`},
		{"relay peer scheme", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000', secretFile: /s, relay: {peers: {lb-1: 'lb-1:9000'}}}\n", `webhook.relay.peers.lb-1: "lb-1:9000": expected an http:// or https:// URL`},
		{"relay peer credentials", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000', secretFile: /s, relay: {peers: {lb-1: 'https://u:p@lb-1'}}}\n", `webhook.relay.peers.lb-1: "https://u:xxxxx@lb-1": no credentials in the URL`},
		{"relay peer port", "node: a\nsource: {url: x}\nwebhook: {listen: ':9000', secretFile: /s, relay: {peers: {lb-1: 'http://lb-1:0'}}}\n", `webhook.relay.peers.lb-1: "http://lb-1:0": port 0`},
		{"secrets unknown field", "node: a\nsource: {url: x}\nsecrets: {directory: /x}\n", `unknown field "directory"`},
		{"idle poll word", "node: a\nsource: {url: x}\nproxy: {idlePoll: sometimes}\n", `proxy.idlePoll: "sometimes": expected a duration as 200us, or off`},
		{"idle poll long", "node: a\nsource: {url: x}\nproxy: {idlePoll: 1s}\n", `proxy.idlePoll: 1s: expected 0 (off) to 10ms`},
		{"proxy unknown field", "node: a\nsource: {url: x}\nproxy: {busyPolling: true}\n", `node config test.yaml:3: proxy.busyPolling: unknown field "busyPolling"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("test.yaml", []byte(tt.yaml))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "node config test.yaml:") || strings.Contains(err.Error(), "json:") {
				t.Errorf("error %v, want it to start with the file and say %q (config %+v)", err, tt.want, c)
			}
		})
	}
}

// TestDefaults: the node-level defaults are applied here, the source's by
// gitsource, and the sections know the node and its state directory.
func TestDefaults(t *testing.T) {
	c, err := Parse("n.yaml", []byte("node: a\nsource: {url: /srv/edge}\nwebhook: {listen: ':9000', secretFile: /s}\nforge: {kind: gitea, api: 'https://gitea.example/api/v1', repository: o/r, tokenFile: /t}\n"))
	if err != nil {
		t.Fatal(err)
	}
	wantSource := gitsource.Config{URL: "/srv/edge", StateDir: DefaultStateDir, Node: "a"}.WithDefaults()
	if diff := cmp.Diff(wantSource, c.Source); diff != "" {
		t.Errorf("source (-want +got):\n%s", diff)
	}
	if c.Source.Branch != "main" || c.Source.Poll != "@every 1m" {
		t.Errorf("gitsource's defaults not applied: %+v", c.Source)
	}
	if c.AdminListen != DefaultAdminListen || c.StateDir != DefaultStateDir {
		t.Errorf("node defaults: admin %q, stateDir %q", c.AdminListen, c.StateDir)
	}
	if c.Webhook.Ref != "refs/heads/main" || c.Forge.Node != "a" || c.Notify.Node != "a" || len(c.Notify.Sinks) != 0 {
		t.Errorf("sections: webhook %+v, forge %+v, notify %+v", c.Webhook, c.Forge, c.Notify)
	}
	tag, err := Parse("n.yaml", []byte("node: a\nsource: {url: /x, tag: v1}\nwebhook: {listen: ':9000', secretFile: /s}\n"))
	if err != nil || tag.Source.Branch != "" || tag.Source.Ref() != "refs/tags/v1" || tag.Webhook.Ref != "refs/tags/v1" {
		t.Errorf("tag pin: %v %+v", err, tag)
	}
	off, err := Parse("n.yaml", []byte("node: a\nsource: {url: /x}\nadmin: {listen: 'off'}\n"))
	if err != nil || off.AdminListen != "" || len(off.Local().Listens) != 0 {
		t.Errorf("admin off: %v %+v", err, off)
	}
}

// TestIdlePoll: proxy.idlePoll becomes the dataplane's Options.IdlePoll:
// unset its default (0), off or zero none (negative).
func TestIdlePoll(t *testing.T) {
	for _, tc := range []struct {
		section string
		want    time.Duration
	}{
		{"", 0},
		{"proxy: {}\n", 0},
		{"proxy: {idlePoll: 50us}\n", 50 * time.Microsecond},
		{"proxy: {idlePoll: 'off'}\n", -1},
		{"proxy: {idlePoll: 0s}\n", -1},
	} {
		c, err := Parse("test.yaml", []byte("node: a\nsource: {url: /x}\n"+tc.section))
		if err != nil {
			t.Errorf("%q: %v", tc.section, err)
		} else if c.IdlePoll != tc.want {
			t.Errorf("%q: idle poll %v, want %v", tc.section, c.IdlePoll, tc.want)
		}
	}
}

// TestBuildQuotesNothing: a config made in code (the built-in one of
// `gitedge run --source DIR`) takes any path as it is, where text pasted
// into YAML would break on a quote or a colon.
func TestBuildQuotesNothing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `a "dir": with #, quotes`)
	c, err := Build(File{Node: "local", Source: Source{URL: dir}, StateDir: t.TempDir()}, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.URL != dir {
		t.Errorf("url %q, want %q", c.Source.URL, dir)
	}
	if _, err := Build(File{Source: Source{URL: dir}}, ""); err == nil || !strings.HasPrefix(err.Error(), "node config: node: missing") {
		t.Errorf("a built config without a node: %v", err)
	}
}

// TestFileRoundTrip: a File marshals to YAML that parses back to itself
// (the demo writes its node config this way).
func TestFileRoundTrip(t *testing.T) {
	f := File{Node: "lb-0", Source: Source{URL: "/srv/edge", Poll: "@every 10s"},
		Webhook: &Webhook{Listen: "127.0.0.1:9000", SecretFile: "/s", Relay: &WebhookRelay{Off: true}}, Admin: Admin{Listen: "127.0.0.1:9101"}, StateDir: "/tmp/x"}
	b, err := k8syaml.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var back File
	if err := k8syaml.UnmarshalStrict(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s\n%s", diff, b)
	}
}

func TestLocal(t *testing.T) {
	t.Setenv(secrets.CredentialsEnv, "")
	c, err := Parse("/etc/gitedge/gitedge.yaml", []byte("node: lb-0\nsource: {url: /srv/edge}\nwebhook: {listen: ':9000', secretFile: /s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := &reconcile.Local{Node: "lb-0", Config: "/etc/gitedge/gitedge.yaml", Listens: []reconcile.LocalListen{
		{Field: "admin.listen", Addr: "127.0.0.1:9100"}, {Field: "webhook.listen", Addr: ":9000"}},
		Secrets: &secrets.Store{Config: "/etc/gitedge/gitedge.yaml"}}
	if diff := cmp.Diff(want, c.Local()); diff != "" {
		t.Errorf("Local (-want +got):\n%s", diff)
	}
}

func TestProxmoxClient(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	empty := filepath.Join(dir, "empty")
	os.WriteFile(token, []byte("s3cret\n"), 0o600)
	os.WriteFile(empty, []byte("\n"), 0o600)
	build := func(file string) *Config {
		c, err := Build(File{Node: "a", Source: Source{URL: "/x"}, Proxmox: &Proxmox{URL: "https://pve:8006/api2/json", TokenID: "u@pam!t", TokenSecretFile: file}}, "n.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	cc, err := build(token).ProxmoxClient()
	if err != nil || cc.TokenSecret.Reveal() != "s3cret" || cc.TokenID != "u@pam!t" {
		t.Errorf("client %+v, %v", cc, err)
	}
	if _, err := build(empty).ProxmoxClient(); err == nil || err.Error() != "node config n.yaml: proxmox.tokenSecretFile "+empty+" is empty" {
		t.Errorf("empty token: %v", err)
	}
	if _, err := build(filepath.Join(dir, "none")).ProxmoxClient(); err == nil || !strings.Contains(err.Error(), "proxmox.tokenSecretFile") {
		t.Errorf("missing token: %v", err)
	}
	c, _ := Build(File{Node: "a", Source: Source{URL: "/x"}}, "n.yaml")
	if _, err := c.ProxmoxClient(); err == nil || !strings.Contains(err.Error(), "no proxmox section") {
		t.Errorf("no section: %v", err)
	}
}

// TestWebhookLimits: the webhook's limits are settable from the node
// config (a node behind a reverse proxy sees every delivery from one
// address, past the default of 4 bodies per address); unset ones keep
// gitsource's defaults, bad ones are refused by field.
func TestWebhookLimits(t *testing.T) {
	c, err := Parse("test.yaml", []byte(`node: a
source: {url: /x}
webhook:
  listen: ":9000"
  secretFile: /s
  limits: {maxBodyBytes: 8388608, maxConns: 512, maxConnsPerSource: 300, maxBodies: 64, maxBodiesPerSource: 64, headerTimeout: 2s, bodyTimeout: 8s, deliveries: 100}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := gitsource.WebhookConfig{Listen: ":9000", SecretFile: "/s", Ref: "refs/heads/main", MaxBody: 8 << 20, MaxConns: 512,
		MaxConnsPerSource: 300, MaxBodies: 64, MaxBodiesPerSource: 64, HeaderTimeout: 2 * time.Second, BodyTimeout: 8 * time.Second, Deliveries: 100}
	if diff := cmp.Diff(want, *c.Webhook); diff != "" {
		t.Errorf("webhook config (-want +got):\n%s", diff)
	}
	_, err = Parse("test.yaml", []byte("node: a\nsource: {url: /x}\nwebhook: {listen: ':9000', secretFile: /s, limits: {maxBodies: -1, bodyTimeout: 0s}}\n"))
	for _, want := range []string{"webhook.limits.maxBodies: -1: expected a positive number", `webhook.limits.bodyTimeout: "0s": expected a positive duration`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want %q", err, want)
		}

	}
}

// TestWebhookRelay: the relay is on by default with a webhook, addressed
// by this node's webhook port and path and signed with its secret; every
// setting of webhook.relay lands in the sending and receiving sides;
// false turns the sending off and leaves the endpoint.
func TestWebhookRelay(t *testing.T) {
	for _, tc := range []struct {
		name, relay string
		want        *relay.Config
		window      time.Duration
		key         string
	}{
		{name: "default", want: &relay.Config{Node: "lb-0", KeyFile: "/s", Port: 9000, Path: "/in/relay", Peers: map[string]string{}}},
		{name: "true", relay: "true", want: &relay.Config{Node: "lb-0", KeyFile: "/s", Port: 9000, Path: "/in/relay", Peers: map[string]string{}}},
		{name: "off", relay: "false"},
		{name: "settings", relay: "{keyFile: /k, port: 9443, window: 10s, peers: {lb-1: 'https://lb-1.example:8443', lb-2: 'http://192.0.2.12:9000/gitedge/relay'}}",
			want: &relay.Config{Node: "lb-0", KeyFile: "/k", Port: 9443, Path: "/in/relay", Peers: map[string]string{
				"lb-1": "https://lb-1.example:8443/in/relay", "lb-2": "http://192.0.2.12:9000/gitedge/relay"}},
			window: 10 * time.Second, key: "/k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			y := "node: lb-0\nsource: {url: /x}\nwebhook: {listen: ':9000', path: /in, secretFile: /s"
			if tc.relay != "" {
				y += ", relay: " + tc.relay
			}
			c, err := Parse("test.yaml", []byte(y+"}\n"))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, c.Relay); diff != "" {
				t.Errorf("relay (-want +got):\n%s", diff)
			}
			if c.Webhook.RelayWindow != tc.window || c.Webhook.RelayKeyFile != tc.key {
				t.Errorf("the endpoint's window %v, key file %q; want %v, %q", c.Webhook.RelayWindow, c.Webhook.RelayKeyFile, tc.window, tc.key)
			}
		})
	}
	// No webhook: no relay.
	c, err := Parse("test.yaml", []byte("node: lb-0\nsource: {url: /x}\n"))
	if err != nil || c.Relay != nil {
		t.Fatalf("relay %+v, %v without a webhook; want none", c.Relay, err)
	}
}

// TestSecrets: the secrets section becomes the node's store, with
// systemd's credentials directory from the environment.
func TestSecrets(t *testing.T) {
	t.Setenv(secrets.CredentialsEnv, "/run/credentials/gitedge.service")
	c, err := Parse("/etc/gitedge/gitedge.yaml", []byte("node: a\nsource: {url: /x}\nsecrets: {dir: /srv/s, files: {vi1: /k/vi1}, ageIdentity: /k/age}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := secrets.Store{Dir: "/srv/s", Files: map[string]string{"vi1": "/k/vi1"}, AgeIdentity: "/k/age",
		CredentialsDir: "/run/credentials/gitedge.service", Config: "/etc/gitedge/gitedge.yaml"}
	if diff := cmp.Diff(want, c.Secrets); diff != "" {
		t.Errorf("store (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(&want, c.Local().Secrets); diff != "" {
		t.Errorf("Local().Secrets (-want +got):\n%s", diff)
	}
	t.Setenv(secrets.CredentialsEnv, "")
	d, err := Parse("n.yaml", []byte("node: a\nsource: {url: /x}\n"))
	if err != nil || !cmp.Equal(d.Secrets, secrets.Store{Config: "n.yaml"}) {
		t.Errorf("without a section: %v %+v (want the defaults)", err, d.Secrets)
	}
}
