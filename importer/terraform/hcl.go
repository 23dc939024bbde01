package terraform

import (
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/gitedge/gitedge/importer/report"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// file is one parsed .tf or .tfvars file.
type file struct {
	name string
	src  []byte
	body *hclsyntax.Body
}

// File is one input file: its name (as reported) and contents.
type File struct {
	Name string
	Data []byte
}

// ReadConfig reads the .tf files given (all of one module), with the
// .tfvars files among them setting variables (in the order given, as
// terraform.tfvars then *.auto.tfvars). Syntax errors are returned with
// file and line; expressions that do not resolve are in VM.Unresolved.
func ReadConfig(files []File) (*Result, error) {
	var errs report.Errors
	var tf, vars []*file
	for _, in := range files {
		n, src := in.Name, in.Data
		f, diags := hclsyntax.ParseConfig(src, n, hcl.InitialPos)
		if diags.HasErrors() {
			addDiags(&errs, diags)
			continue
		}
		ff := &file{name: n, src: src, body: f.Body.(*hclsyntax.Body)}
		if strings.HasSuffix(n, ".tfvars") {
			vars = append(vars, ff)
		} else {
			tf = append(tf, ff)
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	r := &reader{res: &Result{}, vars: map[string]cty.Value{}, locals: map[string]cty.Value{}, errs: &errs}
	r.variables(tf, vars)
	r.evalLocals(tf)
	for _, f := range tf {
		for _, b := range f.body.Blocks {
			r.topBlock(f, b)
		}
	}
	return r.res, errs.Err()
}

type reader struct {
	res    *Result
	vars   map[string]cty.Value
	locals map[string]cty.Value
	// unknownVars are variables with neither a default nor a tfvars value.
	unknownVars map[string]bool
	errs        *report.Errors
}

func addDiags(errs *report.Errors, diags hcl.Diagnostics) {
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		p := report.Pos{}
		if d.Subject != nil {
			p = report.Pos{File: d.Subject.Filename, Line: d.Subject.Start.Line}
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		errs.Add(p, "%s", msg)
	}
}

func posOf(r hcl.Range) report.Pos { return report.Pos{File: r.Filename, Line: r.Start.Line} }

// variables resolves every variable block's default, then tfvars values.
func (r *reader) variables(tf, vars []*file) {
	r.unknownVars = map[string]bool{}
	for _, f := range tf {
		for _, b := range f.body.Blocks {
			if b.Type != "variable" || len(b.Labels) != 1 {
				continue
			}
			name := b.Labels[0]
			if a, ok := b.Body.Attributes["default"]; ok {
				v, diags := a.Expr.Value(nil)
				if diags.HasErrors() {
					r.unknownVars[name] = true
					continue
				}
				r.vars[name] = v
			} else {
				r.unknownVars[name] = true
			}
		}
	}
	for _, f := range vars {
		names := slices.Sorted(maps.Keys(f.body.Attributes))
		for _, n := range names {
			a := f.body.Attributes[n]
			v, diags := a.Expr.Value(nil)
			if diags.HasErrors() {
				addDiags(r.errs, diags)
				continue
			}
			r.vars[n] = v
			delete(r.unknownVars, n)
		}
	}
}

// evalLocals evaluates locals blocks, repeating while new ones resolve
// (locals may refer to each other in any order).
func (r *reader) evalLocals(tf []*file) {
	type pending struct{ a *hclsyntax.Attribute }
	var todo []pending
	for _, f := range tf {
		for _, b := range f.body.Blocks {
			if b.Type != "locals" {
				continue
			}
			names := slices.Sorted(maps.Keys(b.Body.Attributes))
			for _, n := range names {
				todo = append(todo, pending{b.Body.Attributes[n]})
			}
		}
	}
	for progress := true; progress && len(todo) > 0; {
		progress = false
		var next []pending
		for _, p := range todo {
			v, diags := p.a.Expr.Value(r.ctx(nil))
			if diags.HasErrors() || !v.IsWhollyKnown() {
				next = append(next, p)
				continue
			}
			r.locals[p.a.Name] = v
			progress = true
		}
		todo = next
	}
}

// functions are the pure Terraform functions the reader evaluates.
var functions = map[string]function.Function{
	"join": stdlib.JoinFunc, "format": stdlib.FormatFunc, "formatlist": stdlib.FormatListFunc,
	"lower": stdlib.LowerFunc, "upper": stdlib.UpperFunc, "element": stdlib.ElementFunc,
	"length": lengthFunc, "concat": stdlib.ConcatFunc, "split": stdlib.SplitFunc,
	"replace": stdlib.ReplaceFunc, "trimspace": stdlib.TrimSpaceFunc, "coalesce": stdlib.CoalesceFunc,
	"min": stdlib.MinFunc, "max": stdlib.MaxFunc, "lookup": stdlib.LookupFunc, "merge": stdlib.MergeFunc,
	"range": stdlib.RangeFunc, "substr": stdlib.SubstrFunc, "chomp": stdlib.ChompFunc,
	"tostring": stdlib.MakeToFunc(cty.String), "tonumber": stdlib.MakeToFunc(cty.Number),
	"tobool": stdlib.MakeToFunc(cty.Bool), "tolist": stdlib.MakeToFunc(cty.List(cty.DynamicPseudoType)),
	"toset": stdlib.MakeToFunc(cty.Set(cty.DynamicPseudoType)),
}

// lengthFunc is Terraform's length: of a string, a collection, a tuple or
// an object (cty's own refuses objects, which HCL map literals are).
var lengthFunc = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "value", Type: cty.DynamicPseudoType, AllowDynamicType: true}},
	Type:   function.StaticReturnType(cty.Number),
	Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
		v := args[0]
		switch {
		case !v.IsKnown():
			return cty.UnknownVal(cty.Number), nil
		case v.IsNull():
			return cty.NilVal, fmt.Errorf("length of null")
		case v.Type() == cty.String:
			return stdlib.Strlen(v)
		case v.Type().IsObjectType():
			return cty.NumberIntVal(int64(len(v.Type().AttributeTypes()))), nil
		case v.CanIterateElements():
			return v.Length(), nil
		}
		return cty.NilVal, fmt.Errorf("length of a %s", v.Type().FriendlyName())
	},
})

