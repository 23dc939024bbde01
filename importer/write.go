package importer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/internal/atomicfile"
)

// ErrNotEmpty is returned by WriteDir for a non-empty directory without force.
var ErrNotEmpty = errors.New("not empty")

// WriteDir writes the files under dir, creating it. A directory that
// holds anything already is refused unless force is set; with force, the
// YAML files the import does not produce are removed (gitedge would load
// them beside the new ones), and everything else (.git, a README) stays.
// It returns the paths it removed, relative to dir.
func WriteDir(dir string, files map[string][]byte, force bool) (removed []string, err error) {
	empty, err := isEmptyDir(dir)
	if err != nil {
		return nil, err
	}
	if !empty && !force {
		return nil, fmt.Errorf("%s: %w: refusing to overwrite it (use --force to replace its YAML files)", dir, ErrNotEmpty)
	}
	if !empty {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			if d.IsDir() {
				if rel != "." && strings.HasPrefix(d.Name(), ".") {
					return filepath.SkipDir
				}
				return nil
			}
			slash := filepath.ToSlash(rel)
			if (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) && files[slash] == nil {
				if err := os.Remove(p); err != nil {
					return err
				}
				removed = append(removed, slash)
			}
			return nil
		})
		if err != nil {
			return removed, err
		}
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := filepath.Join(dir, filepath.FromSlash(n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return removed, err
		}
		if err := atomicfile.WriteFile(p, files[n], 0o644); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// isEmptyDir reports whether dir is missing or holds nothing.
func isEmptyDir(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return true, nil
	case err != nil:
		return false, err
	}
	return len(entries) == 0, nil
}

// CheckOut reports early whether WriteDir would refuse dir.
func CheckOut(dir string, force bool) error {
	empty, err := isEmptyDir(dir)
	if err != nil {
		return err
	}
	if !empty && !force {
		return fmt.Errorf("%s: %w: refusing to overwrite it (use --force to replace its YAML files)", dir, ErrNotEmpty)
	}
	return nil
}
