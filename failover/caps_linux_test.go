package failover

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// withoutCaps runs f on an OS thread whose effective capability set lacks
// drop, as a process started without them (capabilities are per thread,
// and the kernel checks the caller's). The thread ends with f: the
// goroutine never unlocks it, so no other goroutine runs on it.
func withoutCaps(t *testing.T, drop []uintptr, f func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread()
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData
		if err := unix.Capget(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		for _, c := range drop {
			data[c/32].Effective &^= 1 << (c % 32)
		}
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			done <- err
			return
		}
		f()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatalf("dropping capabilities: %v", err)
	}
}

// hasCap reports whether this process has a capability in its effective set.
func hasCap(c uintptr) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	return unix.Capget(&hdr, &data[0]) == nil && data[c/32].Effective&(1<<(c%32)) != 0
}

// Without CAP_NET_ADMIN or CAP_NET_RAW an instance does not start: Apply
// says which capability is missing for which instance and interface, and
// what to do, at start rather than when the node first becomes master.
// The instance runs on lo and nothing is changed (the CAP_NET_ADMIN probe
// asks for an address with no address). As root the test drops the
// capabilities on its thread; without them it runs as it is.
func TestApplyNamesMissingCapabilities(t *testing.T) {
	const advice = "; run gitedge as root or grant it "
	tests := []struct {
		name string
		drop []uintptr
		vips string
		want string
	}{
		{"both", []uintptr{unix.CAP_NET_ADMIN, unix.CAP_NET_RAW}, "192.0.2.10/24",
			`instance "VI_1": interface lo: not permitted: the process lacks CAP_NET_ADMIN (to add the VIPs when it becomes master) and CAP_NET_RAW (to send and receive VRRP and gratuitous ARP / NA)` +
				advice + `CAP_NET_ADMIN and CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)`},
		{"net_admin", []uintptr{unix.CAP_NET_ADMIN}, "192.0.2.10/24",
			`instance "VI_1": interface lo: not permitted: the process lacks CAP_NET_ADMIN (to add the VIPs when it becomes master)` +
				advice + `CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)`},
		{"net_admin ipv6", []uintptr{unix.CAP_NET_ADMIN}, "2001:db8::10/64",
			`instance "VI_1": interface lo: not permitted: the process lacks CAP_NET_ADMIN (to add the VIPs when it becomes master)` +
				advice + `CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)`},
		{"net_raw", []uintptr{unix.CAP_NET_RAW}, "192.0.2.10/24",
			`instance "VI_1": interface lo: not permitted: the process lacks CAP_NET_RAW (to send and receive VRRP and gratuitous ARP / NA)` +
				advice + `CAP_NET_RAW (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.drop) == 1 && !hasCap(unix.CAP_NET_ADMIN+unix.CAP_NET_RAW-tt.drop[0]) {
				t.Skip("needs the other capability to tell them apart (as root)")
			}
			// Held in Initialize should it start after all: never a VIP on lo.
			m, err := NewManager(Options{Ready: make(chan struct{})})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			in := baseInstance(100)
			in.Interface, in.VIPs = "lo", []netip.Prefix{netip.MustParsePrefix(tt.vips)}
			withoutCaps(t, tt.drop, func() { err = m.Apply(context.Background(), Config{Instances: []Instance{in}}) })
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Apply:\n %v\nwant\n %s", err, tt.want)
			}
			if !errors.Is(err, os.ErrPermission) {
				t.Error("not an os.ErrPermission")
			}
			if te, ok := errors.AsType[interface {
				error
				Transient() bool
			}](err); !ok || te.Transient() {
				t.Error("not a terminal error: the reconcile loop would retry it every few seconds")
			}
			if s := states(m); len(s) != 0 {
				t.Errorf("instances running: %v", s)
			}
		})
	}
}

// With CAP_NET_ADMIN the probe passes, and it changes nothing.
func TestProbeAddrAdmin(t *testing.T) {
	if !hasCap(unix.CAP_NET_ADMIN) {
		t.Skip("needs CAP_NET_ADMIN (as root)")
	}
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	for _, v6 := range []bool{false, true} {
		if err := probeAddrAdmin(lo.Index, v6); err != nil {
			t.Errorf("v6 %v: %v", v6, err)
		}
	}
	withoutCaps(t, []uintptr{unix.CAP_NET_ADMIN}, func() { err = probeAddrAdmin(lo.Index, false) })
	if !isPermission(err) {
		t.Fatalf("without CAP_NET_ADMIN: %v", err)
	}
}
