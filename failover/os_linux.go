package failover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"

	"github.com/gitedge/gitedge/failover/vrrp"
)

// LinuxSystem is the real System: raw IP sockets for VRRP, netlink for
// VIPs and link state, AF_PACKET for gratuitous ARP and unsolicited NA.
// It works in the network namespace of the calling process.
type LinuxSystem struct{}

// hostSystem is the System of this host.
func hostSystem() System { return LinuxSystem{} }

var _ System = LinuxSystem{}

// Open returns in's raw-socket transport and netlink effects. It first
// makes sure the process may do everything the instance will need once it
// is master, so a missing privilege fails the start (a *CapabilityError)
// rather than the first takeover: adding addresses on the interface
// (CAP_NET_ADMIN, probed with a request the kernel refuses for lack of
// privilege before it looks at it), and raw VRRP and AF_PACKET sockets
// (CAP_NET_RAW). Errors name the interface, not the instance: the caller
// adds that.
func (LinuxSystem) Open(in Instance) (Transport, Effects, error) {
	l, err := netlink.LinkByName(in.Interface)
	if err != nil {
		if _, ok := errors.AsType[netlink.LinkNotFoundError](err); ok {
			return nil, nil, fmt.Errorf("interface %s does not exist on this node: create it or correct the instance's interface", in.Interface)
		}
		return nil, nil, fmt.Errorf("interface %s: %w", in.Interface, err)
	}
	v6 := vipFamily(in.VIPs) == 6
	var missing []string
	switch err := probeAddrAdmin(l.Attrs().Index, v6); {
	case isPermission(err):
		missing = append(missing, CapNetAdmin)
	case err != nil:
		return nil, nil, fmt.Errorf("interface %s: checking the right to add addresses: %w", in.Interface, err)
	}
	var tr Transport // never a typed nil: closeAll calls its Close
	if v6 {
		var t6 *ipv6Transport
		if t6, err = dialIPv6(in, l.Attrs().Index); err == nil {
			tr = t6
		}
	} else {
		var t4 *ipv4Transport
		if t4, err = dialIPv4(in, l.Attrs().Index); err == nil {
			tr = t4
		}
	}
	var fx *netlinkEffects
	if err == nil {
		fx = &netlinkEffects{ifname: in.Interface, lifetime: vipLifetime(in)}
		err = fx.openPacket()
	}
	if isPermission(err) {
		missing = append(missing, CapNetRaw)
	} else if err != nil {
		closeAll(tr, fx)
		return nil, nil, err
	}
	if len(missing) > 0 {
		closeAll(tr, fx)
		return nil, nil, &CapabilityError{Interface: in.Interface, Missing: missing}
	}
	return tr, fx, nil
}

// closeAll closes what Open opened before it failed.
func closeAll(tr Transport, fx *netlinkEffects) {
	if tr != nil {
		tr.Close()
	}
	if fx != nil {
		fx.Close()
	}
}

func isPermission(err error) bool {
	return errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES)
}

// probeAddrAdmin asks the kernel to add an address without one: rtnetlink
// checks CAP_NET_ADMIN (in the network namespace's user namespace) before
// anything else and answers EPERM without it, and EINVAL ("no address")
// with it. Nothing changes either way.
func probeAddrAdmin(ifindex int, v6 bool) error {
	fam := unix.AF_INET
	if v6 {
		fam = unix.AF_INET6
	}
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	msg := nl.NewIfAddrmsg(fam)
	msg.Index = uint32(ifindex)
	req.AddData(msg)
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	if errors.Is(err, unix.EINVAL) {
		return nil
	}
	if err == nil {
		return errors.New("the kernel accepted an address request without an address")
	}
	return err
}

// vipLifetime is the valid lifetime given to VIPs, renewed after every
// advertisement: if the process dies without a word (SIGKILL, OOM) the
// kernel drops its VIPs soon after the backup took over, instead of
// keeping them and answering ARP for an address nobody serves. Whole
// seconds (the kernel's unit), at least 3 s and twice the master down
// interval of the lowest priority.
func vipLifetime(in Instance) time.Duration {
	d := 2 * (3*in.AdvertInterval + in.AdvertInterval)
	if in.Version == 2 {
		d = 2 * (3*in.AdvertInterval + time.Second)
	}
	return max(3*time.Second, d.Round(time.Second)+time.Second)
}

// LinkState reports whether the interface is administratively up with
// carrier (operationally up, or "unknown" as dummy devices say), and its
// index: one netlink request.
func (LinuxSystem) LinkState(name string) (LinkState, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return LinkState{}, err
	}
	return LinkState{Up: linkUp(l), Index: l.Attrs().Index}, nil
}

