package reconcile

// The operator documentation in docs/ is checked against the code here:
//
//   - every field of the repository format (the raw structs that mirror
//     the YAML, walked by their json tags) and of the node config has a
//     row in docs/repository.md or docs/node-config.md, and every row
//     names a field that exists;
//   - every example marked `yaml validate` loads, every one marked
//     `yaml node-config` parses;
//   - the documents link only to files and headings that exist, and never
//     outside the repository;
//   - docs/cli.md lists every command and flag the binary has, and only
//     those.
//
// The convention the docs follow: a field is documented by a row of a
// table whose header starts with "| field |"; the row's first cell is the
// field's full path in backticks, a list's elements written with "[]"
// (`spec.failover[].advertInterval`). In docs/repository.md the rows
// belong to the kind of the "## kind: NAME" section they are in, or to
// every kind under "## Common fields".

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"unicode"
)

const docsDir = "../docs"

// everyCommand is the section of docs/cli.md whose flags every command has.
const everyCommand = "Every command"

// commonSection is the section of docs/repository.md whose rows hold for
// every kind.
const commonSection = "*"

// docKinds maps each kind to the document type its YAML decodes into.
var docKinds = map[string]reflect.Type{
	"Edge":           reflect.TypeFor[edgeDoc](),
	"Backend":        reflect.TypeFor[backendDoc](),
	"Route":          reflect.TypeFor[routeDoc](),
	"VirtualMachine": reflect.TypeFor[vmDoc](),
}

// fieldPaths lists the json paths of every field of t, parents included,
// with "[]" after a list whose elements have fields. Maps are leaves.
func fieldPaths(t reflect.Type) []string {
	var out []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() && !f.Anonymous {
				continue
			}
			if f.Anonymous && name == "" {
				walk(f.Type, prefix)
				continue
			}
			if name == "" {
				name = f.Name
			}
			p := prefix + name
			out = append(out, p)
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Struct:
				walk(ft, p+".")
			case ft.Kind() == reflect.Slice && derefKind(ft.Elem()) == reflect.Struct:
				walk(ft.Elem(), p+"[].")
			}
		}
	}
	walk(t, "")
	slices.Sort(out)
	return out
}

func derefKind(t reflect.Type) reflect.Kind {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind()
}

// repositoryFields is what docs/repository.md must document, by section:
// the header fields under commonSection, each kind's spec under its name.
func repositoryFields() map[string][]string {
	common := fieldPaths(reflect.TypeFor[rawHeader]())
	want := map[string][]string{commonSection: common}
	for kind, t := range docKinds {
		for _, p := range fieldPaths(t) {
			if !slices.Contains(common, p) {
				want[kind] = append(want[kind], p)
			}
		}
	}
	return want
}

// docRow is one documented field.
type docRow struct {
	section, path string
	line          int
}

var (
	fieldPathRE   = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9]*(\[\])?(\.[a-zA-Z][a-zA-Z0-9]*(\[\])?)*$`)
	kindHeadingRE = regexp.MustCompile(`^## kind: ([A-Za-z]+)\s*$`)
)

// parseFieldRows reads the field tables of a Markdown document. With
// kinds, "## kind: NAME" and "## Common fields" headings set the section a
// row belongs to, and a field table elsewhere is a problem; without, every
// row is in section "".
func parseFieldRows(doc string, kinds bool) (rows []docRow, problems []string) {
	section := ""
	inTable, inFence := false, false
	lines := strings.Split(doc, "\n")
	for i, line := range lines {
		n := i + 1
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "```") {
			inFence = !inFence
			inTable = false
			continue
		}
		if inFence {
			continue
		}
		if kinds && strings.HasPrefix(line, "## ") {
			switch m := kindHeadingRE.FindStringSubmatch(line); {
			case m != nil:
				section = m[1]
			case strings.TrimSpace(line) == "## Common fields":
				section = commonSection
			default:
				section = ""
			}
		}
		if !strings.HasPrefix(trimmed, "|") {
			inTable = false
			continue
		}
		cells := strings.Split(strings.Trim(trimmed, "|"), "|")
		first := strings.TrimSpace(cells[0])
		if !inTable {
			if first == "field" && i+1 < len(lines) && strings.HasPrefix(strings.TrimSpace(lines[i+1]), "| ---") {
				inTable = true
				if kinds && section == "" {
					problems = append(problems, fmt.Sprintf("line %d: a field table outside a \"## kind: NAME\" or \"## Common fields\" section", n))
				}
			}
			continue
		}
		if strings.HasPrefix(first, "---") {
			continue
		}
		path, ok := strings.CutPrefix(first, "`")
		path, ok2 := strings.CutSuffix(path, "`")
		if !ok || !ok2 || !fieldPathRE.MatchString(path) {
			problems = append(problems, fmt.Sprintf("line %d: a field table row whose first cell is not a field path in backticks: %q", n, first))
			continue
		}
		rows = append(rows, docRow{section: section, path: path, line: n})
	}
	return rows, problems
}

