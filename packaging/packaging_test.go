package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	k8syaml "sigs.k8s.io/yaml"

	"github.com/gitedge/gitedge/nodeconfig"
)

// testVersion is what the test binary and packages are stamped with.
const testVersion = "v1.2.3-4-gabcdef0"

var testMTime = time.Unix(1700000000, 0).UTC()

// binDir holds the gitedge binary the tests package, built once.
var binDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required (make deps installs it): %v", tool, err)
		}
	}
}

// tools are built once and without the race detector: packaging a 30 MB
// binary (gzip) takes minutes under -race and seconds without.
type toolset struct {
	gitedge string // cmd/gitedge as `make deb` builds it: static, stamped
	build   string // the command `make deb` and `make release` run
}

var tools = sync.OnceValues(func() (toolset, error) {
	dir, err := os.MkdirTemp("", "gitedge-packaging-test-")
	if err != nil {
		return toolset{}, err
	}
	binDir = dir
	ts := toolset{gitedge: filepath.Join(dir, "gitedge"), build: filepath.Join(dir, "build")}
	for _, b := range []struct {
		out  string
		args []string
	}{
		{ts.gitedge, []string{"-ldflags", "-X main.version=" + testVersion, "./cmd/gitedge"}},
		{ts.build, []string{"./packaging/build"}},
	} {
		cmd := exec.Command("go", append([]string{"build", "-o", b.out}, b.args...)...)
		cmd.Dir = ".."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			return toolset{}, fmt.Errorf("go build %s: %v\n%s", b.args[len(b.args)-1], err, out)
		}
	}
	return ts, nil
})

