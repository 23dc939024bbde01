package failover

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/gitedge/gitedge/failover/vrrp"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/internal/testkit/nstest"
)

// labVeth makes vr0 with 192.0.2.11/24 and its peer vr1 (nothing on it,
// carrying the adverts away and bringing frames in), both up, and returns
// vr0.
func labVeth(t *testing.T) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = "vr0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "vr1"}); err != nil {
		t.Fatal(err)
	}
	vr0, err := netlink.LinkByName("vr0")
	if err != nil {
		t.Fatal(err)
	}
	vr1, err := netlink.LinkByName("vr1")
	if err != nil {
		t.Fatal(err)
	}
	own, _ := netlink.ParseAddr("192.0.2.11/24")
	for _, err := range []error{netlink.AddrAdd(vr0, own), netlink.LinkSetUp(vr1), netlink.LinkSetUp(vr0)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return vr0
}

// advertCapture reads the VRRP adverts leaving an interface, from an
// AF_PACKET socket that sees outgoing frames.
type advertCapture struct {
	fd  int
	buf []byte
}

func captureAdverts(t *testing.T, ifindex int) *advertCapture {
	t.Helper()
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
		t.Fatal(err)
	}
	tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	return &advertCapture{fd: fd, buf: make([]byte, 2048)}
}

// next returns the next advert that match accepts, failing after within.
func (c *advertCapture) next(t *testing.T, within time.Duration, match func(*vrrp.Packet) bool) *vrrp.Packet {
	t.Helper()
	deadline := time.Now().Add(within)
	var seen []string
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		if err != nil {
			continue // the receive timeout: look at the deadline again
		}
		b := c.buf[:n]
		if n < 20 || b[0]>>4 != 4 || b[9] != vrrp.IPProtocol {
			continue
		}
		ihl := int(b[0]&0x0f) * 4
		src, _ := netip.AddrFromSlice(b[12:16])
		dst, _ := netip.AddrFromSlice(b[16:20])
		p, err := vrrp.Decode(b[ihl:], src, dst)
		if err != nil {
			t.Fatalf("an invalid advert left the interface: %v", err)
		}
		if match(p) {
			return p
		}
		seen = append(seen, fmt.Sprintf("vrid=%d prio=%d int=%d %v", p.VRID, p.Priority, p.Interval, p.Addresses))
	}
	t.Fatalf("no matching advert within %v; saw %v", within, seen)
	return nil
}

// vipsOn lists the addresses on l other than its own 192.0.2.11, with
// their valid lifetime.
func vipsOn(t *testing.T, l netlink.Link) (addrs []string, lifetimes map[string]int) {
	t.Helper()
	list, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	lifetimes = map[string]int{}
	for _, a := range list {
		if s := a.IPNet.String(); s != "192.0.2.11/24" {
			addrs = append(addrs, s)
			lifetimes[s] = a.ValidLft
		}
	}
	slices.Sort(addrs)
	return addrs, lifetimes
}

// The real system, in a namespace: a master takes a new priority, VIPs and
// interval in place (netlink VIPs added and removed, the adverts on the
// wire carry the new values, the VIP lifetime follows the interval, no
// INIT), and a new VRID restarts it.
func TestNetnsInPlace(t *testing.T) {
	if !nstest.InNetns(t) {
		return
	}
	l := labVeth(t)
	capture := captureAdverts(t, l.Attrs().Index)

	var rec recorder
	m, err := NewManager(Options{OnTransition: rec.record})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	log := func(since time.Time) string { return strings.Join(rec.reasoned(since), ", ") }
	apply := func(in Instance) {
		t.Helper()
		if err := m.Apply(context.Background(), Config{Instances: []Instance{in}}); err != nil {
			t.Fatal(err)
		}
	}
	master := func() string {
		if s := states(m)["VI_1"]; s != StateMaster {
			return "state " + s.String()
		}
		return ""
	}
	wantVIPs := func(want ...string) {
		t.Helper()
		if got, _ := vipsOn(t, l); !slices.Equal(got, want) {
			t.Fatalf("addresses on vr0 %v, want %v", got, want)
		}
	}

	a := baseInstance(100)
	a.Interface = "vr0"
	apply(a)
	testkit.Poll(t, testkit.Deadline, master)
	wantVIPs("192.0.2.10/24")
	if _, lt := vipsOn(t, l); lt["192.0.2.10/24"] > 3 {
		t.Fatalf("VIP lifetime %ds at a 100ms interval, want at most 3s", lt["192.0.2.10/24"])
	}

	t1 := time.Now()
	a.Priority, a.AdvertInterval, a.VIPs = 150, 500*time.Millisecond, []netip.Prefix{vip, vip2}
	apply(a)
	wantVIPs("192.0.2.10/24", "192.0.2.20/24") // when Apply returns
	p := capture.next(t, testkit.Deadline, func(p *vrrp.Packet) bool { return p.Priority == 150 })
	if p.VRID != 33 || p.Interval != 50 || !slices.Equal(p.Addresses, []netip.Addr{vip.Addr(), vip2.Addr()}) {
		t.Fatalf("advert after the change: vrid %d, interval %d cs, addresses %v", p.VRID, p.Interval, p.Addresses)
	}
	// Renewed after that advert with the lifetime of a 500ms interval:
	// 2×(1.5s+0.5s)+1s = 5s.
	testkit.Poll(t, testkit.Deadline, func() string {
		if _, lt := vipsOn(t, l); lt["192.0.2.20/24"] != 5 && lt["192.0.2.20/24"] != 4 {
			return fmt.Sprintf("lifetimes %v, want 5s", lt)
		}
		return ""
	})

	a.VIPs = []netip.Prefix{vip2}
	apply(a)
	wantVIPs("192.0.2.20/24")
	p = capture.next(t, testkit.Deadline, func(p *vrrp.Packet) bool { return len(p.Addresses) == 1 })
	if p.Priority != 150 || p.Addresses[0] != vip2.Addr() {
		t.Fatalf("advert after removing a VIP: priority %d, addresses %v", p.Priority, p.Addresses)
	}
	if got := log(t1); got != "" {
		t.Fatalf("transitions after in-place changes: %s", got)
	}

	// A new VRID: a new socket, a new election.
	t2 := time.Now()
	a.VRID = 34
	apply(a)
	testkit.Poll(t, testkit.Deadline, master)
	if got, want := log(t2), "MASTER>INIT (stopped), INIT>BACKUP (startup), BACKUP>MASTER (master down timer expired)"; got != want {
		t.Fatalf("transitions after a VRID change %q, want %q", got, want)
	}
	capture.next(t, testkit.Deadline, func(p *vrrp.Packet) bool { return p.VRID == 34 && p.Priority == 150 })
	wantVIPs("192.0.2.20/24")

	m.Close()
	wantVIPs()
	capture.next(t, testkit.Deadline, func(p *vrrp.Packet) bool { return p.VRID == 34 && p.Priority == 0 })
}

