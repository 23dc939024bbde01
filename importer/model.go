package importer

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gitedge/gitedge/importer/report"
	"gopkg.in/yaml.v3"
)

// The model mirrors the repository format (field names as in YAML); it is
// what the importer builds and the writer renders. Durations are already
// formatted; pointers mark values that are written only when set.

type repo struct {
	edge     edge
	backends []*backend
	routes   []*route
	vms      []*vm
}

type edge struct {
	name      string
	sources   []string // input files, for the document comment
	nodes     []*node
	failover  []*instance
	listeners []*listener
	leader    string
}

type node struct {
	name, address string
	from          string // where the address came from
}

type instance struct {
	name, iface     string
	vrid, version   int
	advert          string
	priority        []nodePriority
	preempt         bool
	preemptDelay    string
	auth            *auth
	unicast         bool
	vips            []string
	trackProxy      bool
	trackIfaces     []string
	garpRepeat      *int
	garpDelay       string
	garpRefresh     string
	from            []string
	priorityComment string
}

type nodePriority struct {
	node string
	prio int
}

type auth struct {
	typ, password string
	secret        string // written as {secret: NAME} instead of the password
}

type listener struct {
	name, bind, mode, defaultBackend string
	forwardFor                       bool
	inspectTimeout, requestTimeout   string
	clientTimeout                    string
	acceptProxy                      []string
	maxConn                          *int
	from                             report.Pos
	label                            string
}

type backend struct {
	name                   string
	from                   report.Pos
	label                  string
	balance, proxyProtocol string
	connect, queue, idle   string
	retries                *int
	check                  *healthCheck
	servers                []*server
}

type healthCheck struct {
	typ, path, host, interval, timeout string
	rise, fall                         int
}

type server struct {
	name, address   string
	weight, maxConn *int
	from            report.Pos
}

type route struct {
	name      string
	hosts     []string
	http, tls string
	from      []string
}

type vm struct {
	name          string
	pos           report.Pos
	from          []string
	vmid          *int
	node, clone   string
	description   string
	cpu           string
	cores, memory *int
	onBoot, agent bool
	disk          *disk
	network       []nic
	cloudInit     *cloudInit
	serial, vga   string
	ha            *ha
	ignore        []string
}

type disk struct{ bus, storage, size, format string }

type nic struct {
	model, bridge string
	vlan          *int
}

type cloudInit struct {
	user, ip, gateway, nameserver, searchDomain string
	sshKeys                                     []string
}

type ha struct{ group, state string }

