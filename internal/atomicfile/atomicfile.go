// Package atomicfile replaces files whole: the new content goes to a
// temporary file beside the old one and is renamed over it once written,
// so a reader, or another build writing the same file at the same time,
// never sees half a file, and a failed write leaves the old one as it was.
// It does not sync to disk: for state that must survive a power cut, see
// reconcile's last-state file.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with what write puts in the file it is given, with
// permissions perm. On any error the temporary file is removed and path is
// left as it was.
func Write(path string, perm os.FileMode, write func(*os.File) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := write(f); err != nil {
		return err
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// WriteFile replaces path with data, with permissions perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return Write(path, perm, func(f *os.File) error {
		_, err := f.Write(data)
		return err
	})
}
