// Package netpollorder builds gitedge with Go's netpoller handing out the
// goroutines it readies in the order epoll reported their sockets, and
// tells which order a running binary has.
//
// Go's netpoll (runtime/netpoll_epoll.go) pushes each goroutine it readies
// onto the head of a list, so the scheduler runs a batch of connections
// that became ready during one turn in reverse: the one that waited
// longest runs last. On a proxy saturating its core that is the tail of
// kept-alive requests (docs/benchmarks.md, Rounds 10, 13 and 15): a
// request queued behind a batch waits for all of it. Order cannot be
// restored outside the runtime without a second pass of the scheduler per
// wake-up (Round 13), so Patch reverses the list where netpoll returns it,
// in a copy of the file that `go build -overlay` compiles in place of
// GOROOT's (WriteOverlay; the Makefile's builds do). Nothing else in the
// runtime changes: which goroutines run, and when the scheduler polls, stay
// Go's.
package netpollorder

import (
	"bytes"
	"encoding/json"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"unsafe"

	"github.com/gitedge/gitedge/internal/atomicfile"
)

// File is the runtime's source file the patch applies to, under GOROOT.
const File = "src/runtime/netpoll_epoll.go"

// anchor is netpoll's last statement: the list it returns. decl is the
// list's declaration, so that the reversal's type is the list's.
const (
	anchor = "\treturn toRun, delta\n}\n"
	decl   = "\tvar toRun gList\n"
)

// reversal goes right before anchor.
const reversal = `	// Patched by gitedge (internal/netpollorder): netpollready pushed each
	// goroutine onto the list's head; reverse the list so that the
	// scheduler runs the batch in the order epoll reported it.
	var fifo gList
	for !toRun.empty() {
		fifo.push(toRun.pop())
	}
	toRun = fifo
`

// Patch returns src (netpoll_epoll.go) with the reversal before netpoll's
// return. It fails when the file is not the one it knows: a Go release
// whose netpoll changed needs this package looked at again.
func Patch(src []byte) ([]byte, error) {
	for _, s := range []string{anchor, decl} {
		if n := bytes.Count(src, []byte(s)); n != 1 {
			return nil, fmt.Errorf("%s: %q found %d times, want once: this Go release's netpoll is not the one internal/netpollorder patches (build with NETPOLL=stock, or update the patch)", File, s, n)
		}
	}
	out := bytes.Replace(src, []byte(anchor), []byte(reversal+anchor), 1)
	if _, err := parser.ParseFile(token.NewFileSet(), File, out, parser.SkipObjectResolution); err != nil {
		return nil, fmt.Errorf("%s: the patched file does not parse: %v", File, err)
	}
	return out, nil
}

// GOROOT is the GOROOT of goTool (go, or the Makefile's GO), run in the
// current directory: the toolchain a build from there will use.
func GOROOT(goTool string) (string, error) {
	out, err := exec.Command(goTool, "env", "GOROOT").Output()
	if err != nil {
		return "", fmt.Errorf("%s env GOROOT: %w", goTool, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// WriteOverlay patches goroot's netpoll_epoll.go into dir and writes the
// overlay file that replaces the original with it (dir/overlay.json), for
// `go build -overlay`. It returns the overlay file's path.
func WriteOverlay(goroot, dir string) (string, error) {
	orig := filepath.Join(goroot, filepath.FromSlash(File))
	src, err := os.ReadFile(orig)
	if err != nil {
		return "", fmt.Errorf("read the runtime's netpoll: %w", err)
	}
	out, err := Patch(src)
	if err != nil {
		return "", err
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Not a .go file: dir may be in a module (bin/netpoll), whose ./...
	// must not find a package there.
	patched := filepath.Join(dir, filepath.Base(orig)+".patched")
	// Replaced whole (atomicfile): two builds at once (make -j build deb)
	// each write the same files, and neither may compile the other's
	// half-written copy.
	if err := atomicfile.WriteFile(patched, out, 0o644); err != nil {
		return "", err
	}
	js, err := json.MarshalIndent(map[string]map[string]string{"Replace": {orig: patched}}, "", "\t")
	if err != nil {
		return "", err
	}
	overlay := filepath.Join(dir, "overlay.json")
	if err := atomicfile.WriteFile(overlay, append(js, '\n'), 0o644); err != nil {
		return "", err
	}
	return overlay, nil
}

// Order is the order in which this binary's scheduler runs goroutines
// readied together by the netpoller: FIFO (epoll's, the patched runtime),
// LIFO (the stock runtime) or Mixed (neither, five times over: a race
// detector build, whose scheduler shuffles its run queue). It runs a probe
// of its own with GOMAXPROCS at 1 for about a millisecond, so it is for a
// command's output (gitedge version), not for a serving process: it
// gives GOMAXPROCS its value back, but setting it turns off the
// runtime's updates of it to the CPU limit.
func Order() string {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	order := Mixed
	for range 5 {
		if order = probe(16); order != Mixed {
			break
		}
	}
	return order
}

// The orders Order tells apart.
const (
	FIFO  = "FIFO"
	LIFO  = "LIFO"
	Mixed = "mixed"
)

// probe blocks n goroutines reading one pipe each, makes the pipes
// readable in turn without yielding, then waits: the scheduler, out of
// work, polls and finds the n ready at once, and the order they run in is
// the netpoller's.
func probe(n int) string {
	woke := make(chan int, n)
	var started atomic.Int32
	ws := make([]int, 0, n)
	defer func() {
		for _, w := range ws {
			syscall.Close(w)
		}
	}()
	for i := range n {
		var p [2]int
		if err := syscall.Pipe(p[:]); err != nil {
			return Mixed
		}
		ws = append(ws, p[1])
		syscall.CloseOnExec(p[0]) // pipe2's flag is not on every Unix
		syscall.CloseOnExec(p[1])
		if err := syscall.SetNonblock(p[0], true); err != nil {
			syscall.Close(p[0])
			return Mixed
		}
		r := os.NewFile(uintptr(p[0]), "probe") // non-blocking: in the netpoller
		go func() {
			defer r.Close()
			var b [1]byte
			started.Add(1)
			r.Read(b[:]) // parks in the netpoller: nothing to read yet
			woke <- i
		}()
	}
	// With one P, a yield runs the readers queued behind this goroutine
	// until each parks in its Read.
	for started.Load() < int32(n) {
		runtime.Gosched()
	}
	runtime.Gosched()
	for _, w := range ws {
		// A raw write: the scheduler does not see a system call it could
		// hand the P over during, to a thread that would poll half of
		// the batch.
		if _, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(w), uintptr(unsafe.Pointer(&one)), 1); e != 0 {
			return Mixed
		}
	}
	up, down := true, true
	for k := range n {
		i := <-woke
		up = up && i == k
		down = down && i == n-1-k
	}
	switch {
	case up:
		return FIFO
	case down:
		return LIFO
	}
	return Mixed
}

var one = [1]byte{1}