// fieldDoc is one document holding field tables. A document without
// kinds (its rows in no "## kind:" section) puts every row in section.
type fieldDoc struct {
	file, text string
	kinds      bool
	section    string
}

// checkFields compares documented rows with the fields of the code, by
// section, and returns every difference.
func checkFields(file, doc string, kinds bool, want map[string][]string) []string {
	return checkFieldDocs([]fieldDoc{{file: file, text: doc, kinds: kinds}}, want)
}

// checkFieldDocs is checkFields over several documents that share the
// sections: spec.bgp's rows are in docs/bgp.md, the rest of the Edge's in
// docs/repository.md.
func checkFieldDocs(docs []fieldDoc, want map[string][]string) []string {
	var problems []string
	type at struct {
		file string
		line int
	}
	documented := map[string]map[string]at{}
	for _, fd := range docs {
		rows, ps := parseFieldRows(fd.text, fd.kinds)
		for _, p := range ps {
			problems = append(problems, fd.file+": "+p)
		}
		file := fd.file
		for _, r := range rows {
			if !fd.kinds {
				r.section = fd.section
			}
			if documented[r.section] == nil {
				documented[r.section] = map[string]at{}
			}
			if prev, dup := documented[r.section][r.path]; dup {
				problems = append(problems, fmt.Sprintf("%s:%d: `%s` is documented twice in section %q (also %s:%d)", file, r.line, r.path, r.section, prev.file, prev.line))
				continue
			}
			documented[r.section][r.path] = at{file, r.line}
			if !slices.Contains(want[r.section], r.path) {
				problems = append(problems, fmt.Sprintf("%s:%d: `%s` (section %q) is not a field of the code: remove the row or fix the path", file, r.line, r.path, r.section))
			}
		}
	}
	for _, section := range slices.Sorted(maps.Keys(want)) {
		for _, p := range want[section] {
			if _, ok := documented[section][p]; !ok {
				problems = append(problems, fmt.Sprintf("%s: field `%s` (section %q) is in the code but not documented: add a row to a field table of that section", docs[0].file, p, section))
			}
		}
	}
	return problems
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(docsDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDocsKindsCoverTheLoader(t *testing.T) {
	if got := slices.Sorted(maps.Keys(docKinds)); !slices.Equal(got, slices.Sorted(slices.Values(kinds))) {
		t.Fatalf("docKinds has %v, the loader knows %v: map the new kind to its document type", got, kinds)
	}
}

func TestDocsRepositoryFieldsMatchCode(t *testing.T) {
	docs := []fieldDoc{
		{file: "docs/repository.md", text: readDoc(t, "repository.md"), kinds: true},
		// spec.bgp has a page of its own.
		{file: "docs/bgp.md", text: readDoc(t, "bgp.md"), section: "Edge"},
	}
	for _, p := range checkFieldDocs(docs, repositoryFields()) {
		t.Error(p)
	}
}

// The node config's types live in package nodeconfig, which imports
// reconcile: docs_nodeconfig_test.go (package reconcile_test, which may
// import it) hands them over here before the tests run.
var (
	nodeConfigFile  reflect.Type                          // nodeconfig.File
	parseNodeConfig func(where string, data []byte) error // nodeconfig.Parse
)

// SetNodeConfigForDocs is how docs_nodeconfig_test.go hands them over.
func SetNodeConfigForDocs(file reflect.Type, parse func(where string, data []byte) error) {
	nodeConfigFile, parseNodeConfig = file, parse
}

func nodeConfigFields(t *testing.T) map[string][]string {
	t.Helper()
	if nodeConfigFile == nil || parseNodeConfig == nil {
		t.Fatal("docs_nodeconfig_test.go did not hand the node config over")
	}
	return map[string][]string{"": fieldPaths(nodeConfigFile)}
}

func TestDocsNodeConfigFieldsMatchCode(t *testing.T) {
	want := nodeConfigFields(t)
	for _, p := range checkFields("docs/node-config.md", readDoc(t, "node-config.md"), false, want) {
		t.Error(p)
	}
}

// TestDocsFieldCheckCatches makes sure the field check above fails when a
// row goes missing, a bogus one is added, or a row loses its path.
func TestDocsFieldCheckCatches(t *testing.T) {
	repo := readDoc(t, "repository.md")
	node := readDoc(t, "node-config.md")
	nodeWant := nodeConfigFields(t)
	dropRow := func(doc, path string) string {
		var out []string
		dropped := false
		for line := range strings.SplitSeq(doc, "\n") {
			if strings.HasPrefix(line, "| `"+path+"` |") {
				dropped = true
				continue
			}
			out = append(out, line)
		}
		if !dropped {
			t.Fatalf("no row for %s to drop", path)
		}
		return strings.Join(out, "\n")
	}
	addAfter := func(doc, path, row string) string {
		i := strings.Index(doc, "| `"+path+"` |")
		if i < 0 {
			t.Fatalf("no row for %s", path)
		}
		end := i + strings.IndexByte(doc[i:], '\n') + 1
		return doc[:end] + row + "\n" + doc[end:]
	}
	tests := []struct {
		name, doc string
		kinds     bool
		want      map[string][]string
		mention   string
	}{
		{"missing Edge row", dropRow(repo, "spec.failover[].garp.refresh"), true, repositoryFields(), "`spec.failover[].garp.refresh` (section \"Edge\") is in the code"},
		{"missing common row", dropRow(repo, "metadata.annotations"), true, repositoryFields(), "`metadata.annotations` (section \"*\") is in the code"},
		{"missing VM row", dropRow(repo, "spec.cloudInit.ipConfig.gateway"), true, repositoryFields(), "`spec.cloudInit.ipConfig.gateway` (section \"VirtualMachine\")"},
		{"bogus row", addAfter(repo, "spec.balance", "| `spec.stickiness` | string | none | made up |"), true, repositoryFields(), "`spec.stickiness` (section \"Backend\") is not a field"},
		{"row in the wrong kind", addAfter(repo, "spec.hosts", "| `spec.servers` | list | required | a Route has none |"), true, repositoryFields(), "`spec.servers` (section \"Route\") is not a field"},
		{"duplicate row", addAfter(repo, "spec.vmid", "| `spec.vmid` | integer | required | again |"), true, repositoryFields(), "documented twice"},
		{"row without a path", addAfter(repo, "spec.vmid", "| the VMID | integer | required | |"), true, repositoryFields(), "not a field path in backticks"},
		{"missing node config row", dropRow(node, "source.auth.passwordFile"), false, nodeWant, "`source.auth.passwordFile`"},
		{"bogus node config row", addAfter(node, "admin.listen", "| `admin.tls` | boolean | `false` | made up |"), false, nodeWant, "`admin.tls` (section \"\") is not a field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems := checkFields("doc.md", tt.doc, tt.kinds, tt.want)
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tt.mention) }) {
				t.Errorf("no problem mentions %q; got %q", tt.mention, problems)
			}
		})
	}
}

