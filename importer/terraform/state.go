package terraform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/gitedge/gitedge/importer/report"
)

// IsState reports whether data is Terraform JSON (a .tfstate or the
// output of terraform show -json) rather than HCL, which never starts
// with '{'.
func IsState(data []byte) bool {
	t := bytes.TrimSpace(data)
	return len(t) > 0 && t[0] == '{'
}

// computed are attributes the provider fills in: read back, never
// declared, so they are not reported.
var computed = map[string]bool{
	"id": true, "default_ipv4_address": true, "default_ipv6_address": true, "ssh_host": true,
	"ssh_port": true, "reboot_required": true, "unused_disk": true, "linked_vmid": true,
	"ssh_forward_ip": true, "ssh_user": true, "ssh_private_key": true, "guest_agent_ready_timeout": true,
	"timeouts": true, "smbios": true, "current_node": true, "bootdisk": true,
}

// computedNested are attributes of nested blocks the provider fills in.
var computedNested = map[string]bool{
	"file": true, "volume": true, "storage_type": true, "linked_disk_id": true, "passthrough": true,
}

// ReadState reads "terraform show -json" output or a .tfstate (version 4).
func ReadState(name string, data []byte) (*Result, error) {
	var probe struct {
		FormatVersion string          `json:"format_version"`
		Values        json.RawMessage `json:"values"`
		Version       *int            `json:"version"`
		Resources     json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, &report.Error{Pos: report.Pos{File: name, Line: lineOfOffset(data, jsonErrOffset(err))}, Msg: fmt.Sprintf("not valid JSON: %v", err)}
	}
	lines := objectLines(data)
	res := &Result{}
	switch {
	case probe.FormatVersion != "" && probe.Values != nil:
		var show struct {
			Values struct {
				RootModule showModule `json:"root_module"`
			} `json:"values"`
		}
		if err := decode(data, &show); err != nil {
			return nil, &report.Error{Pos: report.Pos{File: name}, Msg: fmt.Sprintf("terraform show -json: %v", err)}
		}
		showResources(name, &show.Values.RootModule, "/values/root_module", lines, res)
	case probe.Version != nil && probe.Resources != nil:
		if *probe.Version != 4 {
			return nil, &report.Error{Pos: report.Pos{File: name, Line: 1}, Msg: fmt.Sprintf("state version %d: only version 4 (Terraform 0.12 and later) is read", *probe.Version)}
		}
		var st struct {
			Resources []struct {
				Module    string `json:"module"`
				Mode      string `json:"mode"`
				Type      string `json:"type"`
				Name      string `json:"name"`
				Instances []struct {
					IndexKey   any            `json:"index_key"`
					Attributes map[string]any `json:"attributes"`
				} `json:"instances"`
			} `json:"resources"`
		}
		if err := decode(data, &st); err != nil {
			return nil, &report.Error{Pos: report.Pos{File: name}, Msg: fmt.Sprintf(".tfstate: %v", err)}
		}
		for i, r := range st.Resources {
			base := r.Type + "." + r.Name
			if r.Mode == "data" {
				base = "data." + base
			}
			if r.Module != "" {
				base = r.Module + "." + base
			}
			rpath := fmt.Sprintf("/resources/%d", i)
			if r.Mode != "managed" || r.Type != ResourceType {
				res.Other = append(res.Other, Other{Pos: report.Pos{File: name, Line: lines[rpath]}, Kind: kindOf(r.Mode), What: base})
				continue
			}
			for j, in := range r.Instances {
				addr := base
				switch k := in.IndexKey.(type) {
				case float64:
					addr += fmt.Sprintf("[%d]", int(k))
				case string:
					addr += fmt.Sprintf("[%q]", k)
				}
				ipath := fmt.Sprintf("%s/instances/%d", rpath, j)
				res.VMs = append(res.VMs, stateVM(name, addr, in.Attributes, ipath+"/attributes", lines))
			}
		}
	default:
		return nil, &report.Error{Pos: report.Pos{File: name, Line: 1}, Msg: "neither terraform show -json output (format_version, values) nor a .tfstate (version, resources)"}
	}
	return res, nil
}

type showModule struct {
	Address   string `json:"address"`
	Resources []struct {
		Address string         `json:"address"`
		Mode    string         `json:"mode"`
		Type    string         `json:"type"`
		Values  map[string]any `json:"values"`
	} `json:"resources"`
	ChildModules []showModule `json:"child_modules"`
}

