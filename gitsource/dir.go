package gitsource

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DirConfig is a local directory used as the source during development
// (`gitedge run --source ./dir`).
type DirConfig struct {
	// Dir is the directory holding the YAML. Required.
	Dir string
	// Debounce is how long the directory must stay quiet after a change
	// before it is read; default 200ms. An editor's write-rename-chmod
	// sequence is one change.
	Debounce time.Duration
	// MaxWait bounds how long a stream of changes can delay a read;
	// default 2s.
	MaxWait time.Duration
	// MaxTreeBytes bounds the bytes read; default 256 MiB.
	MaxTreeBytes int64
	// NoWatch reads the directory only at start and when triggered
	// (SIGHUP), without fsnotify: Run then only waits for its context.
	NoWatch bool
}

// Dir is a local directory as a source: Next hands over the files as they
// are on disk, with the SHA-256 of their paths and contents as the
// "commit". Run watches the directory with fsnotify and must be running
// for changes to be seen (unless NoWatch: then only triggers are). Next is for one caller; Trigger is safe from any
// goroutine.
type Dir struct {
	cfg     DirConfig
	log     *slog.Logger
	m       *sourceMetrics
	queue   *Queue
	watcher *fsnotify.Watcher
	running atomic.Bool

	// Owned by the Next caller.
	started bool
	last    string
}

// NewDir starts watching cfg.Dir (and every sub-directory) so that no
// change made after NewDir returns is missed; Run processes the events.
func NewDir(cfg DirConfig, opts Options) (*Dir, error) {
	cfg.Debounce = cmp.Or(cfg.Debounce, 200*time.Millisecond)
	cfg.MaxWait = cmp.Or(cfg.MaxWait, 2*time.Second)
	cfg.MaxTreeBytes = cmp.Or(cfg.MaxTreeBytes, 256<<20)
	if cfg.Dir == "" {
		return nil, errors.New("gitsource: source directory: missing")
	}
	abs, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("gitsource: source directory: %w", err)
	}
	if st, err := os.Stat(abs); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("gitsource: source directory %s: not a directory (%v)", cfg.Dir, err)
	}
	// The directory itself may be reached through a link (a deploy
	// symlink): walk what it points at. Links inside it are another matter
	// (see readDir).
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("gitsource: source directory %s: not a directory (%v)", cfg.Dir, err)
	}
	cfg.Dir = abs
	d := &Dir{cfg: cfg, log: opts.Logger, m: newSourceMetrics(opts.Registry), queue: NewQueue(opts.Registry)}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	d.log = d.log.With("subsystem", "gitsource", "source", abs)
	if cfg.NoWatch {
		return d, nil
	}
	if d.watcher, err = fsnotify.NewWatcher(); err != nil {
		return nil, fmt.Errorf("gitsource: fsnotify: %w", err)
	}
	if err := d.watchTree(abs); err != nil {
		d.watcher.Close()
		return nil, err
	}
	return d, nil
}

// watchTree adds a watch on dir and every directory below it (fsnotify is
// not recursive), skipping names that start with ".".
func (d *Dir) watchTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, fs.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		}
		if !e.IsDir() {
			return nil
		}
		if p != dir && strings.HasPrefix(e.Name(), ".") {
			return filepath.SkipDir
		}
		if err := d.watcher.Add(p); err != nil {
			return fmt.Errorf("gitsource: watching %s: %w", p, err)
		}
		return nil
	})
}

// Close stops watching the directory, for a Dir whose Run never runs
// (Run stops watching by itself when its context ends).
func (d *Dir) Close() error {
	if d.watcher == nil {
		return nil
	}
	return d.watcher.Close()
}

// Trigger asks for a read of the directory.
func (d *Dir) Trigger(t Trigger) { d.queue.Poke(t) }

// Run turns file events into one trigger per quiet period until ctx ends,
// then stops watching. It returns nil on cancellation. Call it once.
func (d *Dir) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return errors.New("gitsource: Dir.Run called twice")
	}
	if d.watcher == nil { // NoWatch
		<-ctx.Done()
		return nil
	}
	defer d.watcher.Close()
	var (
		quiet   = time.NewTimer(time.Hour)
		first   time.Time // first event of the pending burst
		pending int
		lastEv  string
	)
	quiet.Stop()
	defer quiet.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-d.watcher.Errors:
			if !ok {
				return nil
			}
			// An overflow loses events: read the directory anyway.
			d.log.Warn("fsnotify", "err", err)
			pending++
			if first.IsZero() {
				first = time.Now()
			}
			quiet.Reset(d.cfg.Debounce)
		case ev, ok := <-d.watcher.Events:
			if !ok {
				return nil
			}
			if d.ignored(ev.Name) {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if st, err := os.Stat(ev.Name); err == nil && st.IsDir() {
					if err := d.watchTree(ev.Name); err != nil {
						d.log.Warn("watching a new directory", "err", err)
					}
				}
			}
			pending++
			lastEv = ev.Op.String() + " " + ev.Name
			if rel, err := filepath.Rel(d.cfg.Dir, ev.Name); err == nil {
				lastEv = ev.Op.String() + " " + filepath.ToSlash(rel)
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			// Debounce, but let a continuous stream through after MaxWait.
			quiet.Reset(min(d.cfg.Debounce, max(0, first.Add(d.cfg.MaxWait).Sub(now))))
		case <-quiet.C:
			d.queue.Poke(Trigger{Kind: TriggerFSNotify, Detail: fmt.Sprintf("%d events, last %s", pending, lastEv)})
			pending, first = 0, time.Time{}
		}
	}
}