func linkUp(l netlink.Link) bool {
	a := l.Attrs()
	return a.Flags&net.FlagUp != 0 && (a.OperState == netlink.OperUp || a.OperState == netlink.OperUnknown)
}

// Watch follows link and address changes over netlink until ctx is done,
// resubscribing with backoff if the kernel drops or refuses the
// subscription.
func (LinuxSystem) Watch(ctx context.Context, w Watcher) error {
	// Each interface's index, to tell a recreated one. Kept across
	// subscriptions: the listing a new one starts with then tells an
	// interface made again while none was listening.
	index := map[string]int{}
	resubscribe(ctx, w, func(ctx context.Context, w Watcher) error { return watchOnce(ctx, w, index) }, watchMinWait, watchMaxWait)
	return nil
}

func watchOnce(ctx context.Context, w Watcher, index map[string]int) error {
	done := make(chan struct{})
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	defer func() {
		// The library's goroutines end once done closes their sockets,
		// but one blocked sending an update to a full channel would wait
		// for a reader forever: read what is left until they close them.
		close(done)
		go func() {
			for range links {
			}
		}()
		go func() {
			for range addrs {
			}
		}()
	}()
	// One error holder per subscription: an error the other one reported
	// (a non-fatal one too) is not the cause of this one's end.
	var linkErr, addrErr atomic.Value
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{ErrorCallback: func(err error) { linkErr.Store(err) }, ListExisting: true}); err != nil {
		close(links) // never subscribed: nothing will close it
		close(addrs)
		return err
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{ErrorCallback: func(err error) { addrErr.Store(err) }}); err != nil {
		close(addrs)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-links:
			if !ok {
				err, _ := linkErr.Load().(error)
				return err
			}
			up := u.Header.Type != unix.RTM_DELLINK && linkUp(u.Link)
			name := u.Attrs().Name
			w.Link(name, up)
			if u.Header.Type == unix.RTM_NEWLINK {
				if old, seen := index[name]; seen && old != u.Attrs().Index {
					w.Recreated(name)
				}
				index[name] = u.Attrs().Index
			}
		case u, ok := <-addrs:
			if !ok {
				err, _ := addrErr.Load().(error)
				return err
			}
			if !u.NewAddr {
				if a, ok := netip.AddrFromSlice(u.LinkAddress.IP); ok {
					w.AddrRemoved(u.LinkIndex, a.Unmap())
				}
			}
		}
	}
}

// bindToDevice restricts a socket to one interface, so an instance sees
// only its own segment's packets.
func bindToDevice(ifname string) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifname)
		}); err != nil {
			return err
		}
		return serr
	}
}

// sourceCache remembers the interface address adverts go out from; it is
// looked up again at most once a second, so an address change is followed.
type sourceCache struct {
	mu     sync.Mutex
	at     time.Time
	addr   netip.Addr
	vips   []netip.Prefix // never chosen as the source
	lookup func(vips []netip.Prefix) (netip.Addr, error)
}

func (s *sourceCache) setVIPs(vips []netip.Prefix) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vips = slices.Clone(vips)
	s.at = time.Time{} // look again: the old choice may be a VIP now
}

func (s *sourceCache) get() netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.addr.IsValid() || time.Since(s.at) > time.Second {
		if a, err := s.lookup(s.vips); err == nil {
			s.addr = a
		}
		s.at = time.Now()
	}
	return s.addr
}

// primaryAddr is the interface's first non-secondary address of the family
// that is not one of the VIPs: the RFC's "primary IP address" (RFC 5798
// §5.1.1.1), or for IPv6 its link-local address (§5.1.2.1).
func primaryAddr(ifname string, v6 bool, vips []netip.Prefix) (netip.Addr, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return netip.Addr{}, err
	}
	fam := netlink.FAMILY_V4
	if v6 {
		fam = netlink.FAMILY_V6
	}
	list, err := netlink.AddrList(l, fam)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range list {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if v6 && !ip.IsLinkLocalUnicast() {
			continue
		}
		if a.Flags&unix.IFA_F_SECONDARY != 0 || slices.ContainsFunc(vips, func(p netip.Prefix) bool { return p.Addr() == ip }) {
			continue
		}
		if v6 && a.Flags&unix.IFA_F_TENTATIVE != 0 {
			continue
		}
		return ip, nil
	}
	if v6 {
		return netip.Addr{}, fmt.Errorf("interface %s has no usable IPv6 link-local address to send VRRP from (DAD still running?)", ifname)
	}
	return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address (other than the VIPs) to send VRRP from", ifname)
}

