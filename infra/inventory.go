package infra

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"
)

// Host is one managed VM of the inventory.
type Host struct {
	Name    string
	VMID    int
	Node    string
	Address netip.Addr // invalid when unknown
	// Source says where Address came from: "agent" (the guest agent's
	// address on net0) or "ipconfig0" (the static cloud-init address).
	Source string
	// Problem says why there is no address (VM missing, not ours, agent down).
	Problem string
}

// Inventory finds the address of every declared VM that gitedge manages,
// as the Terraform template did with default_ipv4_address: the first
// global-unicast IPv4 of the guest interface whose MAC is net0's, falling
// back to the static address of ipconfig0 (API.md 5.19). With wait > 0 it
// keeps asking a guest agent that is not running yet until wait elapses.
func Inventory(ctx context.Context, api API, cfg Config, wait, poll time.Duration) ([]Host, error) {
	res, err := api.Resources(ctx)
	if err != nil {
		return nil, classify("inventory", VMRef{}, err)
	}
	where := map[int]Resource{}
	for _, r := range res {
		where[r.VMID] = r
	}
	if poll <= 0 {
		poll = time.Second
	}
	deadline := time.Now().Add(wait)
	var hosts []Host
	for _, v := range cfg.VMs {
		h := Host{Name: v.Name, VMID: v.VMID, Node: v.Node}
		r, ok := where[v.VMID]
		if !ok {
			h.Problem = "not created yet"
			hosts = append(hosts, h)
			continue
		}
		h.Node = r.Node
		c, err := api.Config(ctx, r.Node, v.VMID)
		switch {
		case err != nil:
			h.Problem = classify("inventory", VMRef{Name: v.Name, VMID: v.VMID, Node: r.Node}, err).Err.Error()
		case !hasTag(splitTags(c.Values["tags"]), Tag):
			h.Problem = fmt.Sprintf("VM %d is not managed by gitedge (no tag %q)", v.VMID, Tag)
		default:
			h.Address, h.Source, h.Problem = address(ctx, api, r.Node, v.VMID, c, deadline, poll)
		}
		hosts = append(hosts, h)
	}
	return hosts, ctx.Err()
}

func address(ctx context.Context, api API, node string, vmid int, c VMConfig, deadline time.Time, poll time.Duration) (netip.Addr, string, string) {
	_, mac, _ := parseNet(c.Values["net0"])
	mac = strings.ToLower(mac)
	problem := ""
	for {
		ifs, err := api.AgentInterfaces(ctx, node, vmid)
		if err == nil {
			for _, i := range ifs {
				if i.MAC != mac {
					continue
				}
				for _, ip := range i.IPs {
					a, perr := netip.ParseAddr(ip.Address)
					if perr == nil && a.Is4() && a.IsGlobalUnicast() {
						return a, "agent", ""
					}
				}
			}
			problem = "the guest agent reports no IPv4 address on net0 yet"
		} else {
			problem = classify("agent", VMRef{VMID: vmid, Node: node}, err).Err.Error()
		}
		if time.Now().Add(poll).After(deadline) || ctx.Err() != nil {
			break
		}
		t := time.NewTimer(poll)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	if ip := parseProp(c.Values["ipconfig0"], "")["ip"]; ip != "" && ip != "dhcp" {
		if p, err := netip.ParsePrefix(ip); err == nil {
			return p.Addr(), "ipconfig0", ""
		}
	}
	return netip.Addr{}, "", problem
}

// WriteINI writes an Ansible INI inventory: "[group]", then one
// "name ansible_host=IP" line per host; a host without an address is a
// comment saying why.
func WriteINI(w io.Writer, group string, hosts []Host) error {
	var b strings.Builder
	fmt.Fprintf(&b, "[%s]\n", group)
	for _, h := range hosts {
		if h.Address.IsValid() {
			fmt.Fprintf(&b, "%s ansible_host=%s\n", h.Name, h.Address)
		} else {
			fmt.Fprintf(&b, "# %s: no address: %s\n", h.Name, h.Problem)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