// TestNetnsRemoveVIPsAnyPrefix: a VIP left on the interface with another
// prefix length (keepalived's bare address is a /32) goes too; the
// interface's own address stays.
func TestNetnsRemoveVIPsAnyPrefix(t *testing.T) {
	if !nstest.InNetns(t) {
		return
	}
	l := labVeth(t)
	for _, a := range []string{"192.0.2.10/32", "192.0.2.20/24"} {
		addr, _ := netlink.ParseAddr(a)
		if err := netlink.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
	}
	fx := &netlinkEffects{ifname: "vr0"}
	if err := fx.RemoveVIPs([]netip.Prefix{netip.MustParsePrefix("192.0.2.10/24"), netip.MustParsePrefix("192.0.2.20/24")}); err != nil {
		t.Fatal(err)
	}
	if got, _ := vipsOn(t, l); len(got) != 0 {
		t.Fatalf("left on the interface: %v", got)
	}
	if list, _ := netlink.AddrList(l, netlink.FAMILY_V4); len(list) != 1 || list[0].IPNet.String() != "192.0.2.11/24" {
		t.Fatalf("the interface's own address: %v", list)
	}
}

// TestNetnsInterfaceRecreated: the instance's interface is deleted and
// made again under its name (a network manager recreating a VLAN, bond or
// veth) while a better master advertises on it. The instance must hear
// that master on the new interface and stay backup, not take the VIP
// beside it with a socket still bound to the deleted one.
func TestNetnsInterfaceRecreated(t *testing.T) {
	if !nstest.InNetns(t) {
		return
	}
	vr0 := labVeth(t)
	injectMaster(t)

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

	if err := netlink.LinkDel(vr0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	labVeth(t)
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

// injectMaster sends the adverts of a priority-200 master at 192.0.2.12,
// every 100 ms, into vr1 (whichever vr1 exists then) until the test ends.
func injectMaster(t *testing.T) {
	t.Helper()
	inj, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	frame := masterFrame(t, advert(200, 10), netip.MustParseAddr("192.0.2.12"))
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
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
	t.Cleanup(func() {
		close(done)
		<-stopped
		unix.Close(inj)
	})
}

// TestNetnsLinkEventsLost: with every link event lost (as to a full
// netlink socket buffer), the re-query still brings the instance on vr0,
// beside a better master, to the state the link calls for, logs the
// correction, and reopens the instance on a vr0 made again under it, so
// that it hears the master there. With the re-query off (requeryEvery
// negative, checked by hand) each case stays wrong: a FAULT that never
// clears, a deaf instance that takes the VIP.
func TestNetnsLinkEventsLost(t *testing.T) {
	if !nstest.InNetns(t) {
		return
	}
	setDown := func(t *testing.T) {
		if err := netlink.LinkSetDown(vrLink(t)); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name   string
		before func(t *testing.T) // link events delivered
		lost   func(t *testing.T) // link events dropped
		want   State
		logged string // the message saying what the re-query corrected
	}{
		{"down", nil, setDown, StateFault, "tracked interface re-queried"},
		{"up", setDown, func(t *testing.T) {
			if err := netlink.LinkSetUp(vrLink(t)); err != nil {
				t.Fatal(err)
			}
		}, StateBackup, "tracked interface re-queried"},
		{"deleted", nil, func(t *testing.T) {
			if err := netlink.LinkDel(vrLink(t)); err != nil {
				t.Fatal(err)
			}
		}, StateFault, "tracked interface re-queried"},
		{"recreated", nil, func(t *testing.T) {
			if err := netlink.LinkDel(vrLink(t)); err != nil {
				t.Fatal(err)
			}
			labVeth(t)
		}, StateBackup, "interface recreated: restarting the instance with a new socket"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			labVeth(t)
			t.Cleanup(func() {
				if l, err := netlink.LinkByName("vr0"); err == nil {
					netlink.LinkDel(l)
				}
			})
			injectMaster(t)
			log := testkit.NewLogSink()
			var drop atomic.Bool
			m, err := NewManager(Options{Logger: slog.New(log), dropLinkEvents: &drop})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { m.Close() })
			in := baseInstance(100)
			in.Interface = "vr0"
			if err := m.Apply(context.Background(), Config{Instances: []Instance{in}}); err != nil {
				t.Fatal(err)
			}
			wantState := func(want State) func() string {
				return func() string {
					if s := states(m)["VI_1"]; s != want {
						return "state " + s.String() + ", want " + want.String()
					}
					return ""
				}
			}
			testkit.Poll(t, testkit.Deadline, wantState(StateBackup))
			if c.before != nil {
				c.before(t)
				testkit.Poll(t, testkit.Deadline, wantState(StateFault))
			}
			drop.Store(true) // until the end: no late event may do the re-query's work
			c.lost(t)
			testkit.Poll(t, testkit.Deadline, func() string {
				if msg := wantState(c.want)(); msg != "" {
					return msg
				}
				if l, err := netlink.LinkByName("vr0"); err == nil && c.want != StateFault {
					if got := boundIndex(m, "VI_1"); got != l.Attrs().Index {
						return fmt.Sprintf("socket bound to ifindex %d, vr0 is %d", got, l.Attrs().Index)
					}
				}
				return ""
			})
			if !logged(t, log, c.logged, "VI_1", "vr0") {
				t.Fatalf("no %q for VI_1 on vr0 in the log:\n%s", c.logged, log.Text())
			}
			if c.want == StateBackup {
				// Past three master-down intervals (about 1 s at 100 ms
				// adverts): a deaf instance would be master by now.
				time.Sleep(2 * time.Second)
				if s := wantState(StateBackup)(); s != "" {
					t.Fatalf("beside a better master: %s", s)
				}
			}
		})
	}
}