func testTools(t *testing.T) toolset {
	t.Helper()
	ts, err := tools()
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func testOptions(t *testing.T) Options {
	t.Helper()
	return Options{Version: testVersion, Arch: runtime.GOARCH, Binary: testTools(t).gitedge, Root: repoRoot(t), Out: t.TempDir(), MTime: testMTime}
}

// testDeb is the package of testOptions, built once and shared by the
// tests that only read it.
var (
	testDebOnce sync.Once
	testDebPath string
)

func testDeb(t *testing.T) string {
	t.Helper()
	testDebOnce.Do(func() {
		o := testOptions(t)
		o.Out = binDir
		testDebPath = artifact(t, "deb", o)
	})
	if testDebPath == "" {
		t.Fatal("building the test package failed (see the first test that built it)")
	}
	return testDebPath
}

// artifact builds a deb or an archive with the build command, as the
// Makefile does, and returns its path.
func artifact(t *testing.T, kind string, o Options) string {
	t.Helper()
	return strings.TrimSpace(run(t, testTools(t).build, kind, "--version", o.Version, "--arch", o.Arch,
		"--binary", o.Binary, "--root", o.Root, "--out", o.Out, "--mtime", strconv.FormatInt(o.MTime.Unix(), 10)))
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebianVersion maps describe output to Debian versions that dpkg
// accepts and that sort as the releases do.
func TestDebianVersion(t *testing.T) {
	requireTools(t, "dpkg")
	ordered := []struct{ in, want string }{
		{"dev", "0.0.0+dev"},
		{"5e4c3d2", "0.0.0+g5e4c3d2"},
		{"5e4c3d2-dirty", "0.0.0+g5e4c3d2.dirty"},
		{"v0.9.0", "0.9.0"},
		{"v1.2.3-rc.1", "1.2.3~rc.1"},
		{"v1.2.3-rc.1-2-g0a1b2c3", "1.2.3~rc.1+2.g0a1b2c3"},
		{"v1.2.3-rc.2", "1.2.3~rc.2"},
		{"v1.2.3", "1.2.3"},
		{"v1.2.3-4-gabcdef0", "1.2.3+4.gabcdef0"},
		{"v1.2.3-4-gabcdef0-dirty", "1.2.3+4.gabcdef0.dirty"},
		{"v1.2.3-12-g0a1b2c3", "1.2.3+12.g0a1b2c3"},
		{"v1.2.4-beta-1", "1.2.4~beta.1"},
		{"v1.2.4", "1.2.4"},
		{"v1.2.4+build.7", "1.2.4+build.7"},
		{"v1.10.0", "1.10.0"},
		{"v20240101", "20240101"}, // a v: a tag, not a commit id
	}
	var prev string
	for _, tc := range ordered {
		got, err := DebianVersion(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("DebianVersion(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			continue
		}
		if out, err := exec.Command("dpkg", "--validate-version", got).CombinedOutput(); err != nil {
			t.Errorf("dpkg refuses %q (from %q): %s", got, tc.in, out)
		}
		if prev != "" && exec.Command("dpkg", "--compare-versions", prev, "lt", got).Run() != nil {
			t.Errorf("dpkg does not sort %q before %q", prev, got)
		}
		prev = got
	}
	// Valid, outside the order above (a dirty tree is no release).
	if got, err := DebianVersion("1.2.3-dirty"); err != nil || got != "1.2.3+dirty" {
		t.Errorf("DebianVersion(1.2.3-dirty) = %q, %v", got, err)
	}
	for _, bad := range []string{"", "release/1.2", "v1.2_3", "vX", "-1"} {
		if v, err := DebianVersion(bad); err == nil {
			t.Errorf("DebianVersion(%q) = %q, want an error", bad, v)
		}
	}
	if got := ArchiveVersion("v1.2.3-4-gabcdef0"); got != "1.2.3-4-gabcdef0" {
		t.Errorf("ArchiveVersion: %q", got)
	}
}

// unitDirectives reads the [Service] and [Unit] settings of the shipped
// unit: name → values in order.
func unitDirectives(t *testing.T) map[string][]string {
	t.Helper()
	f, err := os.Open(filepath.Join(repoRoot(t), "packaging", "gitedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := map[string][]string{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := strings.TrimSpace(s.Text())
		if line == "" || line[0] == '#' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("gitedge.service: %q is not a setting", line)
		}
		d[k] = append(d[k], v)
	}
	return d
}

// verifyUnit runs systemd-analyze verify on a copy of unit whose
// ExecStart names an existing binary, and returns what it said about it.
func verifyUnit(t *testing.T, unit string) (string, error) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	unit = strings.Replace(unit, "ExecStart="+binPath+" ", "ExecStart="+exe+" ", 1)
	dir := t.TempDir()
	p := filepath.Join(dir, "gitedge.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("systemd-analyze", "verify", "--man=no", p).CombinedOutput()
	// Messages about other units (on a machine running systemd) are not
	// ours to fix.
	var ours []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "gitedge") {
			ours = append(ours, l)
		}
	}
	return strings.Join(ours, "\n"), err
}

// TestUnitVerify checks the shipped unit with systemd-analyze: no warning
// at all, and a hardening exposure no worse than today's.
func TestUnitVerify(t *testing.T) {
	requireTools(t, "systemd-analyze")
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "gitedge.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "ExecStart="+binPath+" ") {
		t.Fatalf("gitedge.service: ExecStart does not run %s", binPath)
	}
	out, err := verifyUnit(t, string(b))
	if err != nil || out != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// The check sees a mistake: a misspelled setting is reported.
	out, _ = verifyUnit(t, strings.Replace(string(b), "ProtectSystem=strict", "ProtectSystm=strict", 1))
	if !strings.Contains(out, "ProtectSystm") {
		t.Errorf("systemd-analyze verify did not report a misspelled setting: %q", out)
	}

	// systemd's own score of the sandbox (0 best, 10 worst): 2.1 today,
	// "OK"; a change that loosens it fails here and has to say why.
	dir := t.TempDir()
	p := filepath.Join(dir, "gitedge.service")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	sec, err := exec.Command("systemd-analyze", "security", "--offline=true", "--threshold=21", "--no-pager", p).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze security: exposure above 2.1: %v\n%s", err, sec)
	}
	if m := regexp.MustCompile(`Overall exposure level for gitedge.service: ([0-9.]+)`).FindSubmatch(sec); m != nil {
		t.Logf("systemd-analyze security: exposure %s", m[1])
	}
}

