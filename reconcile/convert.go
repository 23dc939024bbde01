package reconcile

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

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

// timeout is duration for a timeout that 0 would make expire at once: an
// explicit 0s is refused (leaving the field out gives the default). No
// timeout means "no limit": a connection that never ends is what HAProxy
// warns about when a timeout is missing.
func (c *converter) timeout(d *document, field, s string, def time.Duration) time.Duration {
	v := c.duration(d, field, s, def)
	if s != "" && v == 0 {
		c.l.failAt(d, field, "must be more than 0s: %s would time out at once (leave the field out for the default, %s)", s, fmtDur(def))
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
		c.convertBGP()
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
