package gitsource

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/gitedge/gitedge/internal/memfile"
)

// MemFS is a read-only file tree held in memory: the files of one commit
// (or one snapshot of a directory), handed to the loader without a working
// tree that could be half-written.
//
// Symbolic links are kept as links, one rule for every consumer: ReadDir,
// Lstat and the entries fs.WalkDir visits report them as fs.ModeSymlink
// (WalkDir does not descend into them), and ReadLink returns the target
// text as committed. Open, ReadFile, Stat and ReadDir follow a link whose
// target stays inside this tree; one that is absolute or climbs out of it
// fails with an error naming the link (ErrLinkOutside), so no consumer can
// read outside content by accident, and the content behind it is never
// read. "Inside the repository" means inside this tree: with source.path
// set, that is the sub-directory, not the whole repository.
type MemFS struct {
	files map[string][]byte // slash-separated paths relative to the root
	links map[string]string // link path → target text

	once sync.Once
	dirs map[string][]fs.DirEntry // directory → sorted entries, built on first use
}

var (
	_ fs.ReadFileFS = (*MemFS)(nil)
	_ fs.ReadDirFS  = (*MemFS)(nil)
	_ fs.StatFS     = (*MemFS)(nil)
	_ fs.ReadLinkFS = (*MemFS)(nil)
)

// Errors about symbolic links, wrapped in the *fs.PathError of the call.
var (
	// ErrLinkOutside: the link's target is absolute or leaves the tree.
	ErrLinkOutside = errors.New("points outside the repository")
	// ErrLinkLoop: following links took more than maxLinkHops steps.
	ErrLinkLoop = errors.New("too many levels of symbolic links")
)

// maxLinkHops bounds link resolution, as Linux's 40.
const maxLinkHops = 40

// NewMemFS returns a tree of files and symbolic links (path → target
// text). Paths are slash-separated, relative to the root, without "./".
// The maps are kept, not copied: the caller must not change them after.
func NewMemFS(files map[string][]byte, links map[string]string) *MemFS {
	if files == nil {
		files = map[string][]byte{}
	}
	if links == nil {
		links = map[string]string{}
	}
	return &MemFS{files: files, links: links}
}

// Len is the number of files (links not counted).
func (m *MemFS) Len() int { return len(m.files) }

// Links is the number of symbolic links.
func (m *MemFS) Links() int { return len(m.links) }

