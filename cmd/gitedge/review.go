package main

// The commands a pull request is reviewed with: validate and plan.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
)

func runValidate(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "validate", "[DIR] [--node-config FILE]")
	output := fs.String("output", "text", "text or json")
	nodeConfig := fs.String("node-config", "", "also check DIR against this node: its name is in spec.nodes, no listener takes its admin or webhook port")
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: gitedge validate [DIR] [--node-config FILE]\n")
		fs.PrintDefaults()
		fmt.Fprintf(env.stderr, "\nLimits: a file at most %d MiB and %d documents; a repository at most %d files, %d MiB and %d routes; a route at most %d hosts.\n"+
			"Symbolic links are followed inside DIR; one that leaves DIR, is absolute or dangles is an error.\n",
			reconcile.MaxFileBytes>>20, reconcile.MaxDocumentsPerFile, reconcile.MaxFiles, reconcile.MaxTotalBytes>>20, reconcile.MaxRoutes, reconcile.MaxHostsPerRoute)
	}
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fs.Usage()
		return 2
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	var opts reconcile.LoadOptions
	if *nodeConfig != "" {
		nc, err := nodeconfig.Load(*nodeConfig)
		if err != nil {
			return fs.fail(err)
		}
		opts.Local = nc.Local()
	}
	d, _, err := reconcile.LoadDirWith(dir, opts)
	switch *output {
	case "json":
		type jsonErr struct {
			File  string `json:"file,omitempty"`
			Line  int    `json:"line,omitempty"`
			Doc   string `json:"document,omitempty"`
			Field string `json:"field,omitempty"`
			Msg   string `json:"message"`
		}
		out := struct {
			Valid  bool      `json:"valid"`
			Errors []jsonErr `json:"errors"`
		}{Valid: err == nil, Errors: []jsonErr{}}
		if errs, ok := errors.AsType[reconcile.Errors](err); ok {
			for _, e := range errs {
				out.Errors = append(out.Errors, jsonErr{e.File, e.Line, e.Doc, e.Field, e.Msg})
			}
		} else if err != nil {
			out.Errors = append(out.Errors, jsonErr{Msg: err.Error()})
		}
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(out)
	case "text":
		if errs, ok := errors.AsType[reconcile.Errors](err); ok {
			for _, e := range errs {
				fmt.Fprintln(env.stderr, e)
			}
			fmt.Fprintf(env.stderr, "%s: %d error(s); nothing would be applied\n", dir, len(errs))
		} else if err != nil {
			fmt.Fprintf(env.stderr, "gitedge validate: %v\n", err)
		} else {
			fmt.Fprintf(env.stdout, "%s: valid: %s\n", dir, summary(d))
		}
	default:
		fmt.Fprintf(env.stderr, "gitedge validate: --output %q: expected text or json\n", *output)
		return 2
	}
	if err != nil {
		return 1
	}
	return 0
}

func summary(d *reconcile.Desired) string {
	s := fmt.Sprintf("%d node(s), %d listener(s), %d route(s), %d backend(s), %d VRRP instance(s), %d VM(s)",
		len(d.Edge.Nodes), len(d.Dataplane.Listeners), len(d.Dataplane.Routes), len(d.Dataplane.Backends),
		len(d.Edge.Failover), len(d.Infra.VMs))
	if b := d.BGP; b.ASN != 0 {
		s += fmt.Sprintf(", BGP: %d peer(s), %d prefix(es)", len(b.Peers), len(b.Announce))
	}
	return s
}

func runPlan(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "plan", "[DIR] --base DIR|REF")
	base := fs.String("base", "", "what DIR is compared with: a directory, or a git revision (branch, tag, commit) of the repository holding DIR; empty = nothing (everything is added)")
	output := fs.String("output", "text", "text or json")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 1 || (*output != "text" && *output != "json") {
		fs.Usage()
		return 2
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	head, err := reconcile.LoadDir(dir)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge plan: %s is not valid:\n%v\n", dir, err)
		return 1
	}
	var old *reconcile.Desired
	if *base != "" {
		old, err = loadBase(dir, *base)
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge plan: base %s: %v\n", *base, err)
			return 1
		}
	}
	p := reconcile.Diff(old, head)
	if *output == "json" {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		if p.Changes == nil {
			p.Changes = []reconcile.ItemChange{}
		}
		_ = enc.Encode(p)
		return 0
	}
	_ = p.WriteText(env.stdout)
	return 0
}

// loadBase loads the base of a plan: a directory when one exists at that
// path, otherwise a git revision of the repository that holds dir.
func loadBase(dir, base string) (*reconcile.Desired, error) {
	if st, err := os.Stat(base); err == nil && st.IsDir() {
		return reconcile.LoadDir(base)
	}
	files, _, err := gitsource.TreeAt(dir, base)
	if err != nil {
		return nil, fmt.Errorf("not a directory, and not a git revision: %w", err)
	}
	return reconcile.Load(files)
}
