package packaging

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gitedge/gitedge/internal/atomicfile"
)

// ArchiveName is the release archive's file name, without .tar.gz it is
// also the directory the archive unpacks into.
func ArchiveName(version, arch string) string {
	return fmt.Sprintf("gitedge_%s_linux_%s", ArchiveVersion(version), arch)
}

// BuildArchive writes gitedge_<version>_linux_<arch>.tar.gz to o.Out and
// returns its path. It unpacks into one directory holding the binary, the
// unit, the example node config, README.md, LICENSE and docs/ when present.
// Entries are sorted, owned by root and stamped with o.MTime.
func BuildArchive(o Options) (string, error) {
	if err := o.check(); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	base := ArchiveName(o.Version, o.Arch)
	pkgDir := filepath.Join(o.Root, "packaging")
	items := []shipped{
		{o.Binary, "gitedge", 0o755},
		{filepath.Join(pkgDir, "gitedge.service"), "gitedge.service", 0o644},
		{filepath.Join(pkgDir, "gitedge.yaml"), "gitedge.yaml", 0o644},
	}
	dd, err := docs(o.Root)
	if err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	for _, d := range dd {
		items = append(items, shipped{filepath.Join(o.Root, filepath.FromSlash(d)), d, 0o644})
	}
	sort.Slice(items, func(i, j int) bool { return items[i].dst < items[j].dst })
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", fmt.Errorf("archive: %w", err)
	}
	out := filepath.Join(o.Out, base+".tar.gz")
	err = atomicfile.Write(out, 0o644, func(f *os.File) error {
		zw := gzip.NewWriter(f) // no name or time in the header: reproducible
		tw := tar.NewWriter(zw)
		dirs := map[string]bool{}
		for _, it := range items {
			if err := addDirs(tw, dirs, path.Join(base, path.Dir(it.dst)), o); err != nil {
				return err
			}
			if err := addFile(tw, it, path.Join(base, it.dst), o); err != nil {
				return err
			}
		}
		if err := tw.Close(); err != nil {
			return err
		}
		return zw.Close()
	})
	if err != nil {
		return "", fmt.Errorf("archive %s: %w", out, err)
	}
	return out, nil
}

// addDirs writes the entries of dir and its parents not written yet.
func addDirs(tw *tar.Writer, done map[string]bool, dir string, o Options) error {
	if dir == "." || dir == "/" || done[dir] {
		return nil
	}
	if err := addDirs(tw, done, path.Dir(dir), o); err != nil {
		return err
	}
	done[dir] = true
	return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755,
		Uname: "root", Gname: "root", ModTime: o.MTime, Format: tar.FormatPAX})
}

func addFile(tw *tar.Writer, it shipped, name string, o Options) error {
	f, err := os.Open(it.src)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", it.src)
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: fi.Size(), Mode: int64(it.mode),
		Uname: "root", Gname: "root", ModTime: o.MTime, Format: tar.FormatPAX}
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// WriteSums writes dir/SHA256SUMS for every .deb and .tar.gz in dir, in
// the format `sha256sum -c` reads, and returns its path.
func WriteSums(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("SHA256SUMS: %w", err)
	}
	var b strings.Builder
	n := 0
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		if !e.Type().IsRegular() || !(strings.HasSuffix(name, ".deb") || strings.HasSuffix(name, ".tar.gz")) {
			continue
		}
		sum, err := sha256File(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("SHA256SUMS: %w", err)
		}
		fmt.Fprintf(&b, "%x  %s\n", sum, name)
		n++
	}
	if n == 0 {
		return "", fmt.Errorf("SHA256SUMS: no .deb or .tar.gz in %s", dir)
	}
	out := filepath.Join(dir, "SHA256SUMS")
	if err := atomicfile.Write(out, 0o644, func(f *os.File) error {
		_, err := f.WriteString(b.String())
		return err
	}); err != nil {
		return "", fmt.Errorf("SHA256SUMS: %w", err)
	}
	return out, nil
}

func sha256File(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}