// codeBlock is one fenced block of a Markdown document.
type codeBlock struct {
	file, info, text string
	line             int
	section          string // the "## " heading it is under
}

// codeBlocks returns the fenced blocks of a document, their content
// unindented by the fence's own indentation (blocks inside list items).
func codeBlocks(file, doc string) []codeBlock {
	var out []codeBlock
	var cur *codeBlock
	var indent string
	var body []string
	section := ""
	for i, line := range strings.Split(doc, "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if cur == nil {
			if strings.HasPrefix(line, "## ") {
				section = strings.TrimSpace(line[3:])
			}
			if strings.HasPrefix(trimmed, "```") {
				cur = &codeBlock{file: file, info: strings.TrimSpace(trimmed[3:]), line: i + 1, section: section}
				indent = line[:len(line)-len(trimmed)]
				body = nil
			}
			continue
		}
		if strings.HasPrefix(trimmed, "```") {
			cur.text = strings.Join(body, "\n") + "\n"
			out = append(out, *cur)
			cur = nil
			continue
		}
		body = append(body, strings.TrimPrefix(line, indent))
	}
	return out
}

func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(docsDir, "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Markdown files in %s: %v", docsDir, err)
	}
	return files
}

func TestDocsExamplesValidate(t *testing.T) {
	counts := map[string]int{}
	validated := map[string]bool{}
	for _, f := range docFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := "docs/" + filepath.Base(f)
		for _, b := range codeBlocks(name, string(data)) {
			where := fmt.Sprintf("%s:%d", b.file, b.line)
			switch b.info {
			case "yaml validate":
				counts[b.info]++
				if _, err := Load(fstest.MapFS{"example.yaml": {Data: []byte(b.text)}}); err != nil {
					t.Errorf("%s: the example does not validate:\n%v", where, err)
					continue
				}
				if name == "docs/repository.md" {
					if k, ok := strings.CutPrefix(b.section, "kind: "); ok {
						if !strings.Contains(b.text, "kind: "+k+"\n") {
							t.Errorf("%s: the example of the %s section holds no %s", where, k, k)
						}
						validated[k] = true
					}
				}
			case "yaml node-config":
				counts[b.info]++
				nodeConfigFields(t)
				if err := parseNodeConfig(where, []byte(b.text)); err != nil {
					t.Errorf("%s: the node config example does not parse: %v", where, err)
				}
			}
		}
	}
	for k := range docKinds {
		if !validated[k] {
			t.Errorf("docs/repository.md: the \"## kind: %s\" section has no `yaml validate` example", k)
		}
	}
	if counts["yaml validate"] == 0 || counts["yaml node-config"] == 0 {
		t.Errorf("examples checked: %v; expected both kinds of example", counts)
	}
}

