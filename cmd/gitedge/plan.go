package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/reconcile"
)

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
