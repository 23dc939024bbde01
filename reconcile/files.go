package reconcile

import (
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/internal/memfile"
)

// Files is the set of YAML files a Load consumed, by slash-separated path
// relative to the routes directory: what the last applied record keeps. A
// file reached through a symbolic link is held under the link's path, with
// the content of its target. Files is itself a read-only fs.FS, so a
// record loads again with Load(files).
type Files map[string][]byte

var (
	_ fs.ReadFileFS = Files(nil)
	_ fs.ReadDirFS  = Files(nil)
	_ fs.StatFS     = Files(nil)
)

// Size is the total of the files' bytes.
func (f Files) Size() int64 {
	var n int64
	for _, b := range f {
		n += int64(len(b))
	}
	return n
}

// Open implements fs.FS.
func (f Files) Open(name string) (fs.File, error) {
	info, err := f.Stat(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	if info.IsDir() {
		entries, _ := f.ReadDir(name)
		return memfile.OpenDir(info.(memfile.Info), entries), nil
	}
	return memfile.OpenFile(info.(memfile.Info), f[name]), nil
}

// ReadFile implements fs.ReadFileFS.
func (f Files) ReadFile(name string) ([]byte, error) {
	data, ok := f[name]
	if !ok || !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return slices.Clone(data), nil
}

// Stat implements fs.StatFS.
func (f Files) Stat(name string) (fs.FileInfo, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrInvalid}
	}
	if data, ok := f[name]; ok {
		return memfile.Info{Base: path.Base(name), Len: int64(len(data))}, nil
	}
	if name == "." {
		return memfile.Info{Base: ".", Dir: true}, nil
	}
	for p := range f {
		if strings.HasPrefix(p, name+"/") {
			return memfile.Info{Base: path.Base(name), Dir: true}, nil
		}
	}
	return nil, &fs.PathError{Op: "stat", Path: name, Err: fs.ErrNotExist}
}

// ReadDir implements fs.ReadDirFS.
func (f Files) ReadDir(name string) ([]fs.DirEntry, error) {
	if info, err := f.Stat(name); err != nil || !info.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	prefix := ""
	if name != "." {
		prefix = name + "/"
	}
	seen := map[string]fs.DirEntry{}
	for p, data := range f {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok || rest == "" {
			continue
		}
		if dir, _, isDir := strings.Cut(rest, "/"); isDir {
			seen[dir] = fs.FileInfoToDirEntry(memfile.Info{Base: dir, Dir: true})
		} else {
			seen[rest] = fs.FileInfoToDirEntry(memfile.Info{Base: rest, Len: int64(len(data))})
		}
	}
	out := make([]fs.DirEntry, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}