// headingAnchor is the anchor GitHub gives a heading: lower case, letters,
// digits, '-' and '_' kept, spaces turned into '-', the rest dropped.
func headingAnchor(h string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(h)) {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r), r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func anchorsOf(doc string) map[string]bool {
	anchors := map[string]bool{}
	inFence := false
	for line := range strings.SplitSeq(doc, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimLeft(line, "#")
		if !strings.HasPrefix(h, " ") {
			continue
		}
		a := headingAnchor(h)
		for i := 1; anchors[a]; i++ { // GitHub numbers repeated headings
			a = fmt.Sprintf("%s-%d", headingAnchor(h), i)
		}
		anchors[a] = true
	}
	return anchors
}

var mdLinkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// TestDocsStandAlone: the documentation never points outside the
// repository, and every relative link reaches a file and heading in it.
func TestDocsStandAlone(t *testing.T) {
	files := append(docFiles(t), "../README.md")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(filepath.ToSlash(f), "../")
		sc := bufio.NewScanner(bytes.NewReader(data))
		for n := 1; sc.Scan(); n++ {
			line := sc.Text()
			if strings.Contains(line, "../shared") || strings.Contains(line, "SPEC") {
				t.Errorf("%s:%d: points outside the repository (../shared, SPEC): %s", name, n, line)
			}
			for _, m := range mdLinkRE.FindAllStringSubmatch(line, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, anchor, _ := strings.Cut(target, "#")
				path := f
				if file != "" {
					path = filepath.Join(filepath.Dir(f), file)
				}
				abs, err := filepath.Abs(path)
				root, _ := filepath.Abs("..")
				if err != nil || !strings.HasPrefix(abs, root+string(filepath.Separator)) {
					t.Errorf("%s:%d: link %q leaves the repository", name, n, target)
					continue
				}
				st, err := os.Stat(path)
				if err != nil {
					t.Errorf("%s:%d: link %q: %v", name, n, target, err)
					continue
				}
				if anchor == "" {
					continue
				}
				if st.IsDir() || !strings.HasSuffix(path, ".md") {
					t.Errorf("%s:%d: link %q: an anchor into something that is not a Markdown file", name, n, target)
					continue
				}
				doc, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if !anchorsOf(string(doc))[anchor] {
					t.Errorf("%s:%d: link %q: no heading with anchor #%s in %s", name, n, target, anchor, file)
				}
			}
		}
	}
}

