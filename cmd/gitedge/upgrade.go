package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/gitedge/gitedge/failover"
)

// An upgrade in place (SIGUSR2, as nginx's): the running process (the old
// one) starts the binary now at its executable's path with the same
// arguments, hands it its listening sockets (the proxy's, the admin
// server's, the webhook's) and its VRRP state, and waits. The new process
// applies the last good commit on those sockets, resumes the VRRP
// instances as they were (a master keeps advertising), tells systemd it
// is the unit's main process and ready, then tells the old one. The old
// one hands over what else must go (the handOver hooks: BGP sessions),
// releases VRRP without a word, tells the new one, drains its connections
// and exits 0. If the new process fails to start, exits, refuses the
// config or is not ready in time, the old one keeps serving as before and
// logs why; a new process still running is stopped as a stop does (SIGTERM:
// it drains what it accepted), and killed only if it lingers
// (successorStopGrace).
//
// The two processes talk over a socketpair (the control socket, the first
// inherited descriptor), one line at a time; the old one's exit closes it
// too. What the new process inherits is described by $GITEDGE_UPGRADE
// (upgradeSpec), with the protocol the old one speaks:
//
//   - Protocol 1 (no "protocol" in the spec): the new process claims the
//     unit (MAINPID=, READY=1) and writes "ready", or "error <why>"; the old
//     one answers "released".
//   - Protocol 2: the new process writes "ready 2" and claims the unit only
//     once the old one, still willing, answers "go"; it then writes "main",
//     and the old one answers "released" as in 1. Why: an old process that
//     gives up (its timeout, a stop) just as the new one is ready stops the
//     new one; had that one claimed MAINPID already, systemd would see its
//     main process exit and stop the unit, the old process with it. The new
//     process that gets anything but "go" (the old one closed the socket)
//     claims nothing and stops; the old one that hears no "main" after its
//     "go" stops the new one and claims MAINPID back.
//
// Each side speaks the lower of the two versions, so that upgrades and
// downgrades between binaries of either protocol work.
//
// This does what cloudflare/tableflip does, by hand: tableflip keeps a
// duplicate of every listener it ever handed out until the next upgrade,
// so a listener removed from the routes repository would stay bound and
// queue connections nobody accepts; here the sockets are duplicated only
// for the moment the new process starts.

// upgradeEnv names the environment variable that describes what a process
// started by an upgrade inherits.
const upgradeEnv = "GITEDGE_UPGRADE"

// upgradeTimeout bounds how long the old process waits for the new one to
// be ready (tableflip's default). A first fetch is not part of it: the new
// process applies the last good commit, which is on disk. A var: a test
// build shortens it (testhooks_gitedgetest.go).
var upgradeTimeout = time.Minute

// upgradeProtocol is the highest control protocol this binary speaks (see
// above).
const upgradeProtocol = 2

// upgradeCommitTimeout bounds how long the old process, once it answered
// "go", waits for the new one's "main": it only has to tell systemd.
const upgradeCommitTimeout = 10 * time.Second

// successorStopGrace is how long an aborted upgrade lets the new process
// stop on SIGTERM before it is killed (SIGKILL). It may accept on the
// shared sockets already (`gitedge proxy` applies its directory before it
// is ready; any new process does from its first pass on): on SIGTERM it
// drains those connections instead of cutting them. Bounded, and well
// under a listener's default drainTimeout (30s): what it took are the few
// connections of its last moments, whose requests end in well under a
// second; and the old process waits meanwhile, when stopping itself within
// systemd's TimeoutStopSec, which must leave room for its own drain.
const successorStopGrace = 5 * time.Second

// upgradeSpec is $GITEDGE_UPGRADE: the control socket's descriptor, the
// inherited sockets by key and descriptor, and the VRRP snapshot.
type upgradeSpec struct {
	Control int            `json:"control"`
	Files   map[string]int `json:"files,omitempty"`
	// Serves says the old process served a commit: then the new one must
	// too before it says ready.
	Serves bool            `json:"serves"`
	VRRP   json.RawMessage `json:"vrrp,omitempty"`
	PID    int             `json:"pid"`
	// Protocol is the control protocol the old process speaks; unset (0)
	// from a process of protocol 1.
	Protocol int `json:"protocol,omitempty"`
}

