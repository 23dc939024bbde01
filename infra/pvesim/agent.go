package pvesim

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// agent answers the guest agent endpoints (API.md 5.19).
func (s *Sim) agent(vm *VMState, cmd, method string) (any, *apiError) {
	switch {
	case cmd == "network-get-interfaces" && method == http.MethodGet,
		cmd == "get-osinfo" && method == http.MethodGet,
		cmd == "ping" && method == http.MethodPost:
	default:
		return nil, &apiError{code: 501, msg: fmt.Sprintf("Method '%s /nodes/%s/qemu/%d/agent/%s' not implemented", method, vm.Node, vm.VMID, cmd)}
	}
	if a, _ := parseProp(vm.Conf["agent"], "enabled"); a["enabled"] != "1" {
		return nil, errf(500, "No QEMU guest agent configured")
	}
	if !vm.Running {
		return nil, errf(500, "VM %d is not running", vm.VMID)
	}
	if time.Since(vm.StartedAt) < s.opts.BootDelay {
		return nil, errf(500, "QEMU guest agent is not running")
	}
	switch cmd {
	case "ping":
		return map[string]any{"result": map[string]any{}}, nil
	case "get-osinfo":
		return map[string]any{"result": map[string]any{
			"id": "debian", "name": "Debian GNU/Linux", "pretty-name": "Debian GNU/Linux 11 (bullseye)",
			"version": "11 (bullseye)", "version-id": "11", "kernel-release": "5.10.0-30-cloud-amd64",
			"kernel-version": "#1 SMP Debian 5.10.218-1 (2024-06-01)", "machine": "x86_64",
		}}, nil
	}
	ifaces := []map[string]any{{
		"name": "lo", "hardware-address": "00:00:00:00:00:00",
		"ip-addresses": []map[string]any{
			{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
			{"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128},
		},
	}}
	var nets []int
	for k := range vm.Conf {
		if n, ok := strings.CutPrefix(k, "net"); ok {
			if i, err := strconv.Atoi(n); err == nil {
				nets = append(nets, i)
			}
		}
	}
	slices.Sort(nets)
	for _, i := range nets {
		n, _ := parseNet(vm.Conf[fmt.Sprintf("net%d", i)])
		mac := strings.ToLower(n.mac)
		var addrs []map[string]any
		ipc, _ := parseProp(vm.Booted[fmt.Sprintf("ipconfig%d", i)], "")
		switch ip := ipc["ip"]; {
		case ip != "" && ip != "dhcp":
			if pfx, err := netip.ParsePrefix(ip); err == nil {
				addrs = append(addrs, map[string]any{"ip-address": pfx.Addr().String(), "ip-address-type": "ipv4", "prefix": pfx.Bits()})
			}
		case i == 0:
			// DHCP: the simulated network's server hands out 198.51.100.0/24.
			addrs = append(addrs, map[string]any{"ip-address": fmt.Sprintf("198.51.100.%d", 10+vm.VMID%200), "ip-address-type": "ipv4", "prefix": 24})
		}
		addrs = append(addrs, map[string]any{"ip-address": linkLocal(mac), "ip-address-type": "ipv6", "prefix": 64})
		ifaces = append(ifaces, map[string]any{
			"name": fmt.Sprintf("eth%d", i), "hardware-address": mac, "ip-addresses": addrs,
			"statistics": map[string]any{"rx-bytes": 0, "rx-dropped": 0, "rx-errs": 0, "rx-packets": 0, "tx-bytes": 0, "tx-dropped": 0, "tx-errs": 0, "tx-packets": 0},
		})
	}
	return map[string]any{"result": ifaces}, nil
}

// linkLocal is the EUI-64 IPv6 link-local address of a MAC.
func linkLocal(mac string) string {
	var b [6]byte
	if _, err := fmt.Sscanf(mac, "%02x:%02x:%02x:%02x:%02x:%02x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]); err != nil {
		return "fe80::1"
	}
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8], a[9], a[10], a[11], a[12], a[13], a[14], a[15] = b[0]^2, b[1], b[2], 0xff, 0xfe, b[3], b[4], b[5]
	return netip.AddrFrom16(a).String()
}