// TestDocsCLIMatchesBinary builds gitedge and compares its commands and
// flags (as `gitedge help` and `gitedge COMMAND -h` print them) with the
// "## gitedge COMMAND" sections of docs/cli.md and their flag tables
// (tables whose header starts with "| flag |", the flag in backticks
// first: `--config FILE`, `-v`). Every section must also say how the
// command exits.
//
// The flags every command has are documented once, in the section
// "## Every command", and count as documented for each command.
func TestDocsCLIMatchesBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build gitedge with")
	}
	bin := filepath.Join(t.TempDir(), "gitedge")
	build := exec.Command(goBin, "build", "-o", bin, "../cmd/gitedge")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building gitedge: %v\n%s", err, out)
	}
	help, _ := exec.Command(bin, "help").CombinedOutput()
	commandRE := regexp.MustCompile(`(?m)^  ([a-z]+) +\S`)
	binCmds := map[string][]string{}
	for _, m := range commandRE.FindAllStringSubmatch(string(help), -1) {
		usage, _ := exec.Command(bin, m[1], "-h").CombinedOutput()
		var flags []string
		for _, f := range regexp.MustCompile(`(?m)^  --?([a-z][a-z0-9-]*)`).FindAllStringSubmatch(string(usage), -1) {
			flags = append(flags, f[1])
		}
		slices.Sort(flags)
		binCmds[m[1]] = flags
	}
	if len(binCmds) < 5 {
		t.Fatalf("gitedge help lists %d commands:\n%s", len(binCmds), help)
	}

	doc := readDoc(t, "cli.md")
	docCmds := map[string][]string{}
	exits := map[string]bool{}
	cur := ""
	inFlags, inFence := false, false
	flagCellRE := regexp.MustCompile("^`--?([a-z][a-z0-9-]*)[ `=]")
	for i, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		if name, ok := strings.CutPrefix(line, "## gitedge "); ok {
			cur = strings.TrimSpace(name)
			docCmds[cur] = []string{}
			continue
		}
		if strings.TrimSpace(line) == "## "+everyCommand {
			cur = everyCommand
			docCmds[cur] = []string{}
			exits[cur] = true
			continue
		}
		if strings.HasPrefix(line, "## ") {
			cur = ""
			continue
		}
		if cur == "" {
			continue
		}
		if strings.Contains(strings.ToLower(line), "exit") {
			exits[cur] = true
		}
		switch {
		case strings.HasPrefix(line, "| flag |"):
			inFlags = true
		case !strings.HasPrefix(line, "|"):
			inFlags = false
		case inFlags && !strings.HasPrefix(line, "| ---"):
			cell := strings.TrimSpace(strings.Split(strings.Trim(line, "|"), "|")[0])
			m := flagCellRE.FindStringSubmatch(cell + " ")
			if m == nil {
				t.Errorf("docs/cli.md:%d: a flag row whose first cell is not a flag in backticks: %q", i+1, cell)
				continue
			}
			docCmds[cur] = append(docCmds[cur], m[1])
		}
	}
	common := docCmds[everyCommand]
	delete(docCmds, everyCommand)
	for _, name := range slices.Sorted(maps.Keys(binCmds)) {
		got, ok := docCmds[name]
		got = append(slices.Clone(got), common...)
		if !ok {
			t.Errorf("docs/cli.md: command %q has no \"## gitedge %s\" section", name, name)
			continue
		}
		slices.Sort(got)
		if !slices.Equal(got, binCmds[name]) {
			t.Errorf("docs/cli.md: gitedge %s: documented flags %v, the binary has %v", name, got, binCmds[name])
		}
		if !exits[name] {
			t.Errorf("docs/cli.md: gitedge %s: the section does not say how it exits", name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(docCmds)) {
		if _, ok := binCmds[name]; !ok {
			t.Errorf("docs/cli.md: documents command %q, which the binary does not have", name)
		}
	}
}