// Keys of the inherited sockets: the proxy's by dataplane's own key, the
// others (admin, webhook) by address.
const (
	keyDataplane = "dataplane "
	keyListen    = "listen "
)

// upgrades is one process's side of in-place upgrades: what it inherited
// from the process it replaces (if any), the sockets it may hand on, and
// SIGUSR2.
type upgrades struct {
	log  *slog.Logger
	sd   *sdNotifier
	exe  string // resolved at start: a later chdir or a replaced binary does not change it
	args []string
	usr2 chan os.Signal

	// From the previous process; nil ctl on a first start. ctlr reads ctl.
	ctl      *os.File
	ctlr     *bufio.Reader
	spec     upgradeSpec
	snapshot *failover.Snapshot

	mu        sync.Mutex
	inherited map[string]*os.File         // not taken yet
	open      map[*trackedListener]string // admin and webhook sockets open now, by key
	// While a reload replaces the parts (parking), an admin or webhook
	// socket its part closes is parked instead, by key, for the next
	// parts to take (reload.go): it is never closed and bound again, which
	// would refuse connections meanwhile and fail while an old process of
	// an upgrade still holds the socket.
	parking bool
	parked  map[string]*net.TCPListener

	// successor is the control socket to the new process, once it is
	// ready; kept referenced so that only this process's exit closes it.
	successor *os.File
	// handover is set in the new process from its ready line until the
	// old one has handed over (released, or gone).
	handover atomic.Bool
}

// notifyUSR2 asks for SIGUSR2 (upgrade) for a command that runs a node.
// Call it before anything slow: its default action ends the process.
func notifyUSR2() chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR2)
	return c
}

// newUpgrades reads what the previous process handed over, if this
// process was started by an upgrade; usr2 is notifyUSR2's.
func newUpgrades(usr2 chan os.Signal, log *slog.Logger, sd *sdNotifier) (*upgrades, error) {
	u := &upgrades{log: log, sd: sd, args: os.Args[1:], usr2: usr2,
		inherited: map[string]*os.File{}, open: map[*trackedListener]string{}, parked: map[string]*net.TCPListener{}}
	exe, err := executablePath(os.Args[0])
	if err != nil {
		log.Warn("upgrades in place (SIGUSR2) will fail: the executable's path is unknown", "argv0", os.Args[0], "error", err)
	}
	u.exe = exe
	raw := os.Getenv(upgradeEnv)
	if raw == "" {
		return u, nil
	}
	os.Unsetenv(upgradeEnv)
	if err := json.Unmarshal([]byte(raw), &u.spec); err != nil {
		return u, fmt.Errorf("$%s: %w (set by the process this one replaces)", upgradeEnv, err)
	}
	// Non-blocking, so that a read of it has a deadline and Close ends it.
	if err := unix.SetNonblock(u.spec.Control, true); err != nil {
		log.Warn("the upgrade's control socket stays blocking", "error", err)
	}
	u.ctl = os.NewFile(uintptr(u.spec.Control), "gitedge-upgrade-control")
	u.ctlr = bufio.NewReader(u.ctl)
	for key, fd := range u.spec.Files {
		unix.CloseOnExec(fd)
		u.inherited[key] = os.NewFile(uintptr(fd), key)
	}
	unix.CloseOnExec(u.spec.Control)
	if len(u.spec.VRRP) > 0 {
		s, err := failover.ParseSnapshot(u.spec.VRRP)
		if err != nil {
			// Every instance then starts normally (a new election).
			log.Warn("the VRRP state handed over does not parse; starting every instance normally", "error", err)
		} else {
			u.snapshot = &s
		}
	}
	log.Info("started by an upgrade in place: taking over", "from", u.spec.PID, "sockets", len(u.spec.Files),
		"vrrp", u.snapshot != nil, "protocol", u.protocol())
	return u, nil
}

// executablePath is the binary an upgrade starts: argv[0] made absolute
// now (or looked up in PATH), so that the binary installed at that path
// later is the one started, as nginx does. /proc/self/exe would name the
// old binary, deleted.
func executablePath(argv0 string) (string, error) {
	if strings.Contains(argv0, "/") {
		return filepath.Abs(argv0)
	}
	return exec.LookPath(argv0)
}

// child reports whether this process was started by an upgrade.
func (u *upgrades) child() bool { return u != nil && u.ctl != nil }