// TestUnitMatchesCode ties the unit to what the package installs and what
// the code expects.
func TestUnitMatchesCode(t *testing.T) {
	d := unitDirectives(t)
	nc, err := nodeconfig.Parse("test", []byte("node: a\nsource: {url: /srv/edge}\n"))
	if err != nil {
		t.Fatal(err)
	}
	caps := []string{"CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE"}
	for _, tc := range []struct {
		key  string
		want []string
	}{
		{"ExecStart", []string{binPath + " run --config " + nodeconfig.DefaultPath}},
		{"Type", []string{"notify"}},
		{"NotifyAccess", []string{"all"}},
		{"ExecReload", []string{"/bin/kill -HUP $MAINPID"}},
		{"KillMode", []string{"control-group"}},
		{"User", []string{"gitedge"}}, // the user postinst creates
		{"AmbientCapabilities", caps},
		{"CapabilityBoundingSet", caps},
		{"StateDirectory", []string{strings.TrimPrefix(nc.StateDir, "/var/lib/")}},
		{"ConfigurationDirectory", []string{filepath.Base(filepath.Dir(configPath))}},
		{"ProtectSystem", []string{"strict"}},
		{"RestrictAddressFamilies", []string{"AF_INET AF_INET6 AF_NETLINK AF_PACKET AF_UNIX"}},
	} {
		if got := d[tc.key]; !slices.Equal(got, tc.want) {
			t.Errorf("gitedge.service: %s=%q, want %q", tc.key, got, tc.want)
		}
	}
	if configPath != nodeconfig.DefaultPath {
		t.Errorf("the package installs the config at %s, gitedge reads %s", configPath, nodeconfig.DefaultPath)
	}
}

// uncomment turns the example config into the config it documents:
// every "#setting" line loses its "#"; "##" lines are explanations.
func uncomment(b []byte) []byte {
	var out bytes.Buffer
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "##") {
			l = l[1:]
		}
		out.WriteString(l)
	}
	return out.Bytes()
}

// jsonFields lists the dotted YAML paths of every field of a config type.
func jsonFields(t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, jsonFields(ft, prefix+name+".")...)
		} else {
			out = append(out, prefix+name)
		}
	}
	return out
}

func hasPath(m map[string]any, path string) bool {
	head, rest, more := strings.Cut(path, ".")
	v, ok := m[head]
	if !ok || !more {
		return ok
	}
	sub, ok := v.(map[string]any)
	return ok && hasPath(sub, rest)
}

// TestExampleConfig: as shipped, every setting is commented out and
// gitedge refuses it, naming what to set; uncommented, it is a valid node
// config that shows every field gitedge reads, except the pins the
// comments describe (tag and commit exclude each other).
func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "packaging", "gitedge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = nodeconfig.Parse(configPath, b)
	if err == nil || !strings.Contains(err.Error(), "node: missing") || !strings.Contains(err.Error(), "source.url: missing") {
		t.Errorf("the example as shipped: got %v, want node and source.url reported missing", err)
	}
	full := uncomment(b)
	nc, err := nodeconfig.Parse(configPath, full)
	if err != nil {
		t.Fatalf("the example uncommented: %v\n%s", err, full)
	}
	if nc.StateDir != "/var/lib/gitedge" {
		t.Errorf("stateDir %q: the unit's StateDirectory is /var/lib/gitedge", nc.StateDir)
	}
	var m map[string]any
	if err := k8syaml.Unmarshal(full, &m); err != nil {
		t.Fatal(err)
	}
	described := map[string]bool{"source.tag": true, "source.commit": true}
	for _, f := range jsonFields(reflect.TypeFor[nodeconfig.File](), "") {
		if hasPath(m, f) {
			continue
		}
		leaf := f[strings.LastIndex(f, ".")+1:]
		if described[f] && bytes.Contains(b, []byte("##   "+leaf+": ")) {
			continue
		}
		t.Errorf("node config field %s is not in packaging/gitedge.yaml: add it, commented out, with what it does", f)
	}
	// Secrets are files under /etc/gitedge, the directory postinst gives
	// to the gitedge group.
	for _, l := range strings.Split(string(full), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && strings.HasSuffix(k, "File") && !strings.HasPrefix(strings.TrimSpace(v), "/etc/gitedge/") {
			t.Errorf("%s: %s is not under /etc/gitedge", k, v)
		}
	}
}

