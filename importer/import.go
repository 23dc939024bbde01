package importer

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing/fstest"

	"github.com/gitedge/gitedge/importer/haproxy"
	"github.com/gitedge/gitedge/importer/keepalived"
	"github.com/gitedge/gitedge/importer/report"
	"github.com/gitedge/gitedge/importer/terraform"
	"github.com/gitedge/gitedge/reconcile"
)

// Options name the inputs of one import. Paths appear in the report and
// in the comments of the output as they are given here.
type Options struct {
	HAProxy    string     // haproxy.cfg; "" for none
	Keepalived []NodeFile // one keepalived.conf per node
	Terraform  []string   // .tf files, terraform show -json output, .tfstate files, or directories
	// Strict makes every item that is not carried over as it was (dropped
	// or changed) an error.
	Strict bool
	// EdgeName is the Edge document's name; "edge" when empty.
	EdgeName string
	// SecretPassword, when set, writes each VRRP password as a reference
	// {secret: NAME} resolved on the nodes, instead of the password
	// itself; "{instance}" in it is replaced by the instance's name. The
	// report says where each value goes.
	SecretPassword string
	// Addresses give nodes their address where keepalived has no
	// unicast_src_ip and no Terraform VM has it (a multicast setup).
	Addresses []NodeAddress
	// ReadFile reads the input files; nil means os.ReadFile.
	ReadFile func(name string) ([]byte, error)
}

// NodeFile is one node's keepalived configuration.
type NodeFile struct {
	Node, Path string
}

// NodeAddress is a node's address given on the command line (--address
// NODE=ADDRESS).
type NodeAddress struct {
	Node string
	Addr netip.Addr
}

// Result is an import: the repository files and the report.
type Result struct {
	// Files maps slash-separated paths (edge.yaml, backends/web.yaml) to
	// their contents.
	Files  map[string][]byte
	Report report.List
	// Summary counts what was imported, as "2 listeners, 3 routes, …".
	Summary string
}

// StrictError lists the items that fail a strict import.
type StrictError struct {
	Items []report.Item
}

func (e *StrictError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--strict: %d item(s) cannot be carried over as they are:", len(e.Items))
	for _, it := range e.Items {
		b.WriteString("\n  ")
		b.WriteString(it.String())
	}
	return b.String()
}

// InvalidError says the import would not be a valid repository; Errs are
// gitedge's own validation errors on it.
type InvalidError struct {
	Err error
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("the imported repository would not be valid (this is a bug of the importer, or the input holds values gitedge refuses):\n%v", e.Err)
}

func (e *InvalidError) Unwrap() error { return e.Err }

