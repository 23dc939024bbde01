package infra_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
)

// A sequence of desired configs applied to one simulator; after each step
// the plan and the whole simulator state are compared with golden text
// (testdata/sequence/*.txt, rewritten with -update).
func TestStateSequence(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	rec := r.reconciler(t)
	base := homelab()
	steps := []struct {
		name string
		cfg  func() infra.Config
	}{
		{"01-create", func() infra.Config { return base }},
		{"02-memory-and-ha-stop", func() infra.Config {
			c := homelab()
			c.VMs[0].Memory = 8192
			c.VMs[1].HA = &infra.HA{Group: "main", State: "stopped"}
			return c
		}},
		{"03-lb-1-without-ha", func() infra.Config {
			c := homelab()
			c.VMs[0].Memory = 8192
			c.VMs[1].HA = nil
			c.VMs[1].Disk.Size = 16 << 30
			return c
		}},
		{"04-lb-1-dropped", func() infra.Config {
			c := homelab()
			c.VMs[0].Memory = 8192
			c.VMs = c.VMs[:1]
			return c
		}},
		{"05-pruned", func() infra.Config {
			c := homelab()
			c.VMs[0].Memory = 8192
			c.VMs = c.VMs[:1]
			c.Prune = true
			return c
		}},
	}
	for _, s := range steps {
		res := apply(t, rec, s.cfg())
		var b strings.Builder
		fmt.Fprintf(&b, "# plan\n%s# state\n%s", res.Plan, r.sim.Dump())
		golden(t, "sequence/"+s.name+".txt", b.String())
		// Every step converges in one pass.
		res = r.applyQuiet(t, rec, s.cfg(), s.name+": second pass")
	}
}

func TestInventory(t *testing.T) {
	ctx := context.Background()
	t.Run("agent addresses", func(t *testing.T) {
		r := newRig(t, pvesim.Options{BootDelay: 100 * time.Millisecond})
		cfg := homelab()
		dhcp := cfg.VMs[1]
		dhcp.Name, dhcp.VMID, dhcp.CloudInit.IPConfig, dhcp.HA = "dhcp-0", 160, infra.IPConfig{}, nil
		cfg.VMs = append(cfg.VMs, dhcp, infra.VM{Name: "later", VMID: 170, Node: "proxmox1", Clone: pvesim.TemplateName})
		apply(t, r.reconciler(t), infra.Config{VMs: cfg.VMs[:3]})
		hosts, err := infra.Inventory(ctx, r.api, cfg, 5*time.Second, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := infra.WriteINI(&b, "loadbalancer", hosts); err != nil {
			t.Fatal(err)
		}
		want := "[loadbalancer]\nlb-0 ansible_host=192.0.2.250\nlb-1 ansible_host=192.0.2.251\ndhcp-0 ansible_host=198.51.100.170\n# later: no address: not created yet\n"
		if b.String() != want {
			t.Errorf("inventory:\n%s\nwant:\n%s", b.String(), want)
		}
		for _, h := range hosts[:3] {
			if h.Source != "agent" {
				t.Errorf("%s: source %q, want agent", h.Name, h.Source)
			}
		}
	})
	t.Run("agent not up yet", func(t *testing.T) {
		r := newRig(t, pvesim.Options{BootDelay: time.Hour})
		cfg := homelab()
		dhcp := cfg.VMs[1]
		dhcp.Name, dhcp.VMID, dhcp.CloudInit.IPConfig = "dhcp-0", 160, infra.IPConfig{}
		cfg.VMs = append(cfg.VMs[:1], dhcp)
		apply(t, r.reconciler(t), cfg)
		r.sim.Edit(func(st *pvesim.State) {
			st.VMs[400] = &pvesim.VMState{VMID: 400, Node: "proxmox1", Conf: map[string]string{"name": "foreign"}}
		})
		cfg.VMs = append(cfg.VMs, infra.VM{Name: "foreign", VMID: 400})
		hosts, err := infra.Inventory(ctx, r.api, cfg, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if hosts[0].Address != netip.MustParseAddr("192.0.2.250") || hosts[0].Source != "ipconfig0" {
			t.Errorf("static host without agent: %+v", hosts[0])
		}
		if hosts[1].Address.IsValid() || hosts[1].Problem != "500 QEMU guest agent is not running" {
			t.Errorf("DHCP host without agent: %+v", hosts[1])
		}
		if hosts[2].Address.IsValid() || !strings.Contains(hosts[2].Problem, "not managed by gitedge") {
			t.Errorf("foreign VM: %+v", hosts[2])
		}
	})
}