func (m *MemFS) index() {
	m.once.Do(func() {
		seen := map[string]map[string]fs.DirEntry{".": {}}
		add := func(p string, info memfile.Info) {
			for {
				dir, base := path.Split(p)
				dir = strings.TrimSuffix(dir, "/")
				if dir == "" {
					dir = "."
				}
				entries := seen[dir]
				newDir := entries == nil
				if newDir {
					entries = map[string]fs.DirEntry{}
					seen[dir] = entries
				}
				info.Base = base
				entries[base] = fs.FileInfoToDirEntry(info)
				if !newDir || dir == "." {
					return
				}
				p, info = dir, memfile.Info{Dir: true}
			}
		}
		for p, data := range m.files {
			add(p, memfile.Info{Len: int64(len(data))})
		}
		for p, target := range m.links {
			add(p, memfile.Info{Len: int64(len(target)), Link: true})
		}
		m.dirs = make(map[string][]fs.DirEntry, len(seen))
		for dir, entries := range seen {
			list := make([]fs.DirEntry, 0, len(entries))
			for _, e := range entries {
				list = append(list, e)
			}
			slices.SortFunc(list, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
			m.dirs[dir] = list
		}
	})
}

// step is one path element still to resolve, with the link whose target
// it came from ("" for the name asked for).
type step struct{ elem, from string }

// resolve returns the path that name designates once the links in it are
// followed (the last element only when followLast), with the last link
// followed (for errors about a dangling target). It fails, naming the
// link, when a target is absolute or empty, climbs above the root, or
// when links loop.
func (m *MemFS) resolve(op, name string, followLast bool) (resolved, lastLink string, err error) {
	if !fs.ValidPath(name) {
		return "", "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return ".", "", nil
	}
	linkErr := func(link string, cause error) error {
		target := m.links[link]
		what := "symbolic link to " + target
		if link != name {
			what = "symbolic link " + link + " -> " + target
		}
		return &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%s %w", what, cause)}
	}
	var done []string // resolved elements: directories, then the result
	todo := make([]step, 0, strings.Count(name, "/")+1)
	for e := range strings.SplitSeq(name, "/") {
		todo = append(todo, step{elem: e})
	}
	hops := 0
	for len(todo) > 0 {
		s := todo[0]
		todo = todo[1:]
		switch s.elem {
		case "", ".":
			continue
		case "..":
			if len(done) == 0 {
				return "", "", linkErr(s.from, ErrLinkOutside)
			}
			done = done[:len(done)-1]
			continue
		}
		done = append(done, s.elem)
		p := strings.Join(done, "/")
		target, isLink := m.links[p]
		if !isLink || (len(todo) == 0 && !followLast) {
			continue
		}
		if hops++; hops > maxLinkHops {
			return "", "", linkErr(p, ErrLinkLoop)
		}
		if target == "" || strings.HasPrefix(target, "/") {
			return "", "", linkErr(p, ErrLinkOutside)
		}
		lastLink = p
		done = done[:len(done)-1]
		expanded := make([]step, 0, strings.Count(target, "/")+1+len(todo))
		for e := range strings.SplitSeq(target, "/") {
			expanded = append(expanded, step{elem: e, from: p})
		}
		todo = append(expanded, todo...)
	}
	if len(done) == 0 {
		return ".", lastLink, nil
	}
	return strings.Join(done, "/"), lastLink, nil
}

// notExist is the error for a path that resolved to nothing, naming the
// link that led there, if any.
func (m *MemFS) notExist(op, name, lastLink string) error {
	if lastLink == "" {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	what := "symbolic link to " + m.links[lastLink]
	if lastLink != name {
		what = "symbolic link " + lastLink + " -> " + m.links[lastLink]
	}
	return &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("%s: target %w", what, fs.ErrNotExist)}
}

// Open implements fs.FS; it follows links (see MemFS).
func (m *MemFS) Open(name string) (fs.File, error) {
	p, via, err := m.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	if data, ok := m.files[p]; ok {
		return memfile.OpenFile(memfile.Info{Base: path.Base(name), Len: int64(len(data))}, data), nil
	}
	m.index()
	if entries, ok := m.dirs[p]; ok {
		return memfile.OpenDir(memfile.Info{Base: path.Base(name), Dir: true}, entries), nil
	}
	return nil, m.notExist("open", name, via)
}

// ReadFile implements fs.ReadFileFS; it follows links (see MemFS).
func (m *MemFS) ReadFile(name string) ([]byte, error) {
	p, via, err := m.resolve("read", name, true)
	if err != nil {
		return nil, err
	}
	data, ok := m.files[p]
	if !ok {
		m.index()
		if _, isDir := m.dirs[p]; isDir {
			return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
		}
		return nil, m.notExist("read", name, via)
	}
	return slices.Clone(data), nil
}

// ReadDir implements fs.ReadDirFS; it follows links in name (see MemFS).
// Links among the entries are reported as such, not followed.
func (m *MemFS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, via, err := m.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	m.index()
	entries, ok := m.dirs[p]
	if !ok {
		if _, isFile := m.files[p]; isFile {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
		}
		return nil, m.notExist("readdir", name, via)
	}
	return slices.Clone(entries), nil
}

// Stat implements fs.StatFS; it follows links (see MemFS).
func (m *MemFS) Stat(name string) (fs.FileInfo, error) {
	return m.stat("stat", name, true)
}

// Lstat implements fs.ReadLinkFS: a link itself is reported, with
// fs.ModeSymlink, not followed.
func (m *MemFS) Lstat(name string) (fs.FileInfo, error) {
	return m.stat("lstat", name, false)
}

func (m *MemFS) stat(op, name string, follow bool) (fs.FileInfo, error) {
	p, via, err := m.resolve(op, name, follow)
	if err != nil {
		return nil, err
	}
	base := path.Base(name)
	if data, ok := m.files[p]; ok {
		return memfile.Info{Base: base, Len: int64(len(data))}, nil
	}
	if target, ok := m.links[p]; ok { // only when not following
		return memfile.Info{Base: base, Len: int64(len(target)), Link: true}, nil
	}
	m.index()
	if _, ok := m.dirs[p]; ok {
		return memfile.Info{Base: base, Dir: true}, nil
	}
	return nil, m.notExist(op, name, via)
}

// ReadLink implements fs.ReadLinkFS: the target of the link name, as
// committed, whatever it points at. Links in the directories leading to
// name are followed.
func (m *MemFS) ReadLink(name string) (string, error) {
	p, via, err := m.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	if target, ok := m.links[p]; ok {
		return target, nil
	}
	if _, ok := m.files[p]; ok {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: errors.New("not a symbolic link")}
	}
	m.index()
	if _, ok := m.dirs[p]; ok {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: errors.New("not a symbolic link")}
	}
	return "", m.notExist("readlink", name, via)
}
