package main

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gitedge/gitedge/internal/atomicfile"
)

// topology is where everything listens: loopback addresses only.
type topology struct {
	ProxyIP       string // the proxy under test
	HTTPPort      int    // its http listener
	TLSPort       int    // its tls (SNI passthrough) listener
	AdminPort     int    // Caddy's admin API (reloads)
	BackendHTTP   int    // the port of every plain HTTP server
	BackendTLS    int    // the port of every TLS server
	ServerMaxConn int    // maxConn of every server
	// InspectTimeout of the tls listener: how long a proxy waits for a
	// ClientHello (HAProxy's inspect-delay, nginx's preread_timeout).
	InspectTimeout string
	// NoDeferAccept: the listeners take a connection as soon as its
	// handshake ends (deferAccept: false) in every proxy, instead of
	// when its first byte comes.
	NoDeferAccept bool
}

func defaultTopology() topology {
	return topology{ProxyIP: "127.0.0.2", HTTPPort: 28080, TLSPort: 28443, AdminPort: 28019,
		BackendHTTP: 28001, BackendTLS: 28443, ServerMaxConn: 1000, InspectTimeout: "5s"}
}

func (t topology) httpAddr() string { return fmt.Sprintf("%s:%d", t.ProxyIP, t.HTTPPort) }
func (t topology) tlsAddr() string  { return fmt.Sprintf("%s:%d", t.ProxyIP, t.TLSPort) }

// The servers behind the proxy. Each answers with its own name, so a
// routing mistake shows in the bodies.
var (
	httpServers = []struct{ name, ip string }{
		{"a1", "127.0.0.11"}, {"a2", "127.0.0.12"}, {"b1", "127.0.0.13"}, {"b2", "127.0.0.14"}, {"def1", "127.0.0.15"},
	}
	tlsServers = []struct{ name, ip string }{
		{"ta1", "127.0.0.21"}, {"ta2", "127.0.0.22"}, {"tb1", "127.0.0.23"}, {"tdef1", "127.0.0.24"},
	}
)

// writeRoutes writes the routes directory every proxy's config comes
// from, as a gitedge routes repository (docs/repository.md). Variant "b" adds the
// host d.test in both modes: reloads alternate a and b, so each is a real
// change. The directory is replaced file by file through a rename, so a
// reader never sees half a file.
func writeRoutes(dir string, t topology, variant string) error {
	var edge, backends, routes strings.Builder
	fmt.Fprintf(&edge, `apiVersion: gitedge/v1
kind: Edge
metadata: {name: bench}
spec:
  listeners:
    - {name: http, bind: "%s", mode: http, defaultBackend: be_def, deferAccept: %t}
    - {name: https, bind: "%s", mode: tls, defaultBackend: tls_def, inspectTimeout: %s, deferAccept: %t}
`, t.httpAddr(), !t.NoDeferAccept, t.tlsAddr(), cmp.Or(t.InspectTimeout, "5s"), !t.NoDeferAccept)
	type server struct{ name, addr string }
	hs := func(i int) server {
		return server{httpServers[i].name, fmt.Sprintf("%s:%d", httpServers[i].ip, t.BackendHTTP)}
	}
	ts := func(i int) server {
		return server{tlsServers[i].name, fmt.Sprintf("%s:%d", tlsServers[i].ip, t.BackendTLS)}
	}
	backend := func(name string, servers ...server) {
		fmt.Fprintf(&backends, "---\napiVersion: gitedge/v1\nkind: Backend\nmetadata: {name: %s}\nspec:\n  balance: roundrobin\n  connectTimeout: 1s\n  servers:\n", name)
		for _, s := range servers {
			fmt.Fprintf(&backends, "    - {name: %s, address: \"%s\", weight: 10, maxConn: %d}\n", s.name, s.addr, t.ServerMaxConn)
		}
	}
	backend("be_a", hs(0), hs(1))
	backend("be_b", hs(2), hs(3))
	backend("be_def", hs(4))
	backend("tls_a", ts(0), ts(1))
	backend("tls_b", ts(2))
	backend("tls_def", ts(3))
	route := func(name, mode, backend string, hosts ...string) {
		fmt.Fprintf(&routes, "---\napiVersion: gitedge/v1\nkind: Route\nmetadata: {name: %s}\nspec:\n  hosts: [%s]\n  %s: {backend: %s}\n",
			name, strings.Join(hosts, ", "), mode, backend)
	}
	aHosts := []string{"a.test"}
	if variant == "b" {
		aHosts = append(aHosts, "d.test")
	}
	route("a", "http", "be_a", aHosts...)
	route("b", "http", "be_b", "b.test", "www.b.test")
	route("tls-a", "tls", "tls_a", aHosts...)
	route("tls-b", "tls", "tls_b", "b.test")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, body := range map[string]string{"edge.yaml": edge.String(), "backends.yaml": backends.String(), "routes.yaml": routes.String()} {
		if err := atomicfile.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	return nil
}
