package reconcile

import (
	"strings"
	"testing"

	"github.com/gitedge/gitedge/dataplane"
)

// TestLocalChecks: with the node's config, validation also refuses what
// only that node would refuse at run time.
func TestLocalChecks(t *testing.T) {
	// What nodeconfig makes of a node config with an admin server and a
	// webhook (nodeconfig's tests check that it does).
	nc := &Local{Node: "lb-0", Config: "/etc/gitedge/gitedge.yaml", Listens: []LocalListen{
		{"admin.listen", "127.0.0.1:9100"}, {"webhook.listen", ":9000"}}}
	edge := func(listeners string) Files {
		return Files{"edge.yaml": []byte(`apiVersion: gitedge/v1
kind: Edge
metadata: {name: e}
spec:
  nodes: [{name: lb-1, address: 192.0.2.251}]
  listeners:
` + listeners), "backends.yaml": []byte(linkBackend)}
	}
	tests := []struct {
		name      string
		listeners string
		local     *Local
		want      []string
	}{
		{"repository alone", "    - {name: http, bind: \":9100\", mode: http, defaultBackend: web}\n", nil, nil},
		{"node config", "    - {name: http, bind: \":9100\", mode: http, defaultBackend: web}\n    - {name: hook, bind: \"0.0.0.0:9000\", mode: http, defaultBackend: web}\n    - {name: fine, bind: \"127.0.0.2:9001\", mode: http, defaultBackend: web}\n", nc, []string{
			`edge.yaml:5: Edge "e": spec.nodes: this node, "lb-0" (node config /etc/gitedge/gitedge.yaml), is not in spec.nodes [lb-1]: add it, or set node: in the node config to one of them`,
			`edge.yaml:7: Edge "e": spec.listeners[0].bind: listener "http" binds :9100, which clashes with this node's admin.listen 127.0.0.1:9100 (node config /etc/gitedge/gitedge.yaml): move one of them to another port`,
			`edge.yaml:8: Edge "e": spec.listeners[1].bind: listener "hook" binds 0.0.0.0:9000, which clashes with this node's webhook.listen :9000 (node config /etc/gitedge/gitedge.yaml): move one of them to another port`,
		}},
		{"a node without a name to check", "    - {name: http, bind: \"127.0.0.1:9100\", mode: http, defaultBackend: web}\n", &Local{Listens: []LocalListen{{"admin.listen", "127.0.0.1:9100"}}}, []string{
			`edge.yaml:7: Edge "e": spec.listeners[0].bind: listener "http" binds 127.0.0.1:9100, which clashes with this node's admin.listen 127.0.0.1:9100: move one of them to another port`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := LoadWith(edge(tt.listeners), LoadOptions{Local: tt.local})
			var got []string
			if err != nil {
				for _, e := range err.(Errors) {
					got = append(got, e.Error())
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestBindsClash(t *testing.T) {
	b := func(s string) dataplane.Bind {
		v, err := dataplane.ParseBind(s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{":80", "127.0.0.1:80", true},
		{"0.0.0.0:80", "127.0.0.1:80", true},
		{"0.0.0.0:80", "[::]:80", true},
		{"[::]:80", "[2001:db8::1]:80", true},
		{"0.0.0.0:80", "[2001:db8::1]:80", false},
		{"127.0.0.1:80", "127.0.0.2:80", false},
		{"0.0.0.0:80", "0.0.0.0:81", false},
		{"[::1]:80", "[::1]:80", true},
	}
	for _, tt := range tests {
		if got := bindsClash(b(tt.a), b(tt.b)); got != tt.want {
			t.Errorf("bindsClash(%s, %s) = %v", tt.a, tt.b, got)
		}
		if got := bindsClash(b(tt.b), b(tt.a)); got != tt.want {
			t.Errorf("bindsClash(%s, %s) = %v", tt.b, tt.a, got)
		}
	}
}

func TestLocalClashes(t *testing.T) {
	l := &Local{Listens: []LocalListen{{"admin.listen", "127.0.0.1:9000"}, {"webhook.listen", ":9000"}, {"other.listen", "127.0.0.1:9001"}}}
	if want := "webhook.listen: :9000 clashes with admin.listen 127.0.0.1:9000: use two ports"; l.Clashes() == nil || l.Clashes().Error() != want {
		t.Fatalf("got %v\nwant %s", l.Clashes(), want)
	}
	if err := (&Local{Listens: l.Listens[1:]}).Clashes(); err != nil {
		t.Errorf("no clash: %v", err)
	}
}

// TestHostVIPs: a VIP with a host prefix (/32, /128, what keepalived makes
// of a bare address) carries no subnet, so only the node-address rule
// applies; a shorter prefix must hold a node.
func TestHostVIPs(t *testing.T) {
	edge := func(vips string) Files {
		return Files{"edge.yaml": []byte(`apiVersion: gitedge/v1
kind: Edge
metadata: {name: e}
spec:
  nodes: [{name: a, address: 192.0.2.1}, {name: b, address: 192.0.2.2}]
  failover:
    - {name: VI_1, interface: eth0, virtualRouterID: 1, priority: {a: 100, b: 101}, vips: ` + vips + `}
`)}
	}
	tests := []struct {
		vips string
		want string // "" loads
	}{
		{"[192.0.2.254/32]", ""},
		{"[198.51.100.7/32]", ""},
		{`["2001:db8::7/128"]`, ""},
		{"[192.0.2.254/24]", ""},
		{"[198.51.100.7/24]", "198.51.100.7/24 is outside the subnet of every node"},
		{"[192.0.2.1/32]", `192.0.2.1 is the address of node "a"`},
	}
	for _, tt := range tests {
		_, err := Load(edge(tt.vips))
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("vips %s: %v", tt.vips, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("vips %s: got %v, want an error with %q", tt.vips, err, tt.want)
		}
	}
}
