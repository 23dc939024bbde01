package importer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedDir renders the seed deployment (testdata/seed: haproxy.cfg, the
// keepalived.conf.j2 template with its inventory, main.tf) as its operator
// would have it on disk: the masked xxx.xxx.xxx. network becomes
// 192.0.2., and the Jinja placeholders are filled from the inventory, one
// keepalived.conf per node. It returns the directory; the inputs are at
// the relative paths seedOptions names.
func seedDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	read := func(name string) string {
		data, err := os.ReadFile(filepath.Join("testdata", "seed", name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.ReplaceAll(string(data), "xxx.xxx.xxx.", "192.0.2.")
	}
	write := func(name, data string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	vars := yamlVars(t, read("inventory/group_vars/loadbalancer"))
	tmpl := read("keepalived.conf.j2")
	for _, node := range []string{"lb-0", "lb-1"} {
		v := yamlVars(t, read("inventory/host_vars/"+node))
		for k, val := range vars {
			v[k] = val
		}
		write(node+"/keepalived.conf", fillJinja(t, tmpl, v))
	}
	write("haproxy.cfg", read("haproxy.cfg"))
	write("terraform/main.tf", read("main.tf"))
	state, err := os.ReadFile(filepath.Join("testdata", "seed-state.json"))
	if err != nil {
		t.Fatal(err)
	}
	write("terraform/state.json", string(state))
	return dir
}

// seedOptions are the import options for the files seedDir writes, as
// paths relative to it.
func seedOptions() Options {
	return Options{
		HAProxy:    "haproxy.cfg",
		Keepalived: []NodeFile{{"lb-0", "lb-0/keepalived.conf"}, {"lb-1", "lb-1/keepalived.conf"}},
		Terraform:  []string{"terraform/main.tf", "terraform/state.json"},
	}
}

// yamlVars reads the inventory's flat "key: "value"" files.
func yamlVars(t testing.TB, s string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("inventory line %q: expected key: value", line)
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return out
}

// fillJinja replaces {{ name }} placeholders; an unknown name fails.
func fillJinja(t testing.TB, s string, vars map[string]string) string {
	t.Helper()
	var b strings.Builder
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		j := strings.Index(s[i:], "}}")
		if j < 0 {
			t.Fatalf("unterminated placeholder in %q", s[i:])
		}
		name := strings.TrimSpace(s[i+2 : i+j])
		v, ok := vars[name]
		if !ok {
			t.Fatalf("no value for placeholder %q", name)
		}
		b.WriteString(s[:i])
		b.WriteString(v)
		s = s[i+j+2:]
	}
}