// protocol is the control protocol this process speaks with the one it
// replaces: the lower of the two versions.
func (u *upgrades) protocol() int {
	return max(1, min(u.spec.Protocol, newProtocol))
}

// fail tells the old process, if there is one, why this one will not take
// over; it keeps serving.
func (u *upgrades) fail(err error) {
	if !u.child() || err == nil {
		return
	}
	msg := strings.ReplaceAll(err.Error(), "\n", " ")
	_, _ = u.ctl.WriteString("error " + msg + "\n")
	u.ctl.Close()
	u.ctl = nil
}

// takeDataplane is dataplane's Options.Inherit.
func (u *upgrades) takeDataplane(key string) *net.TCPListener {
	ln, err := u.take(keyDataplane + key)
	if err != nil {
		u.log.Warn("an inherited socket cannot be used; opening a new one", "socket", key, "error", err)
		return nil
	}
	if ln == nil {
		return nil
	}
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		ln.Close()
		return nil
	}
	return tl
}

// take returns the inherited socket of key, or nil.
func (u *upgrades) take(key string) (net.Listener, error) {
	if u == nil {
		return nil, nil
	}
	u.mu.Lock()
	f := u.inherited[key]
	delete(u.inherited, key)
	u.mu.Unlock()
	if f == nil {
		return nil, nil
	}
	defer f.Close()
	return net.FileListener(f)
}

// listen opens a TCP listening socket on addr for the admin server or the
// webhook, or takes the one parked for it by a reload or inherited for it,
// and keeps it on the list an upgrade hands on until it is closed. ctx is
// only a test hook's.
func (u *upgrades) listen(ctx context.Context, addr string) (net.Listener, error) {
	key := keyListen + addr
	holdSuccessorListen(ctx, u)
	var tl *net.TCPListener
	if u != nil {
		u.mu.Lock()
		tl = u.parked[key]
		delete(u.parked, key)
		u.mu.Unlock()
	}
	if tl != nil {
		// Its last part is done with it (superviseParts waited for it):
		// the deadline that ended its Accept goes.
		if err := tl.SetDeadline(time.Time{}); err != nil {
			tl.Close()
			tl = nil
		}
	}
	if tl == nil {
		ln, err := u.take(key)
		if err != nil {
			u.log.Warn("an inherited socket cannot be used; opening a new one", "socket", addr, "error", err)
		}
		if ln == nil {
			if ln, err = net.Listen("tcp", addr); err != nil {
				return nil, err
			}
		}
		var ok bool
		if tl, ok = ln.(*net.TCPListener); !ok || u == nil {
			return ln, nil
		}
	}
	t := &trackedListener{TCPListener: tl, u: u, key: key}
	u.mu.Lock()
	u.open[t] = key
	u.mu.Unlock()
	return t, nil
}

// trackedListener leaves the upgrade's list when closed, or is parked
// while a reload replaces the parts (park).
type trackedListener struct {
	*net.TCPListener
	u      *upgrades
	key    string
	once   sync.Once
	parked atomic.Bool
}

func (t *trackedListener) Close() error {
	first := false
	t.once.Do(func() {
		first = true
		u := t.u
		u.mu.Lock()
		delete(u.open, t)
		if u.parking && u.parked[t.key] == nil {
			u.parked[t.key] = t.TCPListener
			t.parked.Store(true)
		}
		u.mu.Unlock()
	})
	if !t.parked.Load() {
		return t.TCPListener.Close()
	}
	if first {
		// A deadline gone by ends the Accept under way, as Close would,
		// and leaves the socket open: the socket is another part's now.
		return t.TCPListener.SetDeadline(time.Unix(1, 0))
	}
	return nil
}

// Accept is the socket's, which once this listener is parked is closed
// as far as its server knows.
func (t *trackedListener) Accept() (net.Conn, error) {
	c, err := t.TCPListener.Accept()
	if err != nil && t.parked.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: t.Addr(), Err: net.ErrClosed}
	}
	return c, err
}

// park starts a reload's replacement of the parts: the admin and webhook
// sockets their parts close from now on stay open, for the next parts'
// listen. unpark ends it.
func (u *upgrades) park() {
	if u == nil {
		return
	}
	u.mu.Lock()
	u.parking = true
	u.mu.Unlock()
}