// vridFilter is a socket filter passing VRRP packets of one VRID: byte 1
// of the VRRP message, after the IPv4 header (IPv4 raw sockets see it) or
// at the start (IPv6 raw sockets see only the payload).
func vridFilter(vrid uint8, ipv4Header bool) []bpf.RawInstruction {
	raw, err := bpf.Assemble(vridProgram(vrid, ipv4Header))
	if err != nil {
		panic(err) // a fixed program: cannot fail
	}
	return raw
}

func vridProgram(vrid uint8, ipv4Header bool) []bpf.Instruction {
	var prog []bpf.Instruction
	if ipv4Header {
		prog = append(prog, bpf.LoadMemShift{Off: 0}, bpf.LoadIndirect{Off: 1, Size: 1})
	} else {
		prog = append(prog, bpf.LoadAbsolute{Off: 1, Size: 1})
	}
	prog = append(prog,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(vrid), SkipFalse: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	)
	return prog
}

// ipv4Transport sends with our own IP header (TOS 0xc0, TTL 255, DF clear,
// as keepalived) and reads the header back for the TTL and destination.
type ipv4Transport struct {
	conn    *ipv4.RawConn
	ifindex int
	src     sourceCache
	id      atomic.Uint32
	buf     []byte // used by Receive only
}

func dialIPv4(in Instance, ifindex int) (*ipv4Transport, error) {
	ifi, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", in.Interface, err)
	}
	lc := net.ListenConfig{Control: bindToDevice(in.Interface)}
	pc, err := lc.ListenPacket(context.Background(), fmt.Sprintf("ip4:%d", vrrp.IPProtocol), "0.0.0.0")
	if err != nil {
		return nil, fmt.Errorf("opening the VRRP raw socket on %s: %w", in.Interface, err)
	}
	rc, err := ipv4.NewRawConn(pc)
	if err != nil {
		pc.Close()
		return nil, err
	}
	// Only this VRID reaches the socket: several instances on one interface
	// then don't see (and count as drops) each other's adverts. The filter
	// reads the VRID after the IP header's IHL.
	if err := rc.SetBPF(vridFilter(in.VRID, true)); err != nil {
		rc.Close()
		return nil, fmt.Errorf("VRID filter on %s: %w", in.Interface, err)
	}
	t := &ipv4Transport{conn: rc, ifindex: ifi.Index, buf: make([]byte, 65536)}
	if in.UnicastSource.IsValid() && len(in.UnicastPeers) > 0 {
		src := in.UnicastSource.Unmap()
		t.src.lookup = func([]netip.Prefix) (netip.Addr, error) { return src, nil }
	} else {
		t.src.lookup = func(vips []netip.Prefix) (netip.Addr, error) { return primaryAddr(in.Interface, false, vips) }
	}
	t.src.setVIPs(in.VIPs)
	if len(in.UnicastPeers) == 0 {
		// RFC 5798 §5.1.1.2: adverts go to 224.0.0.18; join it on the interface.
		if err := errors.Join(
			rc.JoinGroup(ifi, &net.IPAddr{IP: vrrp.GroupIPv4.AsSlice()}),
			rc.SetMulticastInterface(ifi),
			rc.SetMulticastLoopback(false),
		); err != nil {
			rc.Close()
			return nil, fmt.Errorf("joining 224.0.0.18 on %s: %w", in.Interface, err)
		}
	}
	return t, nil
}

func (t *ipv4Transport) Source() netip.Addr { return t.src.get() }

func (t *ipv4Transport) Send(msg []byte, dst netip.Addr) error {
	src := t.src.get()
	if !src.IsValid() {
		return errors.New("no IPv4 source address on the interface")
	}
	// RFC 5798 §5.1.1.3 / RFC 3768 §5.2.3: TTL 255. TOS 0xc0 (network
	// control) as keepalived; the IP ID increments per advert.
	h := &ipv4.Header{Version: 4, Len: ipv4.HeaderLen, TOS: 0xc0, TotalLen: ipv4.HeaderLen + len(msg),
		ID: int(t.id.Add(1) & 0xffff), TTL: vrrp.TTL, Protocol: vrrp.IPProtocol,
		Src: src.AsSlice(), Dst: dst.AsSlice()}
	return t.conn.WriteTo(h, msg, nil)
}

func (t *ipv4Transport) Receive() (Datagram, error) {
	h, p, _, err := t.conn.ReadFrom(t.buf)
	if err != nil {
		return Datagram{}, err
	}
	if h.TotalLen >= h.Len && h.TotalLen-h.Len < len(p) {
		p = p[:h.TotalLen-h.Len]
	}
	src, _ := netip.AddrFromSlice(h.Src)
	dst, _ := netip.AddrFromSlice(h.Dst)
	return Datagram{Payload: slices.Clone(p), Src: src.Unmap(), Dst: dst.Unmap(), TTL: h.TTL}, nil
}