// Import reads the inputs and builds the repository. Parse errors are
// returned as report.Errors (every one, with file and line) with a nil
// Result. A strict import with items to report returns the Result and a
// *StrictError.
func Import(opts Options) (*Result, error) {
	if opts.HAProxy == "" && len(opts.Keepalived) == 0 && len(opts.Terraform) == 0 {
		return nil, errors.New("nothing to import: give --haproxy, --keepalived or --terraform")
	}
	var errs report.Errors
	res := &Result{}
	out := &repo{edge: edge{name: opts.EdgeName}}
	if out.edge.name == "" {
		out.edge.name = "edge"
	}
	rep := &res.Report
	read := opts.ReadFile
	if read == nil {
		read = os.ReadFile
	}

	if opts.HAProxy != "" {
		data, err := read(opts.HAProxy)
		if err != nil {
			return nil, err
		}
		cfg, err := haproxy.Parse(opts.HAProxy, data)
		if err != nil {
			appendErr(&errs, err)
		} else {
			importHAProxy(cfg, out, rep, &errs)
		}
		out.edge.sources = append(out.edge.sources, opts.HAProxy)
	}

	var nodes []nodeKeepalived
	seen := map[string]bool{}
	for _, nf := range opts.Keepalived {
		if nf.Node == "" {
			return nil, fmt.Errorf("--keepalived %s: name the node, as --keepalived lb-0=%s", nf.Path, nf.Path)
		}
		if seen[nf.Node] {
			return nil, fmt.Errorf("--keepalived: node %q is given twice", nf.Node)
		}
		seen[nf.Node] = true
		data, err := read(nf.Path)
		if err != nil {
			return nil, err
		}
		cfg, err := keepalived.Parse(nf.Path, data, keepalived.Options{ReadFile: read, Glob: filepath.Glob})
		if err != nil {
			appendErr(&errs, err)
			continue
		}
		nodes = append(nodes, nodeKeepalived{node: nf.Node, cfg: cfg})
		out.edge.sources = append(out.edge.sources, fmt.Sprintf("%s (%s)", nf.Path, nf.Node))
	}
	if len(nodes) > 0 {
		importKeepalived(nodes, out, rep, &errs, opts.SecretPassword)
	}

	var vms []*tfVM
	for _, p := range opts.Terraform {
		r, names, err := readTerraform(p, read)
		if err != nil {
			appendErr(&errs, err)
			continue
		}
		out.edge.sources = append(out.edge.sources, names...)
		for _, o := range r.Other {
			switch o.Kind {
			case "terraform", "provider":
				rep.Add(o.Pos, report.Note, "", o.What, "Terraform's own settings: gitedge's node config names the Proxmox API (proxmox: url, tokenID, tokenSecretFile)")
			case "output":
				rep.Add(o.Pos, report.Note, "", o.What, "a Terraform output: gitedge inventory prints the VMs and their addresses")
			case "variable", "locals":
			default:
				rep.Add(o.Pos, report.Note, "", o.What, "not a %s resource: no gitedge counterpart", terraform.ResourceType)
			}
		}
		for _, v := range r.VMs {
			vms = append(vms, vmFromTerraform(v, v.File, rep))
		}
	}
	if len(vms) > 0 {
		out.vms = mergeVMs(vms, rep, &errs)
	}
	// On an error the report so far is returned with it: an error may
	// point at an item of the report ("each server line is in the
	// report").
	if err := errs.Err(); err != nil {
		return res, err
	}

	nodeAddresses(out, vms, opts.Addresses, rep, &errs)
	if err := errs.Err(); err != nil {
		return res, err
	}
	if len(out.vms) > 0 {
		switch {
		case len(out.edge.failover) > 0:
			out.edge.leader = "vrrp:" + out.edge.failover[0].name
		case len(out.edge.nodes) == 1:
			out.edge.leader = out.edge.nodes[0].name
		}
		for _, v := range out.vms {
			if v.vmid != nil {
				rep.Add(v.pos, report.Note, "VirtualMachine "+v.name, "ownership",
					"a VM Terraform created has no %q tag: gitedge leaves it alone until you tag it (qm set %d --tags gitedge) after removing it from Terraform's state (terraform state rm)", "gitedge", *v.vmid)
			}
		}
	}

	files, err := out.files()
	if err != nil {
		return nil, err
	}
	res.Files = files
	d, err := reconcile.Load(mapFS(files))
	if err != nil {
		return res, &InvalidError{err}
	}
	res.Summary = fmt.Sprintf("%d node(s), %d listener(s), %d route(s), %d backend(s), %d VRRP instance(s), %d VM(s)",
		len(d.Edge.Nodes), len(d.Dataplane.Listeners), len(d.Dataplane.Routes), len(d.Dataplane.Backends),
		len(d.Edge.Failover), len(d.Infra.VMs))
	if opts.Strict {
		var bad []report.Item
		for _, it := range res.Report.Sorted() {
			if it.Severity != report.Note {
				bad = append(bad, it)
			}
		}
		if len(bad) > 0 {
			return res, &StrictError{Items: bad}
		}
	}
	return res, nil
}

func appendErr(errs *report.Errors, err error) {
	var es report.Errors
	var e *report.Error
	switch {
	case errors.As(err, &es):
		*errs = append(*errs, es...)
	case errors.As(err, &e):
		*errs = append(*errs, e)
	default:
		errs.Add(report.Pos{}, "%v", err)
	}
}

func mapFS(files map[string][]byte) fs.FS {
	m := fstest.MapFS{}
	for n, d := range files {
		m[n] = &fstest.MapFile{Data: d, Mode: 0o644}
	}
	return m
}

