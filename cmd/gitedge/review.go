package main

// The commands a pull request is reviewed with: validate and plan.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
)

func runValidate(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "validate", "[DIR] [--node-config FILE] [--output text|json]")
	fs.positional(0, 1, "DIR")
	output := fs.String("output", "text", "text or json")
	nodeConfig := fs.String("node-config", "", "also check DIR against this node: its name is in spec.nodes, no listener takes its admin or webhook port, the secrets DIR names resolve with its secrets section")
	fs.epilog = fmt.Sprintf("Limits: a file at most %d MiB and %d documents; a repository at most %d files, %d MiB and %d routes; a route at most %d hosts.\n"+
		"Symbolic links are followed inside DIR; one that leaves DIR, is absolute or dangles is an error.",
		reconcile.MaxFileBytes>>20, reconcile.MaxDocumentsPerFile, reconcile.MaxFiles, reconcile.MaxTotalBytes>>20, reconcile.MaxRoutes, reconcile.MaxHostsPerRoute)
	dir, code, ok := fs.parseDir(args)
	if !ok {
		return code
	}
	if *output != "text" && *output != "json" {
		return fs.usageError("--output %q: expected text or json", *output)
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
		type jsonSecret struct {
			Doc      string `json:"document"`
			Field    string `json:"field"`
			From     string `json:"from"`
			Resolved bool   `json:"resolved"`
		}
		out := struct {
			Valid    bool         `json:"valid"`
			Errors   []jsonErr    `json:"errors"`
			Warnings []jsonErr    `json:"warnings"`
			Secrets  []jsonSecret `json:"secrets"`
		}{Valid: err == nil, Errors: []jsonErr{}, Warnings: []jsonErr{}, Secrets: []jsonSecret{}}
		if errs, ok := errors.AsType[reconcile.Errors](err); ok {
			for _, e := range errs {
				out.Errors = append(out.Errors, jsonErr{e.File, e.Line, e.Doc, e.Field, e.Msg})
			}
		} else if err != nil {
			out.Errors = append(out.Errors, jsonErr{Msg: err.Error()})
		}
		if d != nil {
			for _, e := range d.Warnings {
				out.Warnings = append(out.Warnings, jsonErr{e.File, e.Line, e.Doc, e.Field, e.Msg})
			}
			for _, u := range d.Secrets {
				out.Secrets = append(out.Secrets, jsonSecret{u.Doc, u.Field, u.From, u.Resolved})
			}
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
			for _, w := range d.Warnings {
				fmt.Fprintf(env.stderr, "warning: %v\n", w)
			}
			fmt.Fprintf(env.stdout, "%s: valid: %s\n", dir, summary(d))
			writeSecrets(env, d, *nodeConfig)
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

// writeSecrets says where the repository's secrets come from (never
// their values), and whether this run resolved them.
func writeSecrets(env *cliEnv, d *reconcile.Desired, nodeConfig string) {
	if len(d.Secrets) == 0 {
		return
	}
	if un := d.Unresolved(); len(un) > 0 {
		fmt.Fprintf(env.stdout, "%d secret reference(s), resolved on each node (validate --node-config FILE resolves them as that node does):\n", len(un))
		for _, u := range un {
			fmt.Fprintf(env.stdout, "  %s\n", u)
		}
		return
	}
	if nodeConfig != "" {
		fmt.Fprintf(env.stdout, "%d secret(s) resolved with node config %s:\n", len(d.Secrets), nodeConfig)
		for _, u := range d.Secrets {
			fmt.Fprintf(env.stdout, "  %s\n", u)
		}
	}
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
	fs := newFlags(env, "plan", "[DIR] [--base DIR|REF] [--output text|json|markdown] [--detailed-exitcode]")
	fs.positional(0, 1, "DIR")
	base := fs.String("base", "", "what DIR is compared with: a directory, or a git revision (branch, tag, commit) of the repository holding DIR; empty = nothing (everything is added)")
	output := fs.String("output", "text", "text, json or markdown (a pull-request comment)")
	detailed := fs.Bool("detailed-exitcode", false, "exit 0 when nothing changes, 1 on error, 2 when there are changes (as terraform plan -detailed-exitcode)")
	dir, code, ok := fs.parseDir(args)
	// With --detailed-exitcode 2 means "changes": a usage error is 1 then,
	// as terraform plan answers, so CI never reads a typo as a plan.
	usage := func(code int) int {
		if code == 2 && slices.ContainsFunc(args, func(a string) bool {
			return strings.TrimLeft(a, "-") == "detailed-exitcode" || strings.HasPrefix(strings.TrimLeft(a, "-"), "detailed-exitcode=")
		}) {
			return 1
		}
		return code
	}
	if !ok {
		return usage(code)
	}
	if *output != "text" && *output != "json" && *output != "markdown" {
		return usage(fs.usageError("--output %q: expected text, json or markdown", *output))
	}
	review := reconcile.Review{Base: reconcile.Ref{Name: *base}, Head: reconcile.Ref{Name: dir}}
	if _, h, err := gitsource.TreeAt(dir, "HEAD"); err == nil {
		review.Head.Commit = h.String() // the working tree is planned; HEAD says where it stands
	}
	head, err := reconcile.LoadDir(dir)
	if err != nil {
		if *output == "text" {
			fmt.Fprintf(env.stderr, "gitedge plan: %s is not valid:\n%v\n", dir, err)
			return 1
		}
		review.Errors, review.Changes, review.Consequences = []string{}, []reconcile.ItemChange{}, []reconcile.Consequence{}
		if *base != "" {
			// Which commit the reviewer compared with, as a valid head's
			// review says; the base's own state does not matter here.
			_, review.Base.Commit, _ = loadBase(dir, *base)
		}
		if errs, ok := errors.AsType[reconcile.Errors](err); ok {
			for _, e := range errs {
				review.Errors = append(review.Errors, e.Error())
			}
		} else {
			review.Errors = append(review.Errors, err.Error())
		}
		writeReview(env, *output, review)
		return 1
	}
	var old *reconcile.Desired
	if *base != "" {
		old, review.Base.Commit, err = loadBase(dir, *base)
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge plan: base %s: %v\n", *base, err)
			return 1
		}
	}
	r := reconcile.NewReview(old, head)
	r.Base, r.Head = review.Base, review.Head
	writeReview(env, *output, r)
	if *detailed && len(r.Changes) > 0 {
		return 2
	}
	return 0
}

// writeReview prints a review in the chosen output.
func writeReview(env *cliEnv, output string, r reconcile.Review) {
	switch output {
	case "json":
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(r)
	case "markdown":
		_ = r.WriteMarkdown(env.stdout)
	default:
		_ = r.Plan().WriteText(env.stdout)
		if len(r.Changes) > 0 && len(r.Consequences) > 0 {
			fmt.Fprintln(env.stdout, "\nConsequences:")
			for _, c := range r.Consequences {
				fmt.Fprintf(env.stdout, "  - %s\n", c.Message)
			}
		}
	}
}

// loadBase loads the base of a plan: a directory when one exists at that
// path, otherwise a git revision of the repository that holds dir (and
// then its commit).
func loadBase(dir, base string) (*reconcile.Desired, string, error) {
	if st, err := os.Stat(base); err == nil && st.IsDir() {
		d, err := reconcile.LoadDir(base)
		return d, "", err
	}
	files, h, err := gitsource.TreeAt(dir, base)
	if errors.Is(err, gitsource.ErrNoDirectory) {
		return nil, h.String(), nil // the base has no routes yet: everything is added
	}
	if err != nil {
		return nil, "", fmt.Errorf("not a directory, and not a git revision: %w", err)
	}
	d, err := reconcile.Load(files)
	return d, h.String(), err
}
