package reconcile

import (
	"cmp"
	"fmt"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/infra"
	k8syaml "sigs.k8s.io/yaml"
)

// converter turns decoded documents into a Desired, applying defaults and
// recording every problem with its document and field path.
type converter struct {
	l       *loader
	edges   []*document
	edge    *rawEdge
	edgeDoc *document
	desired Desired
	byName  map[string]map[string]*document // kind -> name -> first document
	vms     []*document                     // parallel to desired.Infra.VMs
}

func newConverter(l *loader) *converter {
	return &converter{l: l, byName: map[string]map[string]*document{}}
}

var kinds = []string{"Edge", "Backend", "Route", "VirtualMachine"}

// decode decodes one document by its kind and converts its spec.
func (c *converter) decode(d *document) {
	l := c.l
	kind := kindOf(d.data)
	var hdr *rawHeader
	var spec any
	var doc any
	switch kind {
	case "Edge":
		v := &edgeDoc{}
		doc, hdr, spec = v, &v.rawHeader, &v.Spec
	case "Backend":
		v := &backendDoc{}
		doc, hdr, spec = v, &v.rawHeader, &v.Spec
	case "Route":
		v := &routeDoc{}
		doc, hdr, spec = v, &v.rawHeader, &v.Spec
	case "VirtualMachine":
		v := &vmDoc{}
		doc, hdr, spec = v, &v.rawHeader, &v.Spec
	default:
		// Unknown or missing kind: decode loosely for syntax errors and the name.
		var m map[string]any
		if err := k8syaml.Unmarshal(d.data, &m); err != nil {
			l.decodeStrict(d, &m, func() string { return "" })
			return
		}
		if md, ok := m["metadata"].(map[string]any); ok {
			d.name, _ = md["name"].(string)
		}
		if kind == "" {
			l.failAt(d, "kind", "missing kind: expected one of %s", strings.Join(kinds, ", "))
		} else {
			d.kind = kind
			l.failAt(d, "kind", "unknown kind %q: expected one of %s", kind, strings.Join(kinds, ", "))
		}
		return
	}
	d.kind = kind
	_, usable := l.decodeStrict(d, doc, func() string { return hdr.Metadata.Name })
	if !usable {
		return
	}
	d.name = hdr.Metadata.Name
	hasSpec := !reflect.ValueOf(spec).Elem().IsNil()
	if !c.header(d, hdr, hasSpec) {
		return
	}
	if kind == "Edge" {
		c.edges = append(c.edges, d)
		if len(c.edges) == 1 {
			c.edge, c.edgeDoc = doc.(*edgeDoc).Spec, d
		}
		return
	}
	if !c.unique(d) {
		return
	}
	switch v := doc.(type) {
	case *backendDoc:
		c.desired.Dataplane.Backends = append(c.desired.Dataplane.Backends, c.backend(d, v.Spec))
	case *routeDoc:
		c.desired.Dataplane.Routes = append(c.desired.Dataplane.Routes, c.route(d, v.Spec))
	case *vmDoc:
		c.desired.Infra.VMs = append(c.desired.Infra.VMs, c.vm(d, v.Spec))
		c.vms = append(c.vms, d)
	}
}

