package reconcile

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestFailoverFor(t *testing.T) {
	d := mustLoad(t, "testdata/valid/failover-only")
	tests := []struct {
		node     string
		priority []uint8
		peers    []netip.Addr // of the unicast instance VI_6
		source   netip.Addr
	}{
		{"a", []uint8{254, 100}, []netip.Addr{netip.MustParseAddr("192.0.2.2")}, netip.MustParseAddr("192.0.2.1")},
		{"b", []uint8{100, 200}, []netip.Addr{netip.MustParseAddr("192.0.2.1")}, netip.MustParseAddr("192.0.2.2")},
	}
	for _, tt := range tests {
		cfg, err := d.FailoverFor(tt.node)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Instances) != 2 {
			t.Fatalf("%s: %d instances", tt.node, len(cfg.Instances))
		}
		for i, in := range cfg.Instances {
			if in.Priority != tt.priority[i] {
				t.Errorf("%s %s: priority %d, want %d", tt.node, in.Name, in.Priority, tt.priority[i])
			}
		}
		v4, v6 := cfg.Instances[0], cfg.Instances[1]
		if len(v4.UnicastPeers) != 0 || v4.UnicastSource.IsValid() {
			t.Errorf("%s VI_4 is multicast but got peers %v", tt.node, v4.UnicastPeers)
		}
		if !slices.Equal(v6.UnicastPeers, tt.peers) || v6.UnicastSource != tt.source {
			t.Errorf("%s VI_6 peers %v source %v, want %v %v", tt.node, v6.UnicastPeers, v6.UnicastSource, tt.peers, tt.source)
		}
		if v6.Preempt || !v4.Preempt || v4.AdvertInterval.Milliseconds() != 100 || v4.Version != 3 {
			t.Errorf("%s: settings not carried over: %+v / %+v", tt.node, v4, v6)
		}
	}
	if _, err := d.FailoverFor("c"); err == nil || !strings.Contains(err.Error(), `node "c" is not in`) {
		t.Errorf("unknown node: %v", err)
	}
	// The configs handed to two nodes must not share slices.
	a, _ := d.FailoverFor("a")
	b, _ := d.FailoverFor("b")
	a.Instances[0].VIPs[0] = netip.MustParsePrefix("198.51.100.1/32")
	if b.Instances[0].VIPs[0] == a.Instances[0].VIPs[0] {
		t.Errorf("FailoverFor results share memory")
	}
}

func TestDefaultsApplied(t *testing.T) {
	d := mustLoad(t, "testdata/valid/proxy-only")
	be, ok := d.Dataplane.Backend("app")
	if !ok {
		t.Fatal("backend app missing")
	}
	if be.ConnectTimeout != defConnectTimeout || be.Retries != defRetries || be.HealthCheck.Interval != defCheckInterval ||
		be.HealthCheck.Rise != defCheckRise || be.Servers[1].Weight != defWeight || be.ProxyProtocol != "none" {
		t.Errorf("defaults not applied: %+v", be)
	}
	if be.Servers[1].Address.String() != "[2001:db8::10]:8080" {
		t.Errorf("IPv6 server address %v", be.Servers[1].Address)
	}
	l := d.Dataplane.Listeners[1]
	if l.Bind.String() != "[::1]:8443" || l.InspectTimeout != defInspectTimeout || l.MaxHeaderBytes != defMaxHeaderBytes || !l.DeferAccept {
		t.Errorf("listener defaults: %+v", l)
	}
	if d.Dataplane.Listeners[0].DeferAccept {
		t.Errorf("deferAccept: false not carried over: %+v", d.Dataplane.Listeners[0])
	}
	hosts := d.Dataplane.Routes[0].Hosts
	if !slices.Equal(hosts, []string{"*.apps.example.org", "app.example.org"}) {
		t.Errorf("hosts not normalised: %v", hosts)
	}
}
