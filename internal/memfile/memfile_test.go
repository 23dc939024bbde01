package memfile

import (
	"io"
	"io/fs"
	"testing"
	"testing/fstest"
)

// tree is the smallest fs.FS built from the package's parts, checked by
// fstest: a file, a directory, and the root.
type tree struct{}

func (tree) Open(name string) (fs.File, error) {
	switch name {
	case ".":
		return OpenDir(Info{Base: ".", Dir: true}, []fs.DirEntry{
			fs.FileInfoToDirEntry(Info{Base: "a.yaml", Len: 3}),
			fs.FileInfoToDirEntry(Info{Base: "d", Dir: true}),
		}), nil
	case "a.yaml":
		return OpenFile(Info{Base: "a.yaml", Len: 3}, []byte("a:\n")), nil
	case "d":
		return OpenDir(Info{Base: "d", Dir: true}, nil), nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func TestTree(t *testing.T) {
	if err := fstest.TestFS(tree{}, "a.yaml", "d"); err != nil {
		t.Fatal(err)
	}
}

func TestModes(t *testing.T) {
	for _, tc := range []struct {
		info Info
		want fs.FileMode
	}{
		{Info{Base: "f"}, 0o444},
		{Info{Base: "d", Dir: true}, fs.ModeDir | 0o555},
		{Info{Base: "l", Link: true}, fs.ModeSymlink | 0o777},
	} {
		if got := tc.info.Mode(); got != tc.want {
			t.Errorf("%s: mode %v, want %v", tc.info.Base, got, tc.want)
		}
	}
}

func TestReadDirInSteps(t *testing.T) {
	entries := []fs.DirEntry{fs.FileInfoToDirEntry(Info{Base: "a"}), fs.FileInfoToDirEntry(Info{Base: "b"})}
	d := OpenDir(Info{Base: ".", Dir: true}, entries)
	first, err := d.ReadDir(1)
	if err != nil || len(first) != 1 || first[0].Name() != "a" {
		t.Fatalf("first step: %v %v", first, err)
	}
	first[0] = nil // the caller's copy: the directory's list is not changed
	rest, err := d.ReadDir(5)
	if err != nil || len(rest) != 1 || rest[0].Name() != "b" || entries[0] == nil {
		t.Fatalf("second step: %v %v", rest, err)
	}
	if _, err := d.ReadDir(1); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}
