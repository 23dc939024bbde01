package failover

import (
	"context"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/gitedge/gitedge/failover/vrrp"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/internal/testkit/nstest"
)

// TestNetnsInterfaceRecreated: the instance's interface is deleted and
// made again under its name (a network manager recreating a VLAN, bond or
// veth) while a better master advertises on it. The instance must hear
// that master on the new interface and stay backup, not take the VIP
// beside it with a socket still bound to the deleted one.
func TestNetnsInterfaceRecreated(t *testing.T) {
	if !nstest.InNetns(t) {
		return
	}
	veth := func() {
		la := netlink.NewLinkAttrs()
		la.Name = "vr0"
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vr1"}); err != nil {
			t.Fatal(err)
		}
		vr0, _ := netlink.LinkByName("vr0")
		vr1, _ := netlink.LinkByName("vr1")
		own, _ := netlink.ParseAddr("192.0.2.11/24")
		for _, err := range []error{netlink.AddrAdd(vr0, own), netlink.LinkSetUp(vr1), netlink.LinkSetUp(vr0)} {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	veth()
	// A priority-200 master at 192.0.2.12, every 100 ms, sent into vr1.
	inj, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(inj)
	frame := masterFrame(t, advert(200, 10), netip.MustParseAddr("192.0.2.12"))
	done := make(chan struct{})
	go func() {
		for {
			if vr1, err := netlink.LinkByName("vr1"); err == nil {
				sa := &unix.SockaddrLinklayer{Protocol: htons(0x0800), Ifindex: vr1.Attrs().Index, Halen: 6}
				copy(sa.Addr[:], frame[:6])
				_ = unix.Sendto(inj, frame, 0, sa)
			}
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer close(done)

	in := baseInstance(100)
	in.Interface = "vr0"
	m, err := NewManager(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Apply(context.Background(), Config{Instances: []Instance{in}}); err != nil {
		t.Fatal(err)
	}
	backup := func() string {
		if s := states(m)["VI_1"]; s != StateBackup {
			return "state " + s.String()
		}
		return ""
	}
	testkit.Poll(t, testkit.Deadline, backup)

	vr0, _ := netlink.LinkByName("vr0")
	if err := netlink.LinkDel(vr0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	veth()
	testkit.Poll(t, testkit.Deadline, backup)
	// Past three master-down intervals (about 1 s at 100 ms adverts): a
	// deaf instance would be master by now.
	time.Sleep(2 * time.Second)
	if s := backup(); s != "" {
		vr0, _ := netlink.LinkByName("vr0")
		list, _ := netlink.AddrList(vr0, netlink.FAMILY_V4)
		t.Fatalf("after vr0 was recreated, beside a better master: %s, addresses %v", s, list)
	}
}

// masterFrame is an Ethernet frame carrying p from src to 224.0.0.18.
func masterFrame(t *testing.T, p *vrrp.Packet, src netip.Addr) []byte {
	msg, err := p.Encode(src, vrrp.GroupIPv4)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 14+20+len(msg))
	copy(b, []byte{0x01, 0x00, 0x5e, 0, 0, 0x12, 0x02, 0, 0, 0, 0, 0x66})
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	h := b[14:34]
	h[0], h[1] = 0x45, 0xc0
	binary.BigEndian.PutUint16(h[2:], uint16(20+len(msg)))
	h[8], h[9] = 255, vrrp.IPProtocol
	s4, d4 := src.As4(), vrrp.GroupIPv4.As4()
	copy(h[12:], s4[:])
	copy(h[16:], d4[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
	copy(b[34:], msg)
	return b
}