// vrLink is vr0.
func vrLink(t *testing.T) netlink.Link {
	t.Helper()
	l, err := netlink.LinkByName("vr0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// boundIndex is the ifindex the socket of a running instance is bound
// to.
func boundIndex(m *Manager, instance string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if ri, ok := m.running[instance]; ok {
		return ri.ifindex
	}
	return 0
}

// logged reports whether the log holds msg for instance on iface.
func logged(t *testing.T, log *testkit.LogSink, msg, instance, iface string) bool {
	t.Helper()
	for line := range strings.Lines(log.Text()) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if s, _ := rec["msg"].(string); strings.HasPrefix(s, msg) && rec["instance"] == instance && rec["interface"] == iface {
			return true
		}
	}
	return false
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

// slowWatcher blocks in its first Link call until released: a Manager
// busy while the kernel queues more link updates than the watch's
// channel holds.
type slowWatcher struct {
	errWatcher
	entered chan struct{}
	release chan struct{}
	once    sync.Once
}

func (w *slowWatcher) Link(string, bool) {
	w.once.Do(func() {
		close(w.entered)
		<-w.release
	})
}

// TestNetnsWatchEndsWithUpdatesQueued: a watch that ends while the
// netlink library holds more link updates than its channel takes leaves
// none of the library's goroutines behind (one blocked sending to the
// full channel waited for a reader forever).
func TestNetnsWatchEndsWithUpdatesQueued(t *testing.T) {
	if !nstest.InNetns(t) {
		return
	}
	before := runtime.NumGoroutine()
	w := &slowWatcher{entered: make(chan struct{}), release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- watchOnce(ctx, w, map[string]int{}) }()
	select {
	case <-w.entered: // the listing's first link
	case <-time.After(testkit.Deadline):
		t.Fatal("no link update reached the watcher")
	}
	for i := range 50 { // 100 new links (veth pairs: this kernel may lack dummy)
		la := netlink.NewLinkAttrs()
		la.Name = fmt.Sprintf("dqa%d", i)
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: fmt.Sprintf("dqb%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(200 * time.Millisecond) // the library reads them and fills the channel
	cancel()
	close(w.release)
	select {
	case err := <-ended:
		if err != nil {
			t.Fatalf("watchOnce: %v", err)
		}
	case <-time.After(testkit.Deadline):
		t.Fatal("watchOnce did not return after its context ended")
	}
	testkit.Poll(t, testkit.Deadline, func() string {
		if n := runtime.NumGoroutine(); n > before {
			return fmt.Sprintf("%d goroutines, %d before the watch", n, before)
		}
		return ""
	})
}