func showResources(name string, m *showModule, path string, lines map[string]int, res *Result) {
	for i, r := range m.Resources {
		p := fmt.Sprintf("%s/resources/%d", path, i)
		if r.Mode != "managed" || r.Type != ResourceType {
			res.Other = append(res.Other, Other{Pos: report.Pos{File: name, Line: lines[p]}, Kind: kindOf(r.Mode), What: r.Address})
			continue
		}
		res.VMs = append(res.VMs, stateVM(name, r.Address, r.Values, p+"/values", lines))
	}
	for i := range m.ChildModules {
		showResources(name, &m.ChildModules[i], fmt.Sprintf("%s/child_modules/%d", path, i), lines, res)
	}
}

// stateVM turns resolved attributes into a VM: lists of objects are the
// nested blocks, computed attributes are left out.
func stateVM(file, addr string, attrs map[string]any, path string, lines map[string]int) *VM {
	pos := report.Pos{File: file, Line: lines[path]}
	vm := &VM{Address: addr, Source: FromState}
	vm.Block = *stateBlock(file, attrs, path, pos, lines, true)
	return vm
}

func stateBlock(file string, attrs map[string]any, path string, pos report.Pos, lines map[string]int, top bool) *Block {
	b := &Block{Pos: pos, Attrs: map[string]Value{}, Blocks: map[string][]*Block{}}
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if top && computed[k] || !top && computedNested[k] {
			continue
		}
		v := plain(attrs[k])
		if list, ok := v.([]any); ok && len(list) > 0 && allObjects(list) {
			for i, e := range list {
				ep := fmt.Sprintf("%s/%s/%d", path, jsonPointerEscape(k), i)
				b.Blocks[k] = append(b.Blocks[k], stateBlock(file, e.(map[string]any), ep, report.Pos{File: file, Line: lines[ep]}, lines, false))
			}
			continue
		}
		b.Attrs[k] = Value{pos, v}
	}
	return b
}

func allObjects(l []any) bool {
	for _, e := range l {
		if _, ok := e.(map[string]any); !ok {
			return false
		}
	}
	return true
}

// plain turns json.Number into float64, recursively.
func plain(v any) any {
	switch x := v.(type) {
	case json.Number:
		f, err := x.Float64()
		if err != nil {
			return x.String()
		}
		return f
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = plain(e)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = plain(e)
		}
		return out
	}
	return v
}

func kindOf(mode string) string {
	if mode == "data" {
		return "data"
	}
	return "resource"
}

func decode(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	return d.Decode(v)
}

func jsonPointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// objectLines maps the JSON pointer of every object and array in data to
// the line it starts on.
func objectLines(data []byte) map[string]int {
	out := map[string]int{}
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	type frame struct {
		path  string
		array bool
		index int
		key   string
		// expectKey: in an object, the next string token is a key.
		expectKey bool
	}
	var stack []*frame
	lineAt := newLineIndex(data)
	childPath := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := stack[len(stack)-1]
		if f.array {
			return f.path + "/" + strconv.Itoa(f.index)
		}
		return f.path + "/" + jsonPointerEscape(f.key)
	}
	advance := func() {
		if len(stack) == 0 {
			return
		}
		f := stack[len(stack)-1]
		if f.array {
			f.index++
		} else {
			f.expectKey = true
		}
	}
	for {
		off := d.InputOffset()
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				p := childPath()
				// The token starts after any blanks and the ':' or ','.
				start := int(off)
				for start < len(data) && data[start] != '{' && data[start] != '[' {
					start++
				}
				out[p] = lineAt(start)
				stack = append(stack, &frame{path: p, array: t == '[', expectKey: t == '{'})
			case '}', ']':
				stack = stack[:len(stack)-1]
				advance()
			}
		default:
			if len(stack) > 0 {
				f := stack[len(stack)-1]
				if !f.array && f.expectKey {
					f.key, _ = tok.(string)
					f.expectKey = false
					continue
				}
			}
			advance()
		}
	}
	return out
}

func newLineIndex(data []byte) func(off int) int {
	var starts []int
	starts = append(starts, 0)
	for i, c := range data {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return func(off int) int {
		return sort.Search(len(starts), func(i int) bool { return starts[i] > off })
	}
}

func lineOfOffset(data []byte, off int64) int {
	if off < 0 {
		return 0
	}
	return newLineIndex(data)(int(off))
}

func jsonErrOffset(err error) int64 {
	switch e := err.(type) {
	case *json.SyntaxError:
		return e.Offset
	case *json.UnmarshalTypeError:
		return e.Offset
	}
	if err == io.ErrUnexpectedEOF {
		return -1
	}
	return -1
}
