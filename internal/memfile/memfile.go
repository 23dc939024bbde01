// Package memfile holds what a read-only file tree in memory hands out
// (gitsource's commits, reconcile's recorded files): the fs.FileInfo of a
// file, directory or symbolic link, and open files and directories.
package memfile

import (
	"bytes"
	"io"
	"io/fs"
	"slices"
	"time"
)

// Info describes one entry: read-only modes, no modification time.
type Info struct {
	Base string // the name's last element
	Len  int64
	Dir  bool
	Link bool
}

func (i Info) Name() string { return i.Base }
func (i Info) Size() int64  { return i.Len }
func (i Info) Mode() fs.FileMode {
	switch {
	case i.Dir:
		return fs.ModeDir | 0o555
	case i.Link:
		return fs.ModeSymlink | 0o777
	}
	return 0o444
}
func (i Info) ModTime() time.Time { return time.Time{} }
func (i Info) IsDir() bool        { return i.Dir }
func (i Info) Sys() any           { return nil }

// OpenFile opens a file whose content is data; data is not changed.
func OpenFile(info Info, data []byte) fs.File {
	return &file{info: info, r: bytes.NewReader(data)}
}

// OpenDir opens a directory listing entries, sorted by name; entries is
// not changed (ReadDir hands out copies).
func OpenDir(info Info, entries []fs.DirEntry) fs.ReadDirFile {
	return &dir{info: info, entries: entries}
}

type file struct {
	info Info
	r    *bytes.Reader
}

func (f *file) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *file) Read(b []byte) (int, error) { return f.r.Read(b) }
func (f *file) Close() error               { return nil }

type dir struct {
	info    Info
	entries []fs.DirEntry
	off     int
}

func (d *dir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.Base, Err: fs.ErrInvalid}
}
func (d *dir) Close() error { return nil }

// ReadDir implements fs.ReadDirFile.
func (d *dir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return slices.Clone(rest), nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.off += n
	return slices.Clone(rest[:n]), nil
}