// unpark ends a reload's replacement of the parts, once the next parts
// have their sockets: a socket parked and not taken again (its address
// left the config) is closed.
func (u *upgrades) unpark() {
	if u == nil {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.parking = false
	for key, tl := range u.parked {
		u.log.Info("a socket the reloaded config no longer has: closed", "socket", key)
		tl.Close()
	}
	u.parked = map[string]*net.TCPListener{}
}

// closeInherited closes what was inherited and not taken: sockets the
// running config no longer has. By the first pass every part has taken
// its own (node.run), so only those are left.
func (u *upgrades) closeInherited() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for key, f := range u.inherited {
		u.log.Info("an inherited socket is not in the running config: closed", "socket", key)
		f.Close()
	}
	u.inherited = map[string]*os.File{}
}

// handoverSockets duplicates every socket to hand on, by key; the caller
// closes the descriptors once the new process started. Raw descriptors,
// never (*net.TCPListener).File and exec.Cmd: an *os.File's Fd puts the
// socket in blocking mode, and the mode is shared with this process's own
// listener, whose Accept would then block in the kernel where Close cannot
// interrupt it.
func (u *upgrades) handoverSockets(n *node) (map[string]int, error) {
	fds := map[string]int{}
	add := func(key string, ln *net.TCPListener) error {
		rc, err := ln.SyscallConn()
		if err != nil {
			return fmt.Errorf("the socket %s: %w", key, err)
		}
		var dup int
		var derr error
		if err := rc.Control(func(fd uintptr) { dup, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
			return fmt.Errorf("the socket %s: %w", key, err)
		}
		if derr != nil {
			return fmt.Errorf("duplicating the socket %s: %w", key, derr)
		}
		fds[key] = dup
		return nil
	}
	var err error
	if n.proxy != nil {
		for _, s := range n.proxy.Sockets() {
			err = errors.Join(err, add(keyDataplane+s.Key, s.Listener))
		}
	}
	u.mu.Lock()
	for t, key := range u.open {
		err = errors.Join(err, add(key, t.TCPListener))
	}
	for key, tl := range u.parked { // a reload under way takes them again
		err = errors.Join(err, add(key, tl))
	}
	u.mu.Unlock()
	if err != nil {
		closeFDs(fds)
		return nil, err
	}
	return fds, nil
}

func closeFDs(fds map[string]int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// upgrade is the old process's side of SIGUSR2: it returns true once the
// new process serves and this one has released VRRP (the caller then
// drains and exits), false if this process keeps serving (logged).
func (u *upgrades) upgrade(ctx context.Context, n *node) bool {
	start := time.Now()
	log := u.log.With("executable", u.exe)
	log.Info("SIGUSR2: upgrading in place: starting the new binary")
	pid, proto, err := u.startSuccessor(ctx, n, log)
	if err != nil {
		if n.vrrp != nil {
			n.vrrp.AbortHandover(err)
		}
		log.Error("SIGUSR2: upgrade failed; this process keeps serving", "reason", err.Error())
		_ = u.sd.Status(n.sdStatus() + "; last upgrade failed: " + firstLine(err.Error()))
		return false
	}
	for _, h := range n.handOver {
		if err := h(ctx); err != nil {
			log.Error("upgrade: a hand-over step failed; the new process serves already", "error", err)
		}
	}
	if n.vrrp != nil {
		if err := n.vrrp.Release(); err != nil {
			log.Error("upgrade: releasing VRRP", "error", err)
		}
	}
	// The new process runs VRRP alone from now on (its Confirm); this
	// process's exit closes the socket as well.
	_, _ = u.successor.WriteString("released\n")
	log.Info("upgrade: the new process serves; this one drains and exits", "pid", pid, "protocol", proto, "took", time.Since(start))
	return true
}

// startSuccessor starts the new process, hands it everything and waits
// until it is ready and the unit's main process. It returns the new
// process's pid and the protocol it spoke; on an error the new process is
// gone and this one changed nothing.
func (u *upgrades) startSuccessor(ctx context.Context, n *node, log *slog.Logger) (int, int, error) {
	if u.exe == "" {
		return 0, 0, errors.New("the executable's path is unknown")
	}
	spec := upgradeSpec{Control: 3, Files: map[string]int{}, PID: os.Getpid(), Serves: n.loop.Status().Live != nil}
	if oldProtocol >= 2 {
		spec.Protocol = oldProtocol
	}
	if n.vrrp != nil {
		snap, err := n.vrrp.Handover()
		if err != nil {
			return 0, 0, fmt.Errorf("VRRP: %w", err)
		}
		if spec.VRRP, err = snap.Marshal(); err != nil {
			return 0, 0, fmt.Errorf("VRRP: %w", err)
		}
	}
	fds, err := u.handoverSockets(n)
	if err != nil {
		return 0, 0, err
	}
	// Closed once the new process has them, or on any error.
	defer func() { closeFDs(fds) }()
	pair, err := socketpair()
	if err != nil {
		return 0, 0, fmt.Errorf("control socket: %w", err)
	}
	fds["control"] = pair[1]
	// This side non-blocking, so that Close interrupts a read.
	if err := unix.SetNonblock(pair[0], true); err != nil {
		unix.Close(pair[0])
		return 0, 0, fmt.Errorf("control socket: %w", err)
	}
	ctl := os.NewFile(uintptr(pair[0]), "upgrade-control")
	files := []uintptr{0, 1, 2, uintptr(pair[1])}
	for key, fd := range fds {
		if key == "control" {
			continue
		}
		spec.Files[key] = len(files)
		files = append(files, uintptr(fd))
	}
	env, err := json.Marshal(spec)
	if err != nil {
		ctl.Close()
		return 0, 0, err
	}
	pid, err := syscall.ForkExec(u.exe, append([]string{u.exe}, u.args...), &syscall.ProcAttr{
		Env:   append(environWithout(upgradeEnv), upgradeEnv+"="+string(env)),
		Files: files,
	})
	if err != nil {
		ctl.Close()
		return 0, 0, fmt.Errorf("starting %s: %w", u.exe, err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		ctl.Close()
		return 0, 0, err
	}
	closeFDs(fds)
	fds = nil
	exited := make(chan struct{})
	var exitErr error
	go func() {
		st, err := proc.Wait()
		if err == nil && !st.Success() {
			err = errors.New(st.String())
		}
		exitErr = err
		close(exited)
	}()
	// What the new process says, a line at a time: after "ready 2" (and
	// this process's "go") comes "main" or why not; every other line is
	// its last.
	said := make(chan string, 2)
	r := bufio.NewReader(ctl)
	go func() {
		for {
			line, err := r.ReadString('\n')
			if err != nil && line == "" {
				line = "eof"
			}
			line = strings.TrimSpace(line)
			said <- line
			if line != "ready 2" {
				return
			}
		}
	}()
	log = log.With("pid", pid)
	log.Info("upgrade: the new process started; waiting until it serves", "sockets", len(spec.Files), "vrrp", len(spec.VRRP) > 0,
		"protocol", max(1, spec.Protocol))
	// claimBack is for a new process that may be the unit's main process
	// (MAINPID=) already: one of protocol 1 once ready, one of protocol 2
	// once told "go". This process says it is the main one again before
	// that one is stopped, so that systemd does not take its exit for the
	// service's end and stop the unit (best effort: nothing without
	// systemd).
	claimBack := false
	reclaim := func() {
		if claimBack {
			if err := u.sd.MainPID(); err != nil {
				log.Warn("upgrade: telling systemd this process is the main one again", "error", err)
			}
		}
	}
	// stop ends the new process if it still runs, and says how: the
	// sockets are shared, so it stops as on a stop (SIGTERM: it drains),
	// and is killed only if it lingers. One exiting by itself already (it
	// refused) is given the grace to do so first. This process keeps its
	// own sockets either way.
	stop := func(exiting bool) string {
		grace := time.NewTimer(successorStopGrace)
		defer grace.Stop()
		if exiting {
			select {
			case <-exited:
				return ""
			case <-grace.C:
				grace.Reset(successorStopGrace)
			}
		}
		select {
		case <-exited:
			return ""
		default:
		}
		if err := proc.Signal(syscall.SIGTERM); err != nil {
			log.Warn("upgrade: stopping the new process (SIGTERM)", "error", err)
		}
		// Once more: a claim it made just before the SIGTERM (which keeps
		// it from making one) is undone while it drains.
		reclaim()
		select {
		case <-exited:
			return fmt.Sprintf("; the new process was stopped with SIGTERM (%s)", exitReason(exitErr))
		case <-grace.C:
		}
		_ = proc.Kill()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
		}
		return fmt.Sprintf("; the new process was killed (SIGKILL): still running %v after SIGTERM", successorStopGrace)
	}
	fail := func(err error, exiting bool) (int, int, error) {
		ctl.Close() // a new process of protocol 2 waiting for "go" hears it will not come
		reclaim()
		return 0, 0, fmt.Errorf("%w%s", err, stop(exiting))
	}
	// abort is this process giving up while the new one may be ready,
	// and of protocol 1 (claimed) for all this one knows. One that said
	// "ready 2" waits for "go": the closed control socket tells it, and
	// it exits by itself (saying so) before a SIGTERM would race that.
	abort := func(err error, line string) (int, int, error) {
		claimBack = true
		if line == "" {
			select {
			case line = <-said:
			default:
			}
		}
		if line != "ready 2" {
			return fail(err, false)
		}
		ctl.Close()
		reclaim()
		how := stop(true)
		if how == "" {
			how = fmt.Sprintf("; the new process, told, exited (%s)", exitReason(exitErr))
		}
		return 0, 0, fmt.Errorf("%w%s", err, how)
	}
	notReady := fmt.Errorf("the new process was not ready within %v; its log says why", upgradeTimeout)
	timeout := time.NewTimer(upgradeTimeout)
	defer timeout.Stop()
	select {
	case line := <-said:
		if abortsAtReady(line) {
			return abort(notReady, line) // a test hook: the timeout, at this very instant
		}
		switch line {
		case "ready":
			u.successor = ctl
			return pid, 1, nil
		case "ready 2":
			// Protocol 2, this process still willing (neither its timeout
			// nor a stop came first): it commits to the hand-over, and the
			// new process claims the unit. Anything but "main" then fails
			// the upgrade as any failure does, MAINPID claimed back.
			claimBack = true
			if _, err := ctl.WriteString("go\n"); err != nil {
				return fail(fmt.Errorf("telling the new process to take over: %w", err), false)
			}
			t := time.NewTimer(upgradeCommitTimeout)
			defer t.Stop()
			select {
			case line := <-said:
				if line == "main" {
					u.successor = ctl
					return pid, 2, nil
				}
				if why, ok := strings.CutPrefix(line, "error "); ok {
					return fail(fmt.Errorf("the new process refused to take over once told to: %s", why), true)
				}
				if line == "eof" {
					return fail(errors.New("the new process closed the control socket once told to take over; its log says why"), true)
				}
				return fail(fmt.Errorf("the new process said %q once told to take over, not main", line), false)
			case <-exited:
				return fail(fmt.Errorf("the new process exited once told to take over (%v); its log says why", exitReason(exitErr)), true)
			case <-t.C:
				return fail(fmt.Errorf("the new process did not take over within %v of being told to; its log says why", upgradeCommitTimeout), false)
			}
		}
		if why, ok := strings.CutPrefix(line, "error "); ok {
			return fail(fmt.Errorf("the new process refused to take over: %s", why), true)
		}
		// The control socket closed: the process is exiting.
		select {
		case <-exited:
			return fail(fmt.Errorf("the new process exited before it was ready (%v); its log says why", exitReason(exitErr)), true)
		case <-time.After(10 * time.Second):
			return fail(errors.New("the new process closed the control socket before it was ready; its log says why"), false)
		}
	case <-exited:
		// What it said before it exited, if anything, says why.
		select {
		case line := <-said:
			if why, ok := strings.CutPrefix(line, "error "); ok {
				return fail(fmt.Errorf("the new process refused to take over: %s", why), true)
			}
		case <-time.After(time.Second):
		}
		return fail(fmt.Errorf("the new process exited before it was ready (%v); its log says why", exitReason(exitErr)), true)
	case <-timeout.C:
		return abort(notReady, "")
	case <-ctx.Done():
		return abort(errors.New("this process is stopping"), "")
	}
}

func exitReason(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// environWithout is this process's environment without name.
func environWithout(name string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// socketpair is a connected pair of unix stream sockets, close-on-exec
// (as the standard library does where SOCK_CLOEXEC is missing: under
// ForkLock, so no process started meanwhile inherits them).
func socketpair() ([2]int, error) {
	syscall.ForkLock.RLock()
	defer syscall.ForkLock.RUnlock()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return pair, err
	}
	unix.CloseOnExec(pair[0])
	unix.CloseOnExec(pair[1])
	return pair, nil
}