func (t *ipv4Transport) Close() error { return t.conn.Close() }

func (t *ipv4Transport) boundIndex() int { return t.ifindex }

// Reconfigure follows the VIPs, which the source address is never.
func (t *ipv4Transport) Reconfigure(in Instance) { t.src.setVIPs(in.VIPs) }

// ipv6Transport uses ancillary data: hop limit and destination come with
// each packet, the link-local source goes with each send.
type ipv6Transport struct {
	conn    *ipv6.PacketConn
	ifindex int
	ifname  string
	src     sourceCache
	buf     []byte
}

func dialIPv6(in Instance, ifindex int) (*ipv6Transport, error) {
	ifi, err := net.InterfaceByIndex(ifindex)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", in.Interface, err)
	}
	lc := net.ListenConfig{Control: bindToDevice(in.Interface)}
	pc, err := lc.ListenPacket(context.Background(), fmt.Sprintf("ip6:%d", vrrp.IPProtocol), "::")
	if err != nil {
		return nil, fmt.Errorf("opening the VRRP raw socket on %s: %w", in.Interface, err)
	}
	c := ipv6.NewPacketConn(pc)
	t := &ipv6Transport{conn: c, ifindex: ifi.Index, ifname: in.Interface, buf: make([]byte, 65536)}
	if in.UnicastSource.IsValid() && len(in.UnicastPeers) > 0 && in.UnicastSource.Is6() {
		src := in.UnicastSource
		t.src.lookup = func([]netip.Prefix) (netip.Addr, error) { return src, nil }
	} else {
		t.src.lookup = func(vips []netip.Prefix) (netip.Addr, error) { return primaryAddr(in.Interface, true, vips) }
	}
	t.src.setVIPs(in.VIPs)
	// RFC 5798 §5.1.2.3: hop limit 255; traffic class 0xc0 as keepalived.
	errs := []error{
		c.SetBPF(vridFilter(in.VRID, false)),
		c.SetControlMessage(ipv6.FlagHopLimit|ipv6.FlagDst|ipv6.FlagInterface, true),
		c.SetHopLimit(vrrp.TTL),
		c.SetMulticastHopLimit(vrrp.TTL),
		c.SetTrafficClass(0xc0),
	}
	if len(in.UnicastPeers) == 0 {
		// §5.1.2.2: adverts go to ff02::12; join it on the interface.
		errs = append(errs, c.JoinGroup(ifi, &net.IPAddr{IP: vrrp.GroupIPv6.AsSlice()}),
			c.SetMulticastInterface(ifi), c.SetMulticastLoopback(false))
	}
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, fmt.Errorf("setting up the IPv6 VRRP socket on %s: %w", in.Interface, err)
	}
	return t, nil
}

func (t *ipv6Transport) Source() netip.Addr { return t.src.get() }

func (t *ipv6Transport) Send(msg []byte, dst netip.Addr) error {
	src := t.src.get()
	if !src.IsValid() {
		return errors.New("no IPv6 link-local source address on the interface (DAD still running?)")
	}
	cm := &ipv6.ControlMessage{Src: src.AsSlice(), IfIndex: t.ifindex, HopLimit: vrrp.TTL}
	_, err := t.conn.WriteTo(msg, cm, &net.IPAddr{IP: dst.AsSlice(), Zone: t.ifname})
	return err
}

func (t *ipv6Transport) Receive() (Datagram, error) {
	n, cm, from, err := t.conn.ReadFrom(t.buf)
	if err != nil {
		return Datagram{}, err
	}
	d := Datagram{Payload: slices.Clone(t.buf[:n]), TTL: -1}
	if ia, ok := from.(*net.IPAddr); ok {
		d.Src, _ = netip.AddrFromSlice(ia.IP)
	}
	if cm != nil {
		d.Dst, _ = netip.AddrFromSlice(cm.Dst)
		d.TTL = cm.HopLimit
	}
	return d, nil
}

func (t *ipv6Transport) Close() error { return t.conn.Close() }

func (t *ipv6Transport) boundIndex() int { return t.ifindex }

// Reconfigure follows the VIPs, which the source address is never.
func (t *ipv6Transport) Reconfigure(in Instance) { t.src.setVIPs(in.VIPs) }

