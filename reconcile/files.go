package reconcile

import (
	"bytes"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
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
		return &filesDir{info: info.(fileInfo), entries: entries}, nil
	}
	return &filesFile{info: info.(fileInfo), r: bytes.NewReader(f[name])}, nil
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
		return fileInfo{name: path.Base(name), size: int64(len(data))}, nil
	}
	if name == "." {
		return fileInfo{name: ".", dir: true}, nil
	}
	for p := range f {
		if strings.HasPrefix(p, name+"/") {
			return fileInfo{name: path.Base(name), dir: true}, nil
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
			seen[dir] = fs.FileInfoToDirEntry(fileInfo{name: dir, dir: true})
		} else {
			seen[rest] = fs.FileInfoToDirEntry(fileInfo{name: rest, size: int64(len(data))})
		}
	}
	out := make([]fs.DirEntry, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

type fileInfo struct {
	name string
	size int64
	dir  bool
}

func (i fileInfo) Name() string { return i.name }
func (i fileInfo) Size() int64  { return i.size }
func (i fileInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i fileInfo) ModTime() time.Time { return time.Time{} }
func (i fileInfo) IsDir() bool        { return i.dir }
func (i fileInfo) Sys() any           { return nil }

type filesFile struct {
	info fileInfo
	r    *bytes.Reader
}

func (f *filesFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *filesFile) Read(b []byte) (int, error) { return f.r.Read(b) }
func (f *filesFile) Close() error               { return nil }

type filesDir struct {
	info    fileInfo
	entries []fs.DirEntry
	off     int
}

func (d *filesDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *filesDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: fs.ErrInvalid}
}
func (d *filesDir) Close() error { return nil }
func (d *filesDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return rest[:n], nil
}
