package reconcile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// repoReader reads the YAML files of a routes directory from any fs.FS:
// os.DirFS for `validate` and `plan`, a git tree for `run`. The same rules
// hold for both:
//
//   - names starting with "." are skipped, as are files not named *.yaml
//     or *.yml;
//   - a symbolic link (an entry of type fs.ModeSymlink, read with
//     fs.ReadLink) is resolved here, component by component, relative to
//     the link's directory: a link whose target is absolute, leaves the
//     directory, dangles or loops is an error naming the link, and nothing
//     outside the directory is ever opened (so no message can quote it);
//     a link to a file inside is read under the link's name, a link to a
//     directory inside is walked under the link's name;
//   - the limits of limits.go are checked, a file's size before it is
//     read.
type repoReader struct {
	fsys  fs.FS
	l     *loader
	files Files
	order []string // the files' names in walk order
	total int64
	full  bool // a repository-wide limit was passed: read nothing more
}

func isYAML(name string) bool {
	ext := path.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// walk reads the tree at dir (a path free of links) and files it under
// shown, its path as the repository presents it. links are the links
// followed to get here, to refuse a directory link that leads back into a
// directory being walked.
func (r *repoReader) walk(dir, shown string, links []string) {
	rel := func(p string) string {
		if p == dir {
			return shown
		}
		return path.Join(shown, strings.TrimPrefix(p, dir+"/"))
	}
	if dir == "." {
		rel = func(p string) string { return path.Join(shown, p) }
	}
	_ = fs.WalkDir(r.fsys, dir, func(p string, de fs.DirEntry, err error) error {
		if r.full {
			return fs.SkipAll
		}
		name := rel(p)
		if err != nil {
			r.l.failFile(name, 0, "cannot read: %v", pathErr(err))
			return nil
		}
		if p != dir && strings.HasPrefix(de.Name(), ".") {
			if de.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case de.IsDir():
			return nil
		case de.Type()&fs.ModeSymlink != 0:
			r.link(p, name, links)
		case de.Type().IsRegular() && isYAML(name):
			info, err := de.Info()
			if err != nil {
				r.l.failFile(name, 0, "cannot read: %v", pathErr(err))
				return nil
			}
			r.read(p, name, info.Size())
		}
		return nil
	})
}

// link follows the symbolic link at p (shown as name).
func (r *repoReader) link(p, name string, links []string) {
	target, err := r.resolve(p)
	if err != nil {
		r.l.failFile(name, 0, "%v", err)
		return
	}
	info, err := fs.Lstat(r.fsys, target)
	if err != nil {
		r.l.failFile(name, 0, "cannot read the target of the symbolic link: %v", pathErr(err))
		return
	}
	switch {
	case info.IsDir():
		chain := append(slices.Clone(links), p)
		for _, q := range chain {
			if within(q, target) {
				r.l.failFile(name, 0, "symbolic link to %q leads back into a directory it is in: a loop", readLinkOr(r.fsys, p))
				return
			}
		}
		if len(links) >= maxLinkedDirs {
			r.l.failFile(name, 0, "directory links nested more than %d deep", maxLinkedDirs)
			return
		}
		r.walk(target, name, chain)
	case info.Mode().IsRegular() && isYAML(name):
		r.read(target, name, info.Size())
	}
}

// within reports whether p is dir or below it.
func within(p, dir string) bool {
	return dir == "." || p == dir || strings.HasPrefix(p, dir+"/")
}

func readLinkOr(fsys fs.FS, p string) string {
	t, err := fs.ReadLink(fsys, p)
	if err != nil {
		return "?"
	}
	return t
}

// linkError is why a symbolic link cannot be followed.
type linkError struct {
	target string // what the link says
	hop    string // the link in a chain that failed, when not the first
	why    string
}

func (e *linkError) Error() string {
	msg := fmt.Sprintf("symbolic link to %q %s", e.target, e.why)
	if e.hop != "" {
		msg = fmt.Sprintf("symbolic link to %q: through %s, %s", e.target, e.hop, e.why)
	}
	return msg
}

// resolve returns the path, free of links and inside the directory, that
// the link at p leads to. It never opens anything: it reads links and
// stats paths inside the directory only.
func (r *repoReader) resolve(p string) (string, error) {
	first, err := fs.ReadLink(r.fsys, p)
	if err != nil {
		return "", fmt.Errorf("cannot read the symbolic link: %v", pathErr(err))
	}
	e := &linkError{target: first}
	hops := 0
	// pending is what is left to resolve, relative to the directory root.
	cur, pending := ".", ""
	link, target := p, first
	for {
		hops++
		if hops > maxLinkHops {
			e.hop, e.why = "", fmt.Sprintf("goes through more than %d links: a loop", maxLinkHops)
			return "", e
		}
		if link != p {
			e.hop = fmt.Sprintf("%s → %q", link, target)
		}
		if path.IsAbs(target) || strings.HasPrefix(target, "/") {
			e.why = "is absolute: a link must stay inside the repository (use a relative path to a file inside it)"
			return "", e
		}
		next := path.Join(path.Dir(link), target, pending)
		if next == ".." || strings.HasPrefix(next, "../") {
			e.why = "points outside the repository: a link must stay inside it (copy the file in, or link to one inside)"
			return "", e
		}
		// Walk next from the root, one component at a time, so that a
		// link in the middle ("dir/file" where dir is a link) is resolved
		// here too and never followed by the file system.
		cur, pending, link, target = ".", "", "", ""
		parts := strings.Split(next, "/")
		for i, part := range parts {
			if part == "." || part == "" {
				continue
			}
			step := path.Join(cur, part)
			info, err := fs.Lstat(r.fsys, step)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					e.why = fmt.Sprintf("is dangling: %s does not exist in the repository", next)
					return "", e
				}
				return "", fmt.Errorf("cannot resolve the symbolic link: %v", pathErr(err))
			}
			if info.Mode()&fs.ModeSymlink != 0 {
				t, err := fs.ReadLink(r.fsys, step)
				if err != nil {
					return "", fmt.Errorf("cannot read the symbolic link %s: %v", step, pathErr(err))
				}
				link, target, pending = step, t, strings.Join(parts[i+1:], "/")
				break
			}
			if i < len(parts)-1 && !info.IsDir() {
				e.why = fmt.Sprintf("is dangling: %s is not a directory", step)
				return "", e
			}
			cur = step
		}
		if link == "" {
			return cur, nil
		}
	}
}