var dnsName = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,251}[a-zA-Z0-9])?$`)

func (c *converter) header(d *document, h *rawHeader, hasSpec bool) bool {
	ok := true
	if h.APIVersion != apiVersion {
		c.l.failAt(d, "apiVersion", "expected %q, got %q", apiVersion, h.APIVersion)
		ok = false
	}
	if h.Metadata.Name == "" {
		c.l.failAt(d, "metadata.name", "missing: every document needs a name")
		ok = false
	} else if !dnsName.MatchString(h.Metadata.Name) {
		c.l.failAt(d, "metadata.name", "%q is not a valid name: use letters, digits, '-', '_' and '.'", h.Metadata.Name)
		ok = false
	}
	if !hasSpec {
		c.l.failAt(d, "spec", "missing spec")
		ok = false
	}
	return ok
}

func (c *converter) unique(d *document) bool {
	m := c.byName[d.kind]
	if m == nil {
		m = map[string]*document{}
		c.byName[d.kind] = m
	}
	if prev, dup := m[d.name]; dup {
		c.l.failAt(d, "metadata.name", "a %s named %q is already defined at %s:%d", d.kind, d.name, prev.file, prev.line)
		return false
	}
	m[d.name] = d
	return true
}

func (c *converter) duration(d *document, field, s string, def time.Duration) time.Duration {
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		c.l.failAt(d, field, "bad duration %q: expected a number with a unit, as 1s, 100ms or 1m30s", s)
		return def
	}
	return v
}

func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

func (c *converter) oneOf(d *document, field, got, def string, allowed ...string) string {
	if got == "" {
		return def
	}
	if !slices.Contains(allowed, got) {
		c.l.failAt(d, field, "%q is not allowed: expected one of %s", got, strings.Join(allowed, ", "))
		return def
	}
	return got
}

func (c *converter) backend(d *document, r *rawBackend) dataplane.Backend {
	b := dataplane.Backend{
		Name:           d.name,
		Balance:        dataplane.Balance(c.oneOf(d, "spec.balance", r.Balance, defBalance, "roundrobin", "leastconn", "source")),
		ProxyProtocol:  dataplane.ProxyProtocol(c.oneOf(d, "spec.proxyProtocol", r.ProxyProtocol, defProxyProtocol, "none", "v1", "v2")),
		ConnectTimeout: c.duration(d, "spec.connectTimeout", r.ConnectTimeout, defConnectTimeout),
		QueueTimeout:   c.duration(d, "spec.queueTimeout", r.QueueTimeout, defQueueTimeout),
		IdleTimeout:    c.duration(d, "spec.idleTimeout", r.IdleTimeout, defIdleTimeout),
		Retries:        intOr(r.Retries, defRetries),
	}
	if b.ConnectTimeout == 0 {
		c.l.failAt(d, "spec.connectTimeout", "must be more than 0s")
	}
	if b.Retries < 0 || b.Retries > 100 {
		c.l.failAt(d, "spec.retries", "must be 0..100, got %d", b.Retries)
	}
	if hc := r.HealthCheck; hc != nil {
		b.HealthCheck = dataplane.HealthCheck{
			Type:     dataplane.HealthCheckType(c.oneOf(d, "spec.healthCheck.type", hc.Type, "tcp", "tcp", "http")),
			Interval: c.duration(d, "spec.healthCheck.interval", hc.Interval, defCheckInterval),
			Timeout:  c.duration(d, "spec.healthCheck.timeout", hc.Timeout, defCheckTimeout),
			Rise:     intOr(hc.Rise, defCheckRise),
			Fall:     intOr(hc.Fall, defCheckFall),
			Host:     hc.Host,
		}
		if b.HealthCheck.Type == dataplane.CheckHTTP {
			b.HealthCheck.Path = cmp.Or(hc.Path, defCheckPath)
			if !strings.HasPrefix(b.HealthCheck.Path, "/") {
				c.l.failAt(d, "spec.healthCheck.path", "%q must start with /", hc.Path)
			}
		} else if hc.Path != "" || hc.Host != "" {
			c.l.failAt(d, "spec.healthCheck.path", "path and host are for type: http checks")
		}
		if b.HealthCheck.Interval <= 0 || b.HealthCheck.Timeout <= 0 {
			c.l.failAt(d, "spec.healthCheck", "interval and timeout must be more than 0s")
		}
		if b.HealthCheck.Rise < 1 || b.HealthCheck.Fall < 1 {
			c.l.failAt(d, "spec.healthCheck", "rise and fall must be at least 1")
		}
	}
	if len(r.Servers) == 0 {
		c.l.failAt(d, "spec.servers", "at least one server is required")
	}
	for i, rs := range r.Servers {
		f := fmt.Sprintf("spec.servers[%d]", i)
		s := dataplane.Server{Name: rs.Name, Weight: intOr(rs.Weight, defWeight), MaxConn: intOr(rs.MaxConn, 0)}
		if s.Name == "" {
			c.l.failAt(d, f+".name", "missing: every server needs a name")
		}
		ap, err := netip.ParseAddrPort(rs.Address)
		if err != nil || ap.Port() == 0 {
			c.l.failAt(d, f+".address", "bad address %q: expected IP:port, as 192.0.2.10:443 or [2001:db8::10]:443", rs.Address)
		}
		s.Address = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if s.Weight < 0 || s.Weight > 256 {
			c.l.failAt(d, f+".weight", "must be 0..256 (0 drains the server), got %d", s.Weight)
		}
		if s.MaxConn < 0 {
			c.l.failAt(d, f+".maxConn", "must be 0 (unlimited) or more, got %d", s.MaxConn)
		}
		b.Servers = append(b.Servers, s)
	}
	return b
}

func (c *converter) route(d *document, r *rawRoute) dataplane.Route {
	rt := dataplane.Route{Name: d.name}
	if r.HTTP != nil {
		rt.HTTPBackend = r.HTTP.Backend
		if rt.HTTPBackend == "" {
			c.l.failAt(d, "spec.http.backend", "missing: name the Backend for HTTP requests")
		}
	}
	if r.TLS != nil {
		rt.TLSBackend = r.TLS.Backend
		if rt.TLSBackend == "" {
			c.l.failAt(d, "spec.tls.backend", "missing: name the Backend for TLS connections")
		}
	}
	if r.HTTP == nil && r.TLS == nil {
		c.l.failAt(d, "spec", "a Route needs http, tls or both")
	}
	if len(r.Hosts) == 0 {
		c.l.failAt(d, "spec.hosts", "at least one host is required")
	}
	if len(r.Hosts) > c.l.lim.hostsPerRoute {
		c.l.failAt(d, "spec.hosts", "%d hosts: a route may hold at most %d (use a wildcard, or split the route)", len(r.Hosts), c.l.lim.hostsPerRoute)
		return rt
	}
	for i, h := range r.Hosts {
		n, err := dataplane.NormalizeHost(h)
		if err != nil {
			c.l.failAt(d, fmt.Sprintf("spec.hosts[%d]", i), "%v", err)
			continue
		}
		rt.Hosts = append(rt.Hosts, n)
	}
	return rt
}

func (c *converter) listener(d *document, i int, r rawListener) dataplane.Listener {
	f := fmt.Sprintf("spec.listeners[%d]", i)
	ln := dataplane.Listener{
		Name:           r.Name,
		DefaultBackend: r.DefaultBackend,
		ForwardFor:     r.ForwardFor,
		InspectTimeout: c.duration(d, f+".inspectTimeout", r.InspectTimeout, defInspectTimeout),
		RequestTimeout: c.duration(d, f+".requestTimeout", r.RequestTimeout, defRequestTimeout),
		ClientTimeout:  c.duration(d, f+".clientTimeout", r.ClientTimeout, defClientTimeout),
		DrainTimeout:   c.duration(d, f+".drainTimeout", r.DrainTimeout, defDrainTimeout),
		MaxHeaderBytes: intOr(r.MaxHeaderBytes, defMaxHeaderBytes),
	}
	if r.Name == "" {
		c.l.failAt(d, f+".name", "missing: every listener needs a name")
	}
	switch r.Mode {
	case "http", "tls":
		ln.Mode = dataplane.Mode(r.Mode)
	case "":
		c.l.failAt(d, f+".mode", "missing: expected http or tls")
	default:
		c.l.failAt(d, f+".mode", "%q is not allowed: expected http or tls", r.Mode)
	}
	b, err := dataplane.ParseBind(r.Bind)
	if err != nil {
		c.l.failAt(d, f+".bind", "%v", err)
	}
	ln.Bind = b
	if ln.MaxHeaderBytes < 1024 || ln.MaxHeaderBytes > 1<<20 {
		c.l.failAt(d, f+".maxHeaderBytes", "must be 1024..1048576, got %d", ln.MaxHeaderBytes)
	}
	if ln.Mode == dataplane.ModeTLS && ln.ForwardFor {
		c.l.failAt(d, f+".forwardFor", "is for mode http: a tls listener does not see HTTP headers (use a Backend's proxyProtocol)")
	}
	for j, s := range r.AcceptProxy {
		p, err := parsePrefix(s)
		if err != nil {
			c.l.failAt(d, fmt.Sprintf("%s.acceptProxy[%d]", f, j), "%v", err)
			continue
		}
		ln.AcceptProxy = append(ln.AcceptProxy, p)
	}
	return ln
}

// parsePrefix accepts a CIDR or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address %q: expected a CIDR, as 192.0.2.0/24", s)
		}
		return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad CIDR %q: expected an address with a prefix length, as 192.0.2.0/24", s)
	}
	return p, nil
}

// finish converts the Edge, then runs the cross-document checks.
func (c *converter) finish() *Desired {
	l := c.l
	switch len(c.edges) {
	case 0:
		if len(l.errs) == 0 && len(l.located) == 0 {
			l.failFile("", 0, "no Edge document: exactly one kind: Edge is required (it holds the listeners)")
		}
	case 1:
	default:
		for _, d := range c.edges[1:] {
			first := c.edges[0]
			l.failAt(d, "kind", "a second Edge document: exactly one is allowed (the first is Edge %q at %s:%d)", first.name, first.file, first.line)
		}
	}
	if c.edge != nil {
		c.convertEdge(c.edgeDoc, c.edge)
	}
	c.validateDataplane()
	if c.edgeDoc != nil {
		c.checkBinds()
	}
	c.checkServerLoops()
	c.checkLocal()
	c.validateInfra()
	if routes := c.desired.Dataplane.Routes; len(routes) > l.lim.routes {
		l.failAt(c.byName["Route"][routes[l.lim.routes].Name], "metadata.name",
			"route %d: a repository may hold at most %d routes", l.lim.routes+1, l.lim.routes)
	}
	return &c.desired
}

func (c *converter) convertEdge(d *document, r *rawEdge) {
	l := c.l
	e := &c.desired.Edge
	e.Name = d.name
	nodeNames := map[string]bool{}
	addrs := map[netip.Addr]string{}
	for i, rn := range r.Nodes {
		f := fmt.Sprintf("spec.nodes[%d]", i)
		n := Node{Name: rn.Name}
		if rn.Name == "" {
			l.failAt(d, f+".name", "missing: every node needs a name")
		} else if nodeNames[rn.Name] {
			l.failAt(d, f+".name", "node %q is listed twice", rn.Name)
		}
		nodeNames[rn.Name] = true
		a, err := netip.ParseAddr(rn.Address)
		if err != nil {
			l.failAt(d, f+".address", "bad address %q: expected an IP address, as 192.0.2.250", rn.Address)
		} else if other, dup := addrs[a]; dup {
			l.failAt(d, f+".address", "%s is also the address of node %q", a, other)
		} else {
			addrs[a] = rn.Name
		}
		n.Address = a.Unmap()
		e.Nodes = append(e.Nodes, n)
	}
	for i, rl := range r.Listeners {
		c.desired.Dataplane.Listeners = append(c.desired.Dataplane.Listeners, c.listener(d, i, rl))
		for j, prev := range r.Listeners[:i] {
			if rl.Name != "" && prev.Name == rl.Name {
				l.failAt(d, fmt.Sprintf("spec.listeners[%d].name", i), "listener name %q is also used by spec.listeners[%d]", rl.Name, j)
			}
		}
	}
	type vridKey struct {
		iface string
		vrid  uint8
		v6    bool
	}
	vrids := map[vridKey]string{}
	vips := map[netip.Addr]string{}
	for i, ri := range r.Failover {
		f := fmt.Sprintf("spec.failover[%d]", i)
		in := c.instance(d, f, ri, nodeNames)
		for j, prev := range e.Failover {
			if in.Name != "" && prev.Name == in.Name {
				l.failAt(d, f+".name", "instance name %q is also used by spec.failover[%d]", in.Name, j)
			}
		}
		v6 := len(in.VIPs) > 0 && in.VIPs[0].Addr().Is6()
		k := vridKey{in.Interface, in.VRID, v6}
		if other, dup := vrids[k]; dup && in.VRID != 0 {
			l.failAt(d, f+".virtualRouterID", "VRID %d on %s is also used by instance %q", in.VRID, in.Interface, other)
		} else {
			vrids[k] = in.Name
		}
		for j, v := range in.VIPs {
			if other, dup := vips[v.Addr()]; dup {
				l.failAt(d, fmt.Sprintf("%s.vips[%d]", f, j), "VIP %s is also claimed by instance %q", v.Addr(), other)
			} else {
				vips[v.Addr()] = in.Name
			}
		}
		e.Failover = append(e.Failover, in)
	}
	if r.Infra != nil {
		c.desired.Infra.Prune = r.Infra.Prune
		switch ld := r.Infra.Leader; {
		case strings.HasPrefix(ld, "vrrp:"):
			name := strings.TrimPrefix(ld, "vrrp:")
			if !slices.ContainsFunc(e.Failover, func(v VRRPInstance) bool { return v.Name == name }) {
				l.failAt(d, "spec.infra.leader", "no failover instance named %q (expected vrrp:INSTANCE or a node name)", name)
			}
			e.InfraLeader = Leader{VRRP: name}
		case ld != "":
			if !nodeNames[ld] {
				l.failAt(d, "spec.infra.leader", "%q is neither vrrp:INSTANCE nor a node in spec.nodes", ld)
			}
			e.InfraLeader = Leader{Node: ld}
		}
	}
}

func (c *converter) instance(d *document, f string, r rawInstance, nodes map[string]bool) VRRPInstance {
	l := c.l
	in := VRRPInstance{
		Instance: failover.Instance{
			Name:            r.Name,
			Interface:       r.Interface,
			Version:         intOr(r.Version, defVRRPVersion),
			AdvertInterval:  c.duration(d, f+".advertInterval", r.AdvertInterval, defAdvertInterval),
			Preempt:         defPreempt,
			PreemptDelay:    c.duration(d, f+".preemptDelay", r.PreemptDelay, 0),
			GARP:            failover.GARP{Repeat: defGARPRepeat, Delay: defGARPDelay, Refresh: defGARPRefresh},
			TrackInterfaces: nil,
		},
		Priorities: map[string]uint8{},
		Unicast:    r.UnicastPeers,
	}
	if r.Name == "" {
		l.failAt(d, f+".name", "missing: every failover instance needs a name, as VI_1")
	}
	if r.Interface == "" {
		l.failAt(d, f+".interface", "missing: the interface the VIPs go on, as eth0")
	}
	if r.Preempt != nil {
		in.Preempt = *r.Preempt
	}
	switch {
	case r.VirtualRouterID == nil:
		l.failAt(d, f+".virtualRouterID", "missing: expected 1..255")
	case *r.VirtualRouterID < 1 || *r.VirtualRouterID > 255:
		l.failAt(d, f+".virtualRouterID", "must be 1..255, got %d", *r.VirtualRouterID)
	default:
		in.VRID = uint8(*r.VirtualRouterID)
	}
	if r.Auth != nil {
		switch r.Auth.Type {
		case "pass":
			in.AuthPass = r.Auth.Password
			if r.Auth.Password == "" {
				l.failAt(d, f+".auth.password", "missing: auth type pass needs a password")
			}
		default:
			l.failAt(d, f+".auth.type", "%q is not supported: expected pass (keepalived's auth_type PASS)", r.Auth.Type)
		}
	}
	if r.Track != nil {
		in.TrackProxy = r.Track.Proxy
		in.TrackInterfaces = slices.Clone(r.Track.Interfaces)
	}
	if g := r.GARP; g != nil {
		in.GARP.Repeat = intOr(g.Repeat, defGARPRepeat)
		in.GARP.Delay = c.duration(d, f+".garp.delay", g.Delay, defGARPDelay)
		in.GARP.Refresh = c.duration(d, f+".garp.refresh", g.Refresh, defGARPRefresh)
		if in.GARP.Repeat < 1 || in.GARP.Repeat > 100 {
			l.failAt(d, f+".garp.repeat", "must be 1..100, got %d", in.GARP.Repeat)
		}
	}
	for j, s := range r.VIPs {
		p, err := parsePrefix(s)
		if err != nil {
			l.failAt(d, fmt.Sprintf("%s.vips[%d]", f, j), "%v", err)
			continue
		}
		in.VIPs = append(in.VIPs, p)
	}
	c.checkVIPs(d, f, r.VIPs, &in)
	for _, fe := range failover.ValidateInstance(in.Instance) {
		if fe.Field == "vips" && len(r.VIPs) > len(in.VIPs) {
			continue // already reported per VIP
		}
		if fe.Field == "virtualRouterID" {
			continue // checked above, with the raw value
		}
		l.failAt(d, f+"."+fe.Field, "%s", fe.Msg)
	}
	// Priorities: one per node, 1..254 (255 only for the VIP owner).
	names := make([]string, 0, len(r.Priority))
	for n := range r.Priority {
		names = append(names, n)
	}
	slices.Sort(names)
	if len(c.edge.Nodes) == 0 {
		names = nil // reported once below
	}
	for _, n := range names {
		p := r.Priority[n]
		pf := f + ".priority." + n
		if !nodes[n] {
			l.failAt(d, pf, "node %q is not in spec.nodes", n)
			continue
		}
		// 255 is for an address owner (RFC 5798 §5.2.4), a node whose own
		// address is the VIP: refused (checkVIPs), so never valid here.
		if p < 1 || p > 254 {
			l.failAt(d, pf, "priority %d is outside 1..254 (0 is sent on stop; 255 marks an address owner, and a VIP must not be a node's own address)", p)
			continue
		}
		in.Priorities[n] = uint8(p)
	}
	for _, n := range c.edge.Nodes {
		if _, ok := r.Priority[n.Name]; !ok && n.Name != "" {
			l.failAt(d, f+".priority", "missing a priority for node %q: every node in spec.nodes needs one", n.Name)
		}
	}
	if len(c.edge.Nodes) == 0 {
		l.failAt(d, f, "failover needs spec.nodes: the nodes that share the VIPs")
	}
	if in.Unicast && len(c.edge.Nodes) < 2 {
		l.failAt(d, f+".unicastPeers", "unicast needs at least two nodes in spec.nodes")
	}
	return in
}

func (c *converter) validateDataplane() {
	for _, fe := range c.desired.Dataplane.Validate() {
		var d *document
		switch fe.Kind {
		case "Edge":
			d = c.edgeDoc
		default:
			d = c.byName[fe.Kind][fe.Name]
		}
		if d == nil {
			c.l.failFile("", 0, "%v", fe)
			continue
		}
		c.l.failAt(d, fe.Field, "%s", fe.Msg)
	}
}

var haStates = []string{"started", "stopped", "disabled", "ignored"}

func (c *converter) vm(d *document, r *rawVM) infra.VM {
	l := c.l
	v := infra.VM{
		Name:          d.name,
		VMID:          intOr(r.VMID, 0),
		Node:          r.Node,
		Clone:         r.Clone,
		CPU:           r.CPU,
		Cores:         intOr(r.Cores, defCores),
		Memory:        intOr(r.Memory, defMemory),
		OnBoot:        r.OnBoot,
		Agent:         r.Agent,
		Description:   strings.TrimRight(r.Description, " \t\n"),
		Serial:        r.Serial,
		VGA:           r.VGA,
		IgnoreChanges: slices.Clone(r.IgnoreChanges),
	}
	switch {
	case r.VMID == nil:
		l.failAt(d, "spec.vmid", "missing: the VMID is the idempotency key across nodes; pick a free one in 100..999999999")
	case v.VMID < 100 || v.VMID > 999999999:
		l.failAt(d, "spec.vmid", "must be 100..999999999 (Proxmox's range), got %d", v.VMID)
	}
	if v.Node == "" {
		l.failAt(d, "spec.node", "missing: the Proxmox node to create the VM on")
	}
	if v.Clone == "" {
		l.failAt(d, "spec.clone", "missing: the template to clone from")
	}
	if v.Cores < 1 || v.Cores > 512 {
		l.failAt(d, "spec.cores", "must be 1..512, got %d", v.Cores)
	}
	if v.Memory < 16 {
		l.failAt(d, "spec.memory", "must be at least 16 (MiB), got %d", v.Memory)
	}
	if strings.ContainsAny(d.name, "_") {
		l.failAt(d, "metadata.name", "%q is not a valid Proxmox VM name: use letters, digits, '-' and '.'", d.name)
	}
	if dk := r.Disk; dk != nil {
		v.Disk = infra.Disk{
			Bus:     c.oneOf(d, "spec.disk.bus", dk.Bus, "scsi", "scsi", "virtio", "sata", "ide"),
			Storage: dk.Storage,
			Format:  c.oneOf(d, "spec.disk.format", dk.Format, "", "raw", "qcow2", "vmdk"),
		}
		if dk.Size != "" {
			s, err := infra.ParseSize(dk.Size)
			if err != nil {
				l.failAt(d, "spec.disk.size", "%v", err)
			}
			v.Disk.Size = s
		}
		if dk.Storage == "" {
			l.failAt(d, "spec.disk.storage", "missing: the storage the cloned disk goes to, as vmdata")
		}
	}
	for i, n := range r.Network {
		f := fmt.Sprintf("spec.network[%d]", i)
		nic := infra.NIC{Model: cmp.Or(n.Model, "virtio"), Bridge: n.Bridge, VLAN: intOr(n.VLAN, 0)}
		if n.Bridge == "" {
			l.failAt(d, f+".bridge", "missing: the bridge to attach to, as vmbr0")
		}
		if n.VLAN != nil && (nic.VLAN < 1 || nic.VLAN > 4094) {
			l.failAt(d, f+".vlan", "must be 1..4094, got %d", nic.VLAN)
		}
		if !slices.Contains([]string{"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3"}, nic.Model) {
			l.failAt(d, f+".model", "%q is not allowed: expected virtio, e1000, e1000e, rtl8139 or vmxnet3", nic.Model)
		}
		v.Network = append(v.Network, nic)
	}
	if ci := r.CloudInit; ci != nil {
		v.CloudInit = infra.CloudInit{User: ci.User, Nameserver: ci.Nameserver, SearchDomain: ci.SearchDomain, SSHKeys: slices.Clone(ci.SSHKeys)}
		if ip := ci.IPConfig; ip != nil {
			switch {
			case ip.IP == "dhcp":
				v.CloudInit.IPConfig.DHCP = true
			case ip.IP != "":
				p, err := netip.ParsePrefix(ip.IP)
				if err != nil {
					l.failAt(d, "spec.cloudInit.ipConfig.ip", "bad address %q: expected dhcp or an address with its prefix length, as 192.0.2.250/24", ip.IP)
				}
				v.CloudInit.IPConfig.IP = p
			}
			if ip.Gateway != "" {
				g, err := netip.ParseAddr(ip.Gateway)
				if err != nil {
					l.failAt(d, "spec.cloudInit.ipConfig.gateway", "bad address %q: expected an IP address", ip.Gateway)
				}
				v.CloudInit.IPConfig.Gateway = g
			}
		}
		for ns := range strings.FieldsSeq(ci.Nameserver) {
			if _, err := netip.ParseAddr(ns); err != nil {
				l.failAt(d, "spec.cloudInit.nameserver", "bad address %q: expected IP addresses separated by spaces", ns)
			}
		}
	}
	if r.HA != nil {
		v.HA = &infra.HA{Group: r.HA.Group, State: c.oneOf(d, "spec.ha.state", r.HA.State, "started", haStates...)}
	}
	for i, f := range v.IgnoreChanges {
		if !slices.Contains(infra.IgnorableFields(), f) {
			l.failAt(d, fmt.Sprintf("spec.ignoreChanges[%d]", i), "%q cannot be ignored: expected one of %s", f, strings.Join(infra.IgnorableFields(), ", "))
		}
	}
	return v
}

func (c *converter) validateInfra() {
	vmids := map[int]*document{}
	for i, v := range c.desired.Infra.VMs {
		d := c.vms[i]
		if prev, dup := vmids[v.VMID]; dup && v.VMID != 0 {
			c.l.failAt(d, "spec.vmid", "VMID %d is also used by VirtualMachine %q (%s:%d)", v.VMID, prev.name, prev.file, prev.line)
		} else {
			vmids[v.VMID] = d
		}
	}
	e := &c.desired.Edge
	if len(c.desired.Infra.VMs) > 0 && e.InfraLeader == (Leader{}) && c.edgeDoc != nil {
		switch {
		case len(e.Failover) == 1:
			e.InfraLeader = Leader{VRRP: e.Failover[0].Name}
		case len(e.Nodes) == 1:
			e.InfraLeader = Leader{Node: e.Nodes[0].Name}
		case len(e.Nodes) == 0:
			// A single node running without a nodes list leads itself.
		default:
			c.l.failAt(c.edgeDoc, "spec.infra.leader", "missing: with VirtualMachines and several nodes, say who applies VM changes (vrrp:INSTANCE or a node name)")
		}
	}
}