func TestCheckBinary(t *testing.T) {
	o := testOptions(t)
	other := map[string]string{"amd64": "arm64", "arm64": "amd64"}[runtime.GOARCH]
	text := filepath.Join(t.TempDir(), "gitedge")
	if err := os.WriteFile(text, []byte("#!/bin/sh\nexec /usr/bin/gitedge-real \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	dynamic, err := exec.LookPath("dpkg") // a C program: linked against libc
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, bin, arch, want string
	}{
		{"static, this arch", o.Binary, runtime.GOARCH, ""},
		{"other arch", o.Binary, other, "build it with GOARCH=" + other},
		{"dynamic", dynamic, runtime.GOARCH, "libc.so.6): build it with CGO_ENABLED=0"},
		{"not ELF", text, runtime.GOARCH, "bad magic number"},
		{"missing", filepath.Join(t.TempDir(), "none"), runtime.GOARCH, "no such file"},
	} {
		err := checkBinary(tc.bin, tc.arch)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
	// BuildDeb reports every problem at once and writes nothing.
	bad := o
	bad.Version, bad.Arch = "", "riscv64"
	if _, err := BuildDeb(bad); err == nil || !strings.Contains(err.Error(), "version: missing") || !strings.Contains(err.Error(), `arch "riscv64": expected one of amd64, arm64`) {
		t.Errorf("BuildDeb with bad options: %v", err)
	}
	if entries, _ := os.ReadDir(o.Out); len(entries) != 0 {
		t.Errorf("a refused build left %v", entries)
	}
}

type tarEntry struct {
	name, owner string
	mode        int64
	mtime       time.Time
	body        []byte
}

func readTarGz(t *testing.T, p string) []tarEntry {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var out []tarEntry
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tarEntry{h.Name, h.Uname + "/" + h.Gname, h.Mode, h.ModTime, body})
	}
}

// TestArchive builds the release archive and its SHA256SUMS and checks
// them with tar's reader and sha256sum.
func TestArchive(t *testing.T) {
	t.Parallel()
	requireTools(t, "sha256sum")
	o := testOptions(t)
	p := artifact(t, "archive", o)
	base := "gitedge_1.2.3-4-gabcdef0_linux_" + runtime.GOARCH
	if filepath.Base(p) != base+".tar.gz" {
		t.Errorf("archive name %s", filepath.Base(p))
	}
	root := repoRoot(t)
	want := map[string]string{ // path in the archive → source
		"gitedge":         o.Binary,
		"gitedge.service": filepath.Join(root, "packaging", "gitedge.service"),
		"gitedge.yaml":    filepath.Join(root, "packaging", "gitedge.yaml"),
		"README.md":       filepath.Join(root, "README.md"),
	}
	dd, err := docs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dd {
		want[d] = filepath.Join(root, d)
	}
	var names []string
	for _, e := range readTarGz(t, p) {
		names = append(names, e.name)
		if e.owner != "root/root" || !e.mtime.Equal(testMTime) {
			t.Errorf("%s: owner %s, mtime %v", e.name, e.owner, e.mtime)
		}
		if strings.HasSuffix(e.name, "/") {
			if e.mode != 0o755 {
				t.Errorf("%s: mode %o", e.name, e.mode)
			}
			continue
		}
		rel, ok := strings.CutPrefix(e.name, base+"/")
		src, known := want[rel]
		if !ok || !known {
			t.Errorf("unexpected entry %s", e.name)
			continue
		}
		delete(want, rel)
		wantMode := int64(0o644)
		if rel == "gitedge" {
			wantMode = 0o755
		}
		if e.mode != wantMode {
			t.Errorf("%s: mode %o, want %o", e.name, e.mode, wantMode)
		}
		if b, err := os.ReadFile(src); err != nil || !bytes.Equal(b, e.body) {
			t.Errorf("%s differs from %s (%v)", e.name, src, err)
		}
	}
	for rel := range want {
		t.Errorf("%s missing from the archive", rel)
	}
	if !slices.IsSorted(names) || names[0] != base+"/" {
		t.Errorf("entries not sorted under %s/: %q", base, names)
	}

	// Same inputs, same bytes.
	o2 := o
	o2.Out = t.TempDir()
	p2 := artifact(t, "archive", o2)
	if a, b := run(t, "sha256sum", p), run(t, "sha256sum", p2); strings.Fields(a)[0] != strings.Fields(b)[0] {
		t.Errorf("two builds differ:\n%s%s", a, b)
	}

	deb, err := os.ReadFile(testDeb(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.Out, filepath.Base(testDeb(t))), deb, 0o644); err != nil {
		t.Fatal(err)
	}
	sums := strings.TrimSpace(run(t, testTools(t).build, "sums", o.Out))
	cmd := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	cmd.Dir = o.Out
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sha256sum --check: %v\n%s", err, out)
	}
	b, _ := os.ReadFile(sums)
	if n := strings.Count(string(b), "\n"); n != 2 || !strings.Contains(string(out), ".deb: OK") || !strings.Contains(string(out), ".tar.gz: OK") {
		t.Errorf("SHA256SUMS lists %d files:\n%s", n, out)
	}
	if _, err := WriteSums(t.TempDir()); err == nil {
		t.Error("WriteSums of an empty directory: no error")
	}
}
