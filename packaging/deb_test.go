package packaging

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDebContents reads the package back with dpkg-deb: control fields,
// conffiles, maintainer scripts, and every file with its owner and mode.
func TestDebContents(t *testing.T) {
	t.Parallel()
	requireTools(t, "dpkg-deb")
	o := testOptions(t)
	p := testDeb(t)
	if want := "gitedge_1.2.3+4.gabcdef0_" + runtime.GOARCH + ".deb"; filepath.Base(p) != want {
		t.Errorf("package name %s, want %s", filepath.Base(p), want)
	}
	for field, want := range map[string]string{
		"Package":      "gitedge",
		"Version":      "1.2.3+4.gabcdef0",
		"Architecture": runtime.GOARCH,
		"Depends":      "adduser",
		"Suggests":     "git",
		"Section":      "net",
		"Priority":     "optional",
		"Maintainer":   DefaultMaintainer,
	} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", p, field)); got != want {
			t.Errorf("control %s: %q, want %q", field, got, want)
		}
	}
	if got := run(t, "dpkg-deb", "--info", p, "conffiles"); got != configPath+"\n" {
		t.Errorf("conffiles: %q, want only %s", got, configPath)
	}
	root := repoRoot(t)
	for _, script := range []string{"postinst", "prerm", "postrm"} {
		want, err := os.ReadFile(filepath.Join(root, "packaging", "deb", script))
		if err != nil {
			t.Fatal(err)
		}
		if got := run(t, "dpkg-deb", "--info", p, script); got != string(want) {
			t.Errorf("%s in the package differs from packaging/deb/%s", script, script)
		}
	}
	// The data: "mode owner path" per file, and directories.
	want := []string{
		"-rw-r--r-- root/root ./etc/gitedge/gitedge.yaml",
		"-rw-r--r-- root/root ./lib/systemd/system/gitedge.service",
		"-rwxr-xr-x root/root ./usr/bin/gitedge",
		"-rw-r--r-- root/root ./usr/share/doc/gitedge/README.md",
	}
	dirs := map[string]bool{}
	dd, err := docs(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dd {
		if d != "README.md" {
			want = append(want, "-rw-r--r-- root/root ./usr/share/doc/gitedge/"+d)
		}
	}
	for _, w := range want {
		f := strings.TrimPrefix(strings.Fields(w)[2], "./")
		for d := path.Dir(f); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		want = append(want, "drwxr-xr-x root/root ./"+d+"/")
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", p)), "\n") {
		f := strings.Fields(l) // mode owner size date time path
		if len(f) != 6 {
			t.Fatalf("dpkg-deb --contents: %q", l)
		}
		got = append(got, f[0]+" "+f[1]+" "+f[5])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("package contents:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Same inputs, same bytes.
	o.Out = t.TempDir()
	p2 := artifact(t, "deb", o)
	if a, b := run(t, "sha256sum", p), run(t, "sha256sum", p2); strings.Fields(a)[0] != strings.Fields(b)[0] {
		t.Errorf("two builds differ:\n%s%s", a, b)
	}
}

// scratchRoot is a throwaway copy of this machine's root file system: an
// overlay of / with its writes going to a tmpfs, mounted in a private mount
// namespace that a holder process keeps alive. dpkg, chrooted into it,
// installs with the machine's real dpkg database, adduser and
// deb-systemd-helper, and nothing reaches the machine itself.
type scratchRoot struct {
	dir   string // the root's path, inside the namespace
	pid   int    // the holder: its /proc/PID/root sees the namespace
	stdin io.WriteCloser
}

func newScratchRoot(t *testing.T) *scratchRoot {
	t.Helper()
	requireTools(t, "unshare", "nsenter", "chroot", "mount")
	base := t.TempDir()
	r := &scratchRoot{dir: filepath.Join(base, "root")}
	rw := filepath.Join(base, "rw")
	for _, d := range []string{r.dir, rw} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// /run and /tmp are empty tmpfs: no /run/systemd/system, so the
	// maintainer scripts do not talk to this machine's systemd.
	const script = `set -e
mount -t tmpfs -o mode=0755 gitedge-scratch "$2"
mkdir "$2/upper" "$2/work"
mount -t overlay gitedge-scratch -o "lowerdir=/,upperdir=$2/upper,workdir=$2/work" "$1"
mount -t proc proc "$1/proc"
mount --rbind /dev "$1/dev"
mount -t tmpfs tmpfs "$1/run"
mount -t tmpfs tmpfs "$1/tmp"
echo ready
exec cat >/dev/null
`
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", r.dir, rw)
	var err error
	if r.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	exited := make(chan struct{})
	// The first line is "ready" once the mounts are in place; the rest
	// is drained.
	lineCh := make(chan string, 1)
	go func() {
		br := bufio.NewReader(stdout)
		l, _ := br.ReadString('\n')
		lineCh <- l
		_, _ = io.Copy(io.Discard, br)
	}()
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		r.stdin.Close() // cat ends; the namespace and its mounts go with it
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case l := <-lineCh:
		if strings.TrimSpace(l) != "ready" {
			<-exited
			t.Fatalf("setting up the scratch root: %q %s", l, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("setting up the scratch root: no answer in 30s")
	}
	r.pid = cmd.Process.Pid
	return r
}

// run runs a command in the root's mount namespace (not chrooted).
func (r *scratchRoot) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := r.try(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func (r *scratchRoot) try(name string, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--target", strconv.Itoa(r.pid), "--mount", "--", name}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// chroot runs a command inside the root.
func (r *scratchRoot) chroot(t *testing.T, args ...string) string {
	t.Helper()
	return r.run(t, "chroot", append([]string{r.dir}, args...)...)
}

// path is where the host sees p of the root.
func (r *scratchRoot) path(p string) string {
	return filepath.Join("/proc", strconv.Itoa(r.pid), "root", r.dir, p)
}

// owner says "user:group mode" of p inside the root.
func (r *scratchRoot) owner(t *testing.T, p string) string {
	t.Helper()
	return strings.TrimSpace(r.chroot(t, "stat", "-c", "%U:%G %a", p))
}

func (r *scratchRoot) exists(p string) bool {
	_, err := os.Lstat(r.path(p))
	return err == nil
}

// copyAssets makes a repository root holding what the package is built
// from, for a second package version.
func copyAssets(t *testing.T, from string) string {
	t.Helper()
	to := t.TempDir()
	for _, p := range []string{"packaging/gitedge.service", "packaging/gitedge.yaml", "packaging/deb/postinst", "packaging/deb/prerm", "packaging/deb/postrm", "README.md"} {
		src := filepath.Join(from, p)
		fi, err := os.Stat(src)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(to, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, p), b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
	}
	return to
}

// TestDebInstall installs the package into a scratch root with the real
// dpkg, then upgrades, removes and purges it, checking each step: the user,
// the modes of /etc/gitedge and /var/lib/gitedge, the enabled unit, the
// conffile kept across an upgrade, and what purge leaves.
//
// It proves the maintainer scripts on this Debian release (adduser,
// dpkg-statoverride, deb-systemd-helper in a chroot) and that the binary
// runs from where it is installed. It does not boot systemd: the unit
// itself is checked by TestUnitVerify.
func TestDebInstall(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatal("TestDebInstall needs root (mount namespace, overlay, chroot): make test runs as root")
	}
	requireTools(t, "dpkg", "dpkg-deb", "adduser", "deb-systemd-helper", "dpkg-statoverride")
	o := testOptions(t)
	v1 := testDeb(t)
	// Version 2 changes the example config, so dpkg has a conffile to
	// decide about.
	o2 := o
	o2.Root = copyAssets(t, o.Root)
	o2.Version = "v1.2.4"
	ex := filepath.Join(o2.Root, "packaging", "gitedge.yaml")
	b, err := os.ReadFile(ex)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ex, append(b, "## (changed in 1.2.4)\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	v2 := artifact(t, "deb", o2)

	host := map[string]string{}
	for _, p := range []string{"/usr/bin/gitedge", unitPath, configPath, "/etc/gitedge/webhook.secret", "/var/lib/gitedge", "/etc/passwd", "/var/lib/dpkg/status"} {
		host[p] = hostState(p)
	}
	r := newScratchRoot(t)
	if _, err := r.try("chroot", r.dir, "getent", "passwd", "gitedge"); err == nil {
		t.Log("this machine already has a gitedge user: install only checks it is kept")
	}
	// dpkg runs inside the root, as on an installed system: with --root
	// it would resolve the stat override's group in this machine's
	// /etc/group instead of the root's.
	dpkg := func(args ...string) string {
		t.Helper()
		return r.chroot(t, append([]string{"dpkg", "--force-confold"}, args...)...)
	}
	// The packages go to the root's /tmp.
	for i, src := range []*string{&v1, &v2} {
		b, err := os.ReadFile(*src)
		if err != nil {
			t.Fatal(err)
		}
		*src = fmt.Sprintf("/tmp/gitedge-%d.deb", i+1)
		if err := os.WriteFile(r.path(*src), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Install.
	out := dpkg("--install", v1)
	if !strings.Contains(out, "edit /etc/gitedge/gitedge.yaml, then: systemctl start gitedge") {
		t.Errorf("first install does not say what to do next:\n%s", out)
	}
	pw := strings.Split(strings.TrimSpace(r.chroot(t, "getent", "passwd", "gitedge")), ":")
	if len(pw) != 7 || pw[5] != "/var/lib/gitedge" || pw[6] != "/usr/sbin/nologin" {
		t.Errorf("gitedge user: %q, want home /var/lib/gitedge and shell /usr/sbin/nologin", pw)
	} else if uid, _ := strconv.Atoi(pw[2]); uid <= 0 || uid >= 1000 {
		t.Errorf("gitedge user: uid %d is not a system uid", uid)
	}
	if g := strings.TrimSpace(r.chroot(t, "id", "-gn", "gitedge")); g != "gitedge" {
		t.Errorf("gitedge's group: %q", g)
	}
	checkModes := func(step string) {
		t.Helper()
		for p, want := range map[string]string{
			"/etc/gitedge":                        "root:gitedge 750",
			"/etc/gitedge/gitedge.yaml":           "root:root 644",
			"/var/lib/gitedge":                    "gitedge:gitedge 750",
			"/usr/bin/gitedge":                    "root:root 755",
			"/lib/systemd/system/gitedge.service": "root:root 644",
		} {
			if got := r.owner(t, p); got != want {
				t.Errorf("%s: %s is %s, want %s", step, p, got, want)
			}
		}
	}
	checkModes("install")
	// The unit is enabled (not started: there is no systemd here, and the
	// example config names no node).
	wants := "/etc/systemd/system/multi-user.target.wants/gitedge.service"
	if l, err := os.Readlink(r.path(wants)); err != nil || l != unitPath {
		t.Errorf("enablement symlink %s → %q, %v; want → %s", wants, l, err, unitPath)
	}
	if v := r.chroot(t, "/usr/bin/gitedge", "version"); !strings.HasPrefix(v, "gitedge "+testVersion+" ") {
		t.Errorf("installed gitedge version: %q", v)
	}
	if s := r.chroot(t, "dpkg", "--status", "gitedge"); !strings.Contains(s, "Status: install ok installed") ||
		!strings.Contains(s, "Conffiles:\n "+configPath+" ") {
		t.Errorf("dpkg --status:\n%s", s)
	}

	// The administrator configures the node and adds a secret.
	cfg := "node: lb-0\nsource: {url: /srv/edge}\n"
	if err := os.WriteFile(r.path(configPath), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	r.chroot(t, "install", "-m", "0640", "-o", "root", "-g", "gitedge", "/dev/null", "/etc/gitedge/webhook.secret")
	if err := os.WriteFile(r.path("/var/lib/gitedge/last-applied"), []byte("abc\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// Upgrade: the edited config stays, the new example is put beside it,
	// the user, the modes and the enablement stay.
	dpkg("--install", v2)
	if got, err := os.ReadFile(r.path(configPath)); err != nil || string(got) != cfg {
		t.Errorf("upgrade replaced the edited config: %q, %v", got, err)
	}
	if got, err := os.ReadFile(r.path(configPath + ".dpkg-dist")); err != nil || !strings.HasSuffix(string(got), "## (changed in 1.2.4)\n") {
		t.Errorf("upgrade: the new example is not in %s.dpkg-dist: %v", configPath, err)
	}
	checkModes("upgrade")
	if n := strings.Count(r.chroot(t, "getent", "passwd"), "\ngitedge:"); n != 1 {
		t.Errorf("upgrade: %d gitedge users", n)
	}
	if _, err := os.Readlink(r.path(wants)); err != nil {
		t.Errorf("upgrade: the unit is no longer enabled: %v", err)
	}
	if v := r.chroot(t, "/usr/bin/gitedge", "version"); !strings.HasPrefix(v, "gitedge "+testVersion+" ") {
		t.Errorf("upgraded gitedge version: %q", v)
	}

	// Remove: the program and the unit go; config, secrets, state and the
	// user stay.
	dpkg("--remove", "gitedge")
	for _, p := range []string{"/usr/bin/gitedge", unitPath} {
		if r.exists(p) {
			t.Errorf("remove: %s is still there", p)
		}
	}
	for _, p := range []string{configPath, "/etc/gitedge/webhook.secret", "/var/lib/gitedge/last-applied"} {
		if !r.exists(p) {
			t.Errorf("remove: %s is gone", p)
		}
	}

	// Purge: config, state, enablement and the stat override go; the
	// administrator's secret and the user stay.
	dpkg("--purge", "gitedge")
	for _, p := range []string{configPath, configPath + ".dpkg-dist", "/var/lib/gitedge", wants, "/etc/systemd/system/gitedge.service"} {
		if r.exists(p) {
			t.Errorf("purge: %s is still there", p)
		}
	}
	if !r.exists("/etc/gitedge/webhook.secret") {
		t.Error("purge removed the administrator's secret")
	}
	if out, err := r.try("chroot", r.dir, "dpkg-statoverride", "--list", "/etc/gitedge"); err == nil {
		t.Errorf("purge: the stat override is still there: %s", out)
	}
	if _, err := r.try("chroot", r.dir, "getent", "passwd", "gitedge"); err != nil {
		t.Error("purge removed the gitedge user (files elsewhere may belong to it)")
	}
	if s, err := r.try("chroot", r.dir, "dpkg", "--status", "gitedge"); err == nil && !strings.Contains(s, "not-installed") {
		t.Errorf("dpkg still knows gitedge after purge:\n%s", s)
	}

	// Nothing reached this machine.
	for p, before := range host {
		if after := hostState(p); after != before {
			t.Errorf("%s on this machine changed: %s → %s", p, before, after)
		}
	}
}

// hostState describes p on this machine, to show the test left it alone.
func hostState(p string) string {
	fi, err := os.Lstat(p)
	if err != nil {
		return "absent"
	}
	return fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime())
}