// netlinkEffects sets VIPs with netlink and sends GARP / NA frames on an
// AF_PACKET socket, from the interface's real MAC (as keepalived without
// use_vmac).
type netlinkEffects struct {
	ifname   string
	mu       sync.Mutex
	lifetime time.Duration // valid lifetime of the VIPs; 0 = forever
	fd       int           // AF_PACKET socket (openPacket); 0 = none
}

// Reconfigure follows the advertisement interval, which the VIPs'
// lifetime depends on; the next AddVIPs (after the next advertisement)
// sets it.
func (e *netlinkEffects) Reconfigure(in Instance) {
	e.mu.Lock()
	e.lifetime = vipLifetime(in)
	e.mu.Unlock()
}

// openPacket opens the AF_PACKET socket for GARP / NA if it is not open.
func (e *netlinkEffects) openPacket() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fd != 0 {
		return nil
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening an AF_PACKET socket for gratuitous ARP / NA on %s: %w", e.ifname, err)
	}
	e.fd = fd
	return nil
}

func (e *netlinkEffects) link() (netlink.Link, error) {
	l, err := netlink.LinkByName(e.ifname)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", e.ifname, err)
	}
	return l, nil
}

func vipAddr(v netip.Prefix, lifetime time.Duration) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: v.Addr().AsSlice(), Mask: net.CIDRMask(v.Bits(), v.Addr().BitLen())}}
	if lifetime > 0 {
		a.ValidLft = int(lifetime / time.Second)
		a.PreferedLft = a.ValidLft
	}
	if v.Addr().Is6() {
		// No duplicate address detection: the VRRP election already
		// decided who owns it, and DAD would delay it by a second or more.
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

func (e *netlinkEffects) AddVIPs(vips []netip.Prefix) error {
	l, err := e.link()
	if err != nil {
		return err
	}
	e.mu.Lock()
	lifetime := e.lifetime
	e.mu.Unlock()
	var errs []error
	for _, v := range vips {
		if err := netlink.AddrReplace(l, vipAddr(v, lifetime)); err != nil {
			errs = append(errs, fmt.Errorf("adding VIP %v to %s: %w", v, e.ifname, err))
		}
	}
	return errors.Join(errs...)
}

func (e *netlinkEffects) RemoveVIPs(vips []netip.Prefix) error {
	l, err := e.link()
	if err != nil {
		return err
	}
	// Every address of the link whose IP is a VIP's, whatever its prefix
	// length: the kernel deletes an address only with its own, so deleting
	// the declared prefix would leave the VIP added with another
	// (keepalived's bare address is a /32, or one added by hand), and this
	// node would answer ARP for it as a backup.
	var errs []error
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		list, err := netlink.AddrList(l, family)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing the addresses of %s: %w", e.ifname, err))
			continue
		}
		for _, a := range list {
			ip, ok := netip.AddrFromSlice(a.IP)
			if !ok || !slices.ContainsFunc(vips, func(v netip.Prefix) bool { return v.Addr() == ip.Unmap() }) {
				continue
			}
			if err := netlink.AddrDel(l, &a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("removing VIP %v from %s: %w", a.IPNet, e.ifname, err))
			}
		}
	}
	return errors.Join(errs...)
}

func (e *netlinkEffects) Announce(vips []netip.Prefix, count int) error {
	l, err := e.link()
	if err != nil {
		return err
	}
	mac := l.Attrs().HardwareAddr
	if err := e.openPacket(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, v := range vips {
		var frame []byte
		var proto uint16
		var dst []byte
		if v.Addr().Is4() {
			frame, err = vrrp.GratuitousARP(mac, v.Addr())
			proto, dst = vrrp.EtherTypeARP, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
		} else {
			frame, err = vrrp.UnsolicitedNA(mac, v.Addr(), false)
			proto, dst = vrrp.EtherTypeIPv6, []byte{0x33, 0x33, 0, 0, 0, 1}
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sa := &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: l.Attrs().Index, Halen: 6}
		copy(sa.Addr[:], dst)
		for range count {
			if err := unix.Sendto(e.fd, frame, 0, sa); err != nil {
				errs = append(errs, fmt.Errorf("announcing %v on %s: %w", v, e.ifname, err))
				break
			}
		}
	}
	return errors.Join(errs...)
}

// Close releases the AF_PACKET socket.
func (e *netlinkEffects) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.fd == 0 {
		return nil
	}
	err := unix.Close(e.fd)
	e.fd = 0
	return err
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

var (
	_ boundTransport = (*ipv4Transport)(nil)
	_ boundTransport = (*ipv6Transport)(nil)
	_ Reconfigurable = (*ipv4Transport)(nil)
	_ Reconfigurable = (*ipv6Transport)(nil)
	_ Reconfigurable = (*netlinkEffects)(nil)
)