// ctx builds the evaluation context: var, local, and the instance's
// count or each values.
func (r *reader) ctx(inst map[string]cty.Value) *hcl.EvalContext {
	vars := map[string]cty.Value{
		"var":   cty.ObjectVal(r.vars),
		"local": cty.ObjectVal(r.locals),
	}
	maps.Copy(vars, inst)
	return &hcl.EvalContext{Variables: vars, Functions: functions}
}

func (r *reader) topBlock(f *file, b *hclsyntax.Block) {
	pos := posOf(b.DefRange())
	label := strings.Join(append([]string{b.Type}, quoteAll(b.Labels)...), " ")
	switch b.Type {
	case "variable", "locals":
		return
	case "resource":
		if len(b.Labels) == 2 && b.Labels[0] == ResourceType {
			r.resource(f, b)
			return
		}
	}
	r.res.Other = append(r.res.Other, Other{Pos: pos, Kind: b.Type, What: label})
}

func quoteAll(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strconv.Quote(s)
	}
	return out
}

// resource expands one proxmox_vm_qemu block into its instances.
func (r *reader) resource(f *file, b *hclsyntax.Block) {
	base := ResourceType + "." + b.Labels[1]
	pos := posOf(b.DefRange())
	type instance struct {
		addr string
		ctx  map[string]cty.Value
	}
	insts := []instance{{addr: base}}
	if a, ok := b.Body.Attributes["count"]; ok {
		v, diags := a.Expr.Value(r.ctx(nil))
		n, err := countOf(v, diags)
		if err != nil {
			r.res.VMs = append(r.res.VMs, &VM{Block: Block{Pos: pos, Attrs: map[string]Value{}, Blocks: map[string][]*Block{}}, Address: base, Source: FromConfig,
				Unresolved: []Unresolved{{Pos: posOf(a.SrcRange), Attr: "count", Expr: exprText(f, a.Expr), Why: err.Error()}}})
			return
		}
		insts = nil
		for i := range n {
			insts = append(insts, instance{fmt.Sprintf("%s[%d]", base, i), map[string]cty.Value{"count": cty.ObjectVal(map[string]cty.Value{"index": cty.NumberIntVal(int64(i))})}})
		}
	} else if a, ok := b.Body.Attributes["for_each"]; ok {
		v, diags := a.Expr.Value(r.ctx(nil))
		if diags.HasErrors() || !v.IsWhollyKnown() || v.IsNull() || !(v.Type().IsMapType() || v.Type().IsObjectType() || v.Type().IsSetType()) {
			why := "for_each needs a map or a set of strings the reader can resolve"
			if diags.HasErrors() {
				why = diagText(diags)
			}
			r.res.VMs = append(r.res.VMs, &VM{Block: Block{Pos: pos, Attrs: map[string]Value{}, Blocks: map[string][]*Block{}}, Address: base, Source: FromConfig,
				Unresolved: []Unresolved{{Pos: posOf(a.SrcRange), Attr: "for_each", Expr: exprText(f, a.Expr), Why: why}}})
			return
		}
		insts = nil
		type kv struct {
			k string
			v cty.Value
		}
		var elems []kv
		for it := v.ElementIterator(); it.Next(); {
			k, val := it.Element()
			if v.Type().IsSetType() {
				k = val
			}
			if k.Type() != cty.String {
				continue
			}
			elems = append(elems, kv{k.AsString(), val})
		}
		sort.Slice(elems, func(i, j int) bool { return elems[i].k < elems[j].k })
		for _, e := range elems {
			insts = append(insts, instance{fmt.Sprintf("%s[%q]", base, e.k), map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": cty.StringVal(e.k), "value": e.v})}})
		}
	}
	for _, in := range insts {
		vm := &VM{Address: in.addr, Source: FromConfig}
		vm.Block = *r.body(f, b.Body, pos, "", r.ctx(in.ctx), &vm.Unresolved)
		r.res.VMs = append(r.res.VMs, vm)
	}
}

func countOf(v cty.Value, diags hcl.Diagnostics) (int, error) {
	if diags.HasErrors() {
		return 0, fmt.Errorf("%s", diagText(diags))
	}
	if !v.IsWhollyKnown() || v.IsNull() {
		return 0, fmt.Errorf("count is not known")
	}
	if v.Type() == cty.String {
		n, err := strconv.Atoi(v.AsString())
		if err != nil {
			return 0, fmt.Errorf("count %q is not a number", v.AsString())
		}
		return n, nil
	}
	if v.Type() != cty.Number {
		return 0, fmt.Errorf("count must be a number")
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if acc != 0 || n < 0 || n > 10000 {
		return 0, fmt.Errorf("count must be a whole number in 0..10000")
	}
	return int(n), nil
}

func diagText(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			s := d.Summary
			if d.Detail != "" {
				s += ": " + d.Detail
			}
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

func exprText(f *file, e hclsyntax.Expression) string {
	rg := e.Range()
	if rg.Start.Byte >= 0 && rg.End.Byte <= len(f.src) && rg.Start.Byte <= rg.End.Byte {
		return string(f.src[rg.Start.Byte:rg.End.Byte])
	}
	return ""
}

// body evaluates a block body: its attributes, and its nested blocks by
// type. Attributes of the resource itself that drive Terraform (count,
// for_each, depends_on, provider) are skipped.
func (r *reader) body(f *file, body *hclsyntax.Body, pos report.Pos, prefix string, ctx *hcl.EvalContext, unres *[]Unresolved) *Block {
	out := &Block{Pos: pos, Attrs: map[string]Value{}, Blocks: map[string][]*Block{}}
	names := slices.Sorted(maps.Keys(body.Attributes))
	for _, n := range names {
		a := body.Attributes[n]
		if prefix == "" && (n == "count" || n == "for_each" || n == "depends_on" || n == "provider") {
			continue
		}
		if prefix == "lifecycle." && n == "ignore_changes" {
			out.Attrs[n] = Value{posOf(a.SrcRange), traversalNames(a.Expr)}
			continue
		}
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() || !v.IsWhollyKnown() {
			why := diagText(diags)
			if why == "" {
				why = "the value is only known after apply"
			}
			why = r.explain(a.Expr, why)
			*unres = append(*unres, Unresolved{Pos: posOf(a.SrcRange), Attr: prefix + n, Expr: exprText(f, a.Expr), Why: why})
			continue
		}
		out.Attrs[n] = Value{posOf(a.SrcRange), goValue(v)}
	}
	for _, b := range body.Blocks {
		bp := posOf(b.DefRange())
		if b.Type == "dynamic" {
			*unres = append(*unres, Unresolved{Pos: bp, Attr: prefix + "dynamic", Expr: "dynamic " + strings.Join(quoteAll(b.Labels), " "), Why: "dynamic blocks are not expanded: write the blocks out"})
			continue
		}
		nb := r.body(f, b.Body, bp, prefix+b.Type+".", ctx, unres)
		out.Blocks[b.Type] = append(out.Blocks[b.Type], nb)
	}
	return out
}

// explain adds which variable made an expression unresolvable.
func (r *reader) explain(e hclsyntax.Expression, why string) string {
	for _, t := range e.Variables() {
		if t.RootName() != "var" || len(t) < 2 {
			continue
		}
		if attr, ok := t[1].(hcl.TraverseAttr); ok && r.unknownVars[attr.Name] {
			return fmt.Sprintf("variable %q has no default and no tfvars value", attr.Name)
		}
	}
	return why
}

// traversalNames reads ignore_changes = [network, disk] (or all).
func traversalNames(e hclsyntax.Expression) any {
	if k := hcl.ExprAsKeyword(e); k != "" {
		return k
	}
	exprs, diags := hcl.ExprList(e)
	if diags.HasErrors() {
		return nil
	}
	var out []any
	for _, x := range exprs {
		t, diags := hcl.RelTraversalForExpr(x)
		if diags.HasErrors() || len(t) == 0 {
			continue
		}
		if root, ok := t[0].(hcl.TraverseAttr); ok {
			out = append(out, root.Name)
		} else if root, ok := t[0].(hcl.TraverseRoot); ok {
			out = append(out, root.Name)
		}
	}
	return out
}

// goValue turns a known cty value into plain Go values.
func goValue(v cty.Value) any {
	if v.IsNull() {
		return nil
	}
	t := v.Type()
	switch {
	case t == cty.String:
		return v.AsString()
	case t == cty.Bool:
		return v.True()
	case t == cty.Number:
		f, _ := v.AsBigFloat().Float64()
		return f
	case t.IsListType() || t.IsSetType() || t.IsTupleType():
		var out []any
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			out = append(out, goValue(e))
		}
		return out
	case t.IsMapType() || t.IsObjectType():
		out := map[string]any{}
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			out[k.AsString()] = goValue(e)
		}
		return out
	}
	return nil
}

// ConfigFiles lists the .tf files of a directory, then terraform.tfvars,
// then *.auto.tfvars, each group sorted: the order Terraform reads them.
func ConfigFiles(fsys fs.FS, dir string) ([]string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var tf, auto []string
	var tfvars string
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		n := e.Name()
		switch {
		case strings.HasSuffix(n, ".tf"):
			tf = append(tf, path.Join(dir, n))
		case n == "terraform.tfvars":
			tfvars = path.Join(dir, n)
		case strings.HasSuffix(n, ".auto.tfvars"):
			auto = append(auto, path.Join(dir, n))
		}
	}
	sort.Strings(tf)
	sort.Strings(auto)
	if tfvars != "" {
		tf = append(tf, tfvars)
	}
	return append(tf, auto...), nil
}