// read reads one YAML file at p (free of links) as name, within limits.
func (r *repoReader) read(p, name string, size int64) {
	lim := r.l.lim
	switch {
	case len(r.files) >= lim.files:
		r.l.failFile(name, 0, "more than %d YAML files: the repository is refused", lim.files)
		r.full = true
		return
	case size > int64(lim.fileBytes):
		r.l.failFile(name, 0, "%d bytes: a file may hold at most %s (split it)", size, mib(lim.fileBytes))
		return
	case r.total+size > int64(lim.totalBytes):
		r.l.failFile(name, 0, "the YAML files pass %s together: the repository is refused", mib(lim.totalBytes))
		r.full = true
		return
	}
	f, err := r.fsys.Open(p)
	if err != nil {
		r.l.failFile(name, 0, "cannot read: %v", pathErr(err))
		return
	}
	defer f.Close()
	// The size said may be wrong (a file growing meanwhile): never read
	// past the limit whatever it said.
	data, err := io.ReadAll(io.LimitReader(f, int64(lim.fileBytes)+1))
	if err != nil {
		r.l.failFile(name, 0, "cannot read: %v", pathErr(err))
		return
	}
	if len(data) > lim.fileBytes {
		r.l.failFile(name, 0, "more than %s: a file may hold at most %s (split it)", mib(lim.fileBytes), mib(lim.fileBytes))
		return
	}
	r.total += int64(len(data))
	if _, dup := r.files[name]; !dup {
		r.order = append(r.order, name)
	}
	r.files[name] = data
}

func mib(n int) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// pathErr drops the path from an *fs.PathError: the caller names the file
// already, and a path joined by the file system may be an absolute one.
func pathErr(err error) error {
	if pe, ok := errors.AsType[*fs.PathError](err); ok {
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}