// fmtDuration writes a duration as gitedge reads it, in whole seconds when
// it can ("3600s", as HAProxy users write it), else milliseconds.
func fmtDuration(d time.Duration) string {
	switch {
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.String()
}

// ---- YAML rendering ----

type ynode = yaml.Node

// yamlSafe says whether a string can be written plain and read back as the
// same string by both YAML 1.1 (sigs.k8s.io/yaml) and 1.2 readers.
func yamlSafe(s string) bool {
	if s == "" {
		return false
	}
	switch strings.ToLower(s) {
	case "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~", ".nan", ".inf", "-.inf":
		return false
	}
	if _, err := strconv.ParseFloat(s, 64); err == nil {
		return false
	}
	if _, err := strconv.ParseInt(s, 0, 64); err == nil {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '/'
		if !ok || i == 0 && (c == '-' || c == '.') {
			return false
		}
	}
	return true
}

func str(s string) *ynode {
	n := &ynode{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
	if !yamlSafe(s) {
		n.Style = yaml.DoubleQuotedStyle
	}
	return n
}

func num(i int) *ynode {
	return &ynode{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(i)}
}

func boolean(b bool) *ynode {
	return &ynode{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}
}

// mapping builds a mapping from key, value pairs; a nil value (or an
// empty string given as *ynode nil) leaves its key out.
func mapping(kv ...any) *ynode {
	m := &ynode{Kind: yaml.MappingNode}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		v, _ := kv[i+1].(*ynode)
		if v == nil {
			continue
		}
		m.Content = append(m.Content, str(k), v)
	}
	return m
}

func flow(n *ynode) *ynode {
	n.Style = yaml.FlowStyle
	return n
}

func seq(items ...*ynode) *ynode {
	return &ynode{Kind: yaml.SequenceNode, Content: items}
}

func strs(ss []string) *ynode {
	n := seq()
	for _, s := range ss {
		n.Content = append(n.Content, str(s))
	}
	return n
}

// opt returns a string node, or nil for "" so mapping leaves it out.
func opt(s string) *ynode {
	if s == "" {
		return nil
	}
	return str(s)
}

func optInt(p *int) *ynode {
	if p == nil {
		return nil
	}
	return num(*p)
}

func optBool(b bool) *ynode {
	if !b {
		return nil
	}
	return boolean(true)
}

// document wraps a spec into a full document with its header comment.
func document(kind, name string, comment []string, spec *ynode) *ynode {
	root := mapping(
		"apiVersion", str("gitedge/v1"),
		"kind", str(kind),
		"metadata", mapping("name", str(name)),
		"spec", spec,
	)
	root.Content[0].HeadComment = strings.Join(comment, "\n")
	return root
}

func (e *edge) yaml() *ynode {
	spec := mapping()
	if len(e.nodes) > 0 {
		ns := seq()
		for _, n := range e.nodes {
			item := flow(mapping("name", str(n.name), "address", str(n.address)))
			item.LineComment = n.from
			ns.Content = append(ns.Content, item)
		}
		spec.Content = append(spec.Content, str("nodes"), ns)
	}
	if len(e.failover) > 0 {
		fs := seq()
		for _, in := range e.failover {
			fs.Content = append(fs.Content, in.yaml())
		}
		spec.Content = append(spec.Content, str("failover"), fs)
	}
	if len(e.listeners) > 0 {
		ls := seq()
		for _, l := range e.listeners {
			ls.Content = append(ls.Content, l.yaml())
		}
		spec.Content = append(spec.Content, str("listeners"), ls)
	}
	if e.leader != "" {
		spec.Content = append(spec.Content, str("infra"), mapping("leader", str(e.leader), "prune", boolean(false)))
	}
	comment := []string{"Imported by gitedge import from " + strings.Join(e.sources, ", ") + "."}
	return document("Edge", e.name, comment, spec)
}

func (in *instance) yaml() *ynode {
	prio := flow(mapping())
	for _, p := range in.priority {
		prio.Content = append(prio.Content, str(p.node), num(p.prio))
	}
	prio.LineComment = in.priorityComment
	var a *ynode
	if in.auth != nil {
		pw := str(in.auth.password)
		if in.auth.secret != "" {
			pw = flow(mapping("secret", str(in.auth.secret)))
		}
		a = flow(mapping("type", str(in.auth.typ), "password", pw))
	}
	var track *ynode
	if in.trackProxy || len(in.trackIfaces) > 0 {
		var ifs *ynode
		if len(in.trackIfaces) > 0 {
			ifs = flow(strs(in.trackIfaces))
		}
		track = flow(mapping("proxy", optBool(in.trackProxy), "interfaces", ifs))
	}
	var garp *ynode
	if in.garpRepeat != nil || in.garpDelay != "" || in.garpRefresh != "" {
		garp = flow(mapping("repeat", optInt(in.garpRepeat), "delay", opt(in.garpDelay), "refresh", opt(in.garpRefresh)))
	}
	m := mapping(
		"name", str(in.name),
		"interface", str(in.iface),
		"virtualRouterID", num(in.vrid),
		"version", num(in.version),
		"advertInterval", str(in.advert),
		"priority", prio,
		"preempt", boolean(in.preempt),
		"preemptDelay", opt(in.preemptDelay),
		"auth", a,
		"unicastPeers", optBool(in.unicast),
		"vips", flow(strs(in.vips)),
		"track", track,
		"garp", garp,
	)
	m.HeadComment = strings.Join(in.from, "\n")
	return m
}

func (l *listener) yaml() *ynode {
	var ap *ynode
	if len(l.acceptProxy) > 0 {
		ap = flow(strs(l.acceptProxy))
	}
	m := mapping(
		"name", str(l.name),
		"bind", str(l.bind),
		"mode", str(l.mode),
		"defaultBackend", opt(l.defaultBackend),
		"forwardFor", optBool(l.forwardFor),
		"inspectTimeout", opt(l.inspectTimeout),
		"requestTimeout", opt(l.requestTimeout),
		"clientTimeout", opt(l.clientTimeout),
		"acceptProxy", ap,
		"maxConn", optInt(l.maxConn),
	)
	m.HeadComment = fmt.Sprintf("%s: %s", l.from, l.label)
	return m
}

func (b *backend) yaml() *ynode {
	var hc *ynode
	if c := b.check; c != nil {
		hc = flow(mapping("type", str(c.typ), "path", opt(c.path), "host", opt(c.host), "interval", str(c.interval),
			"timeout", str(c.timeout), "rise", num(c.rise), "fall", num(c.fall)))
	}
	ss := seq()
	for _, s := range b.servers {
		item := flow(mapping("name", str(s.name), "address", str(s.address), "weight", optInt(s.weight), "maxConn", optInt(s.maxConn)))
		item.LineComment = s.from.String()
		ss.Content = append(ss.Content, item)
	}
	spec := mapping(
		"balance", str(b.balance),
		"proxyProtocol", str(b.proxyProtocol),
		"connectTimeout", opt(b.connect),
		"queueTimeout", opt(b.queue),
		"idleTimeout", opt(b.idle),
		"retries", optInt(b.retries),
		"healthCheck", hc,
		"servers", ss,
	)
	comment := []string{fmt.Sprintf("Imported by gitedge import from %s (%s).", b.from, b.label)}
	return document("Backend", b.name, comment, spec)
}

func (r *route) yaml() *ynode {
	var h, t *ynode
	if r.http != "" {
		h = flow(mapping("backend", str(r.http)))
	}
	if r.tls != "" {
		t = flow(mapping("backend", str(r.tls)))
	}
	spec := mapping("hosts", flow(strs(r.hosts)), "http", h, "tls", t)
	comment := append([]string{"Imported by gitedge import from:"}, r.from...)
	return document("Route", r.name, comment, spec)
}

func (v *vm) yaml() *ynode {
	var d *ynode
	if v.disk != nil {
		d = flow(mapping("bus", opt(v.disk.bus), "storage", opt(v.disk.storage), "size", opt(v.disk.size), "format", opt(v.disk.format)))
	}
	var net *ynode
	if len(v.network) > 0 {
		net = flow(seq())
		for _, n := range v.network {
			net.Content = append(net.Content, flow(mapping("model", opt(n.model), "bridge", opt(n.bridge), "vlan", optInt(n.vlan))))
		}
	}
	var ci *ynode
	if c := v.cloudInit; c != nil {
		var ip *ynode
		if c.ip != "" || c.gateway != "" {
			ip = flow(mapping("ip", opt(c.ip), "gateway", opt(c.gateway)))
		}
		var keys *ynode
		if len(c.sshKeys) > 0 {
			keys = strs(c.sshKeys)
		}
		ci = mapping("user", opt(c.user), "ipConfig", ip, "nameserver", opt(c.nameserver), "searchDomain", opt(c.searchDomain), "sshKeys", keys)
	}
	var h *ynode
	if v.ha != nil {
		h = flow(mapping("group", opt(v.ha.group), "state", opt(v.ha.state)))
	}
	var ign *ynode
	if len(v.ignore) > 0 {
		ign = flow(strs(v.ignore))
	}
	spec := mapping(
		"vmid", optInt(v.vmid),
		"node", opt(v.node),
		"clone", opt(v.clone),
		"description", opt(v.description),
		"cpu", opt(v.cpu),
		"cores", optInt(v.cores),
		"memory", optInt(v.memory),
		"onBoot", optBool(v.onBoot),
		"agent", optBool(v.agent),
		"disk", d,
		"network", net,
		"cloudInit", ci,
		"serial", opt(v.serial),
		"vga", opt(v.vga),
		"ha", h,
		"ignoreChanges", ign,
	)
	comment := append([]string{"Imported by gitedge import from:"}, v.from...)
	return document("VirtualMachine", v.name, comment, spec)
}

// render encodes one document.
func render(n *ynode) ([]byte, error) {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&ynode{Kind: yaml.DocumentNode, Content: []*ynode{n}}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return []byte(b.String()), nil
}

// files renders the repository: one file per document.
func (r *repo) files() (map[string][]byte, error) {
	out := map[string][]byte{}
	add := func(name string, n *ynode) error {
		data, err := render(n)
		if err != nil {
			return fmt.Errorf("rendering %s: %w", name, err)
		}
		out[name] = data
		return nil
	}
	if err := add("edge.yaml", r.edge.yaml()); err != nil {
		return nil, err
	}
	for _, b := range r.backends {
		if err := add("backends/"+b.name+".yaml", b.yaml()); err != nil {
			return nil, err
		}
	}
	for _, rt := range r.routes {
		if err := add("routes/"+rt.name+".yaml", rt.yaml()); err != nil {
			return nil, err
		}
	}
	for _, v := range r.vms {
		if err := add("vms/"+v.name+".yaml", v.yaml()); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// bindString renders an address and port as a listener bind.
func bindString(ip netip.Addr, port int) string {
	if !ip.IsValid() {
		return ":" + strconv.Itoa(port)
	}
	return netip.AddrPortFrom(ip, uint16(port)).String()
}

// uniqueName returns base, or base-2, base-3, ... the first not in used,
// and records it.
func uniqueName(base string, used map[string]bool) string {
	n := base
	for i := 2; used[n]; i++ {
		n = base + "-" + strconv.Itoa(i)
	}
	used[n] = true
	return n
}

// safeName turns a name into one gitedge accepts as metadata.name (and as
// a file name): letters, digits, '-', '_' and '.', starting and ending
// with a letter or digit.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			b[i] = '-'
		}
	}
	out := strings.Trim(string(b), "-_.")
	if out == "" {
		out = "x"
	}
	if len(out) > 200 {
		out = out[:200]
	}
	return out
}