// ignored reports whether a path is under a name starting with "." (as
// .git, or an editor's swap file), which the loader skips anyway.
func (d *Dir) ignored(p string) bool {
	rel, err := filepath.Rel(d.cfg.Dir, p)
	if err != nil {
		return false
	}
	for _, part := range strings.Split(filepath.ToSlash(rel), "/") {
		if strings.HasPrefix(part, ".") && part != "." {
			return true
		}
	}
	return false
}

// Next blocks until the directory's content differs from what was last
// handed over, and returns it. The first call reads at once. A read that
// finds the same content (a file saved unchanged) is absorbed. Errors are
// *Error with Step StepRead; ctx's end returns ctx.Err().
func (d *Dir) Next(ctx context.Context) (Revision, error) {
	for {
		var t Trigger
		if !d.started {
			d.started = true
			t = Trigger{Kind: TriggerStart, At: time.Now()}
		} else {
			select {
			case <-ctx.Done():
				return Revision{}, ctx.Err()
			case t = <-d.queue.C():
			}
		}
		files, sum, err := readDir(d.cfg.Dir, d.cfg.MaxTreeBytes)
		if err != nil {
			e := &Error{Step: StepRead, Reason: ReasonIO, Source: d.cfg.Dir, Err: err}
			var te *Error
			if errors.As(err, &te) {
				e = te
				e.Source = d.cfg.Dir
			}
			d.m.errors.WithLabelValues(string(e.Step), e.Reason).Inc()
			d.log.Warn("reading the directory", "trigger", string(t.Kind), "err", err)
			return Revision{Trigger: t}, e
		}
		if sum == d.last {
			d.m.skipped.Inc()
			continue
		}
		rev := Revision{Commit: sum, Files: files, Trigger: t, Previous: d.last}
		d.last = sum
		d.m.revisions.Inc()
		d.log.Info("revision ready", "commit", short(sum), "files", files.Len(), "links", files.Links(), "trigger", string(t.Kind), "detail", t.Detail)
		return rev, nil
	}
}

// readDir snapshots the regular files and symbolic links under root,
// skipping names that start with ".", and hashes them. A link is recorded
// as its target text and never followed here: the MemFS handed over
// resolves it inside the snapshot or refuses it, so a link leaving the
// directory is never read, and a git commit and a directory holding the
// same tree behave alike.
func readDir(root string, limit int64) (*MemFS, string, error) {
	files := map[string][]byte{}
	links := map[string]string{}
	var total int64
	err := filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p != root && errors.Is(err, fs.ErrNotExist) {
				return nil // removed while walking; the next event reads again
			}
			return err
		}
		if p == root {
			return nil
		}
		if strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		var size int64
		switch {
		case e.IsDir():
			return nil
		case e.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			links[rel] = filepath.ToSlash(target)
			size = int64(len(target))
		case e.Type().IsRegular():
			data, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if err != nil {
				return err
			}
			files[rel] = data
			size = int64(len(data))
		default:
			return nil // sockets, FIFOs, devices
		}
		total += size
		if limit > 0 && total > limit {
			return &Error{Step: StepRead, Reason: ReasonTooLarge, Err: fmt.Errorf("files pass %d MiB (at %s)", limit>>20, p)}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return NewMemFS(files, links), "dir:" + contentHash(files, links), nil
}

// contentHash is the SHA-256 of the sorted paths and contents (a link's
// content is its target text, marked apart from a file's), with lengths so
// that no two trees hash alike by shifting bytes between names.
func contentHash(files map[string][]byte, links map[string]string) string {
	type entry struct {
		name, kind string
		data       []byte
	}
	all := make([]entry, 0, len(files)+len(links))
	for n, d := range files {
		all = append(all, entry{n, "f", d})
	}
	for n, t := range links {
		all = append(all, entry{n, "l", []byte(t)})
	}
	slices.SortFunc(all, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	h := sha256.New()
	var n [8]byte
	for _, e := range all {
		h.Write([]byte(e.kind))
		binary.BigEndian.PutUint64(n[:], uint64(len(e.name)))
		h.Write(n[:])
		h.Write([]byte(e.name))
		binary.BigEndian.PutUint64(n[:], uint64(len(e.data)))
		h.Write(n[:])
		h.Write(e.data)
	}
	return hex.EncodeToString(h.Sum(nil))
}