// readTerraform reads one --terraform argument: a directory (its .tf
// files, tfvars and terraform.tfstate), a .tf file, or JSON state.
func readTerraform(p string, read func(string) ([]byte, error)) (*terraform.Result, []string, error) {
	if st, err := os.Stat(p); err == nil && st.IsDir() {
		names, err := terraform.ConfigFiles(os.DirFS(p), ".")
		if err != nil {
			return nil, nil, err
		}
		var files []terraform.File
		var shown []string
		for _, n := range names {
			full := filepath.Join(p, n)
			data, err := os.ReadFile(full)
			if err != nil {
				return nil, nil, err
			}
			files = append(files, terraform.File{Name: full, Data: data})
			shown = append(shown, full)
		}
		res := &terraform.Result{}
		if len(files) > 0 {
			res, err = terraform.ReadConfig(files)
			if err != nil {
				return nil, nil, err
			}
		}
		statePath := filepath.Join(p, "terraform.tfstate")
		if data, err := os.ReadFile(statePath); err == nil {
			sr, err := terraform.ReadState(statePath, data)
			if err != nil {
				return nil, nil, err
			}
			res.VMs = append(res.VMs, sr.VMs...)
			res.Other = append(res.Other, sr.Other...)
			shown = append(shown, statePath)
		}
		if len(shown) == 0 {
			return nil, nil, fmt.Errorf("--terraform %s: no .tf file and no terraform.tfstate in the directory", p)
		}
		return res, shown, nil
	}
	data, err := read(p)
	if err != nil {
		return nil, nil, err
	}
	if terraform.IsState(data) {
		r, err := terraform.ReadState(p, data)
		return r, []string{p}, err
	}
	if strings.HasSuffix(p, ".tfvars") {
		return nil, nil, fmt.Errorf("--terraform %s: give the directory (or the .tf files) the variables belong to", p)
	}
	r, err := terraform.ReadConfig([]terraform.File{{Name: p, Data: data}})
	return r, []string{p}, err
}

// nodeAddresses fills the nodes keepalived did not give an address
// (unicast_src_ip) from --address, else from the Terraform VM of the same
// name.
func nodeAddresses(out *repo, vms []*tfVM, given []NodeAddress, rep *report.List, errs *report.Errors) {
	var names []string
	for _, n := range out.edge.nodes {
		names = append(names, n.name)
	}
	for _, g := range given {
		i := slices.IndexFunc(out.edge.nodes, func(n *node) bool { return n.name == g.Node })
		switch {
		case i < 0 && len(names) == 0:
			errs.Add(report.Pos{}, "--address %s=%s: there are no nodes: nodes come from --keepalived NODE=FILE", g.Node, g.Addr)
		case i < 0:
			errs.Add(report.Pos{}, "--address %s=%s: no node %s; the nodes are those of --keepalived: %s", g.Node, g.Addr, g.Node, strings.Join(names, ", "))
		case out.edge.nodes[i].address == "":
			n := out.edge.nodes[i]
			n.address, n.from = g.Addr.String(), fmt.Sprintf("--address %s=%s", g.Node, g.Addr)
		case out.edge.nodes[i].address != g.Addr.String():
			n := out.edge.nodes[i]
			errs.Add(report.Pos{}, "--address %s=%s: keepalived gives node %s the address %s (%s); drop the flag or change unicast_src_ip", g.Node, g.Addr, n.name, n.address, n.from)
		}
	}
	for _, n := range out.edge.nodes {
		if n.address != "" {
			continue
		}
		i := slices.IndexFunc(vms, func(v *tfVM) bool { return v.out.name == n.name && v.out.cloudInit != nil && v.out.cloudInit.ip != "" })
		if i >= 0 {
			if p, err := netip.ParsePrefix(vms[i].out.cloudInit.ip); err == nil {
				n.address = p.Addr().String()
				at := vms[i].fields["ipconfig0"]
				n.from = fmt.Sprintf("ipconfig0 of %s, %s", vms[i].src.Address, at)
				rep.Add(at, report.Note, "node "+n.name, "address "+n.address, "taken from the VM of the same name (keepalived has no unicast_src_ip)")
				continue
			}
		}
		errs.Add(report.Pos{}, "node %s: no address: keepalived has no unicast_src_ip for it and no Terraform VM named %s has a static ipconfig0; spec.nodes needs every node's address: give it with --address %s=ADDRESS (or add unicast_src_ip, or pass the Terraform configuration with --terraform)", n.name, n.name, n.name)
	}
}
