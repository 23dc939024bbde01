// Package atomicfile replaces files whole: the new content goes to a
// temporary file beside the old one and is renamed over it once written,
// so a reader, or another build writing the same file at the same time,
// never sees half a file, and a failed write leaves the old one as it was.
// Write and WriteFile do not sync to disk; WriteFileSync does, for state
// that must survive a power cut (reconcile's last-state file).
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with what write puts in the file it is given, with
// permissions perm. On any error the temporary file is removed and path is
// left as it was.
func Write(path string, perm os.FileMode, write func(*os.File) error) error {
	return replace(path, perm, false, write)
}

// WriteFile replaces path with data, with permissions perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return replace(path, perm, false, writeData(data))
}

// WriteFileSync is WriteFile made durable: the new file is synced before
// the rename, and its directory after it, so that once it returns a power
// cut leaves the new content, and before it the old.
func WriteFileSync(path string, data []byte, perm os.FileMode) error {
	return replace(path, perm, true, writeData(data))
}

func writeData(data []byte) func(*os.File) error {
	return func(f *os.File) error {
		_, err := f.Write(data)
		return err
	}
}

func replace(path string, perm os.FileMode, sync bool, write func(*os.File) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
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
	if sync {
		if err := f.Sync(); err != nil {
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if !sync {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
