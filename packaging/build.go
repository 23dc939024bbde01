package packaging

import (
	"debug/elf"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options says what to package and where.
type Options struct {
	// Version is the Makefile's VERSION (`git describe` output).
	Version string
	// Arch is the Go architecture of Binary: amd64 or arm64.
	Arch string
	// Binary is the gitedge executable for linux/Arch, statically linked.
	Binary string
	// Root is the repository: packaging/ holds the unit, the example
	// config and the maintainer scripts; README.md, docs/ and LICENSE are
	// shipped when present.
	Root string
	// Out is the directory the artifacts are written to (created).
	Out string
	// MTime stamps every file in the artifacts (SOURCE_DATE_EPOCH), so two
	// builds of one commit differ only where the binaries do.
	MTime time.Time
	// Maintainer is the package's Maintainer field; DefaultMaintainer when
	// empty.
	Maintainer string
}

// DefaultMaintainer is the Maintainer of the packages `make deb` builds.
const DefaultMaintainer = "gitedge developers <gitedge@users.noreply.invalid>"

// arches maps the supported Go architectures to Debian's names and to the
// ELF machine of their binaries.
var arches = map[string]struct {
	debian  string
	machine elf.Machine
}{
	"amd64": {"amd64", elf.EM_X86_64},
	"arm64": {"arm64", elf.EM_AARCH64},
}

// Paths inside the package and archives; the unit and the maintainer
// scripts name the same ones.
const (
	binPath    = "/usr/bin/gitedge"
	unitPath   = "/lib/systemd/system/gitedge.service"
	configPath = "/etc/gitedge/gitedge.yaml"
	docDir     = "/usr/share/doc/gitedge"
)

func (o Options) check() error {
	var errs []error
	if o.Version == "" {
		errs = append(errs, errors.New("version: missing"))
	}
	if _, ok := arches[o.Arch]; !ok {
		errs = append(errs, fmt.Errorf("arch %q: expected one of %s", o.Arch, strings.Join(slices.Sorted(maps.Keys(arches)), ", ")))
	} else if err := checkBinary(o.Binary, o.Arch); err != nil {
		errs = append(errs, err)
	}
	if o.Out == "" {
		errs = append(errs, errors.New("out: missing: the directory to write to"))
	}
	return errors.Join(errs...)
}

// checkBinary refuses what would make a broken package: a binary for
// another architecture, or one linked against the build machine's libc
// (the package declares no libc dependency; build with CGO_ENABLED=0).
func checkBinary(path, arch string) error {
	if path == "" {
		return errors.New("binary: missing: the gitedge executable to package")
	}
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("binary %s: %w", path, err)
	}
	defer f.Close()
	if want := arches[arch].machine; f.Machine != want {
		return fmt.Errorf("binary %s is for %v, not %s (%v): build it with GOARCH=%s", path, f.Machine, arch, want, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			libs, _ := f.ImportedLibraries()
			return fmt.Errorf("binary %s is dynamically linked (%s): build it with CGO_ENABLED=0, as make deb does", path, strings.Join(libs, ", "))
		}
	}
	return nil
}

// shipped is one file of the artifacts: its source, where it goes, its
// mode.
type shipped struct {
	src, dst string
	mode     os.FileMode
}

// docs are README.md, LICENSE* and everything under docs/ that exist in
// root, with their paths relative to root.
func docs(root string) ([]string, error) {
	var out []string
	for _, pattern := range []string{"README.md", "LICENSE*"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			return nil, err
		}
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				out = append(out, filepath.Base(p))
			}
		}
	}
	dir := filepath.Join(root, "docs")
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		sort.Strings(out)
		return out, nil
	}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("docs: %w", err)
	}
	sort.Strings(out)
	return out, nil
}
