package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// serveNode runs n until ctx ends (SIGTERM, SIGINT) or an upgrade hands it
// over, and tells systemd (Type=notify) where it stands:
//
//   - READY=1 once the first pass is done (after the admin server and the
//     webhook listen: node.run): the node serves the last good
//     commit (the one recorded in stateDir, applied before any fetch), or,
//     on a first start with nothing valid to serve, serves nothing and
//     says so in STATUS=. Ready means "started, doing what it can", not
//     "serving the newest commit" (that is /readyz): a node that reported
//     a failed start would be restarted in a loop by Restart=on-failure
//     while a fixed commit could be fetched any moment.
//   - STATUS= the live commit and the last failure, when they change.
//   - RELOADING=1 and READY=1 around a SIGHUP (reload.go).
//   - STOPPING=1 when a stop starts; never after a hand-over, nor from a
//     new process not ready yet (an aborted upgrade stops it).
//   - WATCHDOG=1 while the node is healthy, if the unit sets WatchdogSec=.
//   - A process started by an upgrade sends MAINPID= with its READY=1, then
//     tells the old process, which releases VRRP and drains; under
//     protocol 2 (upgrade.go) only once the old process, told it is
//     ready, committed to the hand-over ("go"), and never if it did not.
func serveNode(ctx context.Context, n *node, u *upgrades) error {
	nctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- n.run(nctx) }()
	go n.sd.Watchdog(nctx, n.watchdogHealthy, n.log)

	first := make(chan firstPass, 1)
	go func() {
		fp := n.waitFirstPass(nctx)
		holdSuccessorReady(nctx, u) // a test hook
		first <- fp
	}()
	stopping := ctx.Done()
	var usr2 <-chan os.Signal // read once ready: a SIGUSR2 before waits
	var statusTick <-chan time.Time
	var tick *time.Ticker
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	// told is the old process's answer to "ready 2" (protocol 2): "go",
	// or why none came.
	var told <-chan string
	lastStatus := ""
	ready := func() {
		n.sdReady.Store(true)
		n.log.Info("ready", "status", lastStatus)
		if u != nil {
			usr2 = u.usr2
		}
		tick = time.NewTicker(time.Second)
		statusTick = tick.C
	}
	for {
		select {
		case err := <-errc:
			if err != nil {
				u.fail(err)
			}
			return err
		case <-stopping:
			stopping = nil
			if u.child() {
				// Not ready yet: the old process, which aborted the upgrade
				// (or is stopping too), is the unit's main process. Its
				// STOPPING=1 is its own: from this one (NotifyAccess=all)
				// it would stop the unit.
				n.log.Info("stopping before taking over: the old process serves on, unless it stops too")
				continue
			}
			if u.takingOver() {
				// Ready, the hand-over not done: the old process, which may
				// have given it up and claimed the unit back, stops this
				// one; STOPPING=1 would stop the unit.
				n.log.Info("stopping before the old process handed over: it serves on, unless it stops too")
				continue
			}
			_ = n.sd.Stopping("stopping: draining connections")
		case fp := <-first:
			if fp.canceled || u.child() && ctx.Err() != nil {
				continue // a new process told to stop (an aborted upgrade) takes nothing over
			}
			if u.child() && !fp.serves && u.spec.Serves {
				err := fmt.Errorf("the new process serves nothing: %s", fp.why)
				u.fail(err)
				cancel()
				<-errc
				return err
			}
			lastStatus = n.sdStatus()
			switch {
			case u.child() && u.protocol() >= 2:
				told = u.offer()
				continue // claimed on "go"
			case u.child():
				_ = n.sd.ReadyAsMain(lastStatus)
				u.ready(n)
			default:
				_ = n.sd.Ready(lastStatus)
			}
			ready()
		case answer := <-told:
			told = nil
			if answer != "go" {
				// Neither MAINPID nor READY=1: the old process is the
				// unit's main one, and serves on.
				n.log.Error("the old process aborted the upgrade; this process stops", "from", u.spec.PID, "why", answer)
				u.abandon()
				cancel() // drain what it accepted on the shared sockets
				<-errc
				return fmt.Errorf("the old process (%d) aborted the upgrade: %s", u.spec.PID, answer)
			}
			if ctx.Err() != nil {
				// Told to stop meanwhile: it claims nothing, and the old
				// process, not told "main", keeps the unit.
				continue
			}
			lastStatus = n.sdStatus()
			_ = n.sd.ReadyAsMain(lastStatus)
			holdSuccessorMain(nctx, u) // a test hook
			if ctx.Err() != nil {
				// Told to stop since: not "main", so that the old process
				// gives the upgrade up and claims the unit back.
				continue
			}
			u.main(n)
			ready()
		case <-statusTick:
			if s := n.sdStatus(); s != lastStatus {
				lastStatus = s
				_ = n.sd.Status(s)
			}
		case <-usr2:
			if u.upgrade(nctx, n) {
				cancel() // drain, as a stop does, without STOPPING=1
				err := <-errc
				n.log.Info("handed over to the new process: exiting")
				return err
			}
		}
	}
}

// firstPass is how the node's first pass ended.
type firstPass struct {
	serves   bool   // a commit is live and the proxy accepts on its listeners
	why      string // when not: the last attempt's error
	canceled bool
}

// waitFirstPass waits until the loop's first pass is done (polled: the
// loop reports through its status).
func (n *node) waitFirstPass(ctx context.Context) firstPass {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		st := n.loop.Status()
		if st.Live != nil && n.proxyReady() {
			return firstPass{serves: true}
		}
		if st.Live == nil && st.LastAttempt != nil && st.LastAttempt.Result != "" {
			why := st.LastAttempt.Error
			if why == "" {
				why = string(st.LastAttempt.Result)
			}
			return firstPass{why: why}
		}
		select {
		case <-ctx.Done():
			return firstPass{canceled: true}
		case <-t.C:
		}
	}
}

func (n *node) proxyReady() bool {
	if n.proxy == nil {
		return true
	}
	select {
	case <-n.proxy.Ready():
		return true
	default:
		return false
	}
}

// watchdogHealthy is what the systemd watchdog pings for: a node serving a
// commit whose listeners accept, or one that serves nothing yet (the
// watchdog must not restart a node waiting for a valid commit).
func (n *node) watchdogHealthy() bool {
	return n.loop.Status().Live == nil || n.healthy() == nil
}

// sdStatus is the one line `systemctl status gitedge` shows: the version,
// the live commit and the last failure.
func (n *node) sdStatus() string {
	st := n.loop.Status()
	var b strings.Builder
	fmt.Fprintf(&b, "gitedge %s: ", version)
	if st.Live == nil {
		b.WriteString("nothing serves yet")
		if a := st.LastAttempt; a != nil && a.Error != "" {
			fmt.Fprintf(&b, ": %s", firstLine(a.Error))
		} else {
			b.WriteString(": waiting for a first valid commit")
		}
		return b.String()
	}
	fmt.Fprintf(&b, "serving commit %s", short(st.Live.Commit))
	if st.Live.Restored {
		b.WriteString(" (restored from the state directory)")
	}
	if a := st.LastAttempt; a != nil && a.Error != "" {
		fmt.Fprintf(&b, "; last attempt %s %s: %s", short(a.Commit), a.Result, firstLine(a.Error))
	}
	return b.String()
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}

// ready is the new process's side once it serves, under protocol 1 (it
// claimed the unit already): tell the old one, then wait (in the
// background) until it has released VRRP or is gone, and run the
// instances alone from then on.
func (u *upgrades) ready(n *node) {
	u.closeInherited()
	if _, err := u.ctl.WriteString("ready\n"); err != nil {
		n.log.Warn("upgrade: the old process cannot be told this one is ready", "error", err)
	}
	u.takeOver(n)
}

// offer is the new process's side once it serves, under protocol 2: tell
// the old one, and hear (bounded by upgradeTimeout) whether it commits to
// the hand-over. The answer is "go", or why none came.
func (u *upgrades) offer() <-chan string {
	u.closeInherited()
	answer := make(chan string, 1)
	if _, err := u.ctl.WriteString("ready 2\n"); err != nil {
		answer <- "the control socket: " + err.Error()
		return answer
	}
	ctl, r := u.ctl, u.ctlr
	go func() {
		_ = ctl.SetReadDeadline(time.Now().Add(upgradeTimeout))
		line, err := r.ReadString('\n')
		_ = ctl.SetReadDeadline(time.Time{})
		switch {
		case err == nil && strings.TrimSpace(line) == "go":
			answer <- "go"
		case errors.Is(err, os.ErrDeadlineExceeded):
			answer <- fmt.Sprintf("no answer within %v", upgradeTimeout)
		case err != nil && line == "":
			answer <- "it closed the control socket (" + err.Error() + ")"
		default:
			answer <- fmt.Sprintf("it said %q", strings.TrimSpace(line))
		}
	}()
	return answer
}

// main is the new process's side once the old one said "go" and this one
// claimed the unit: tell it, and take over as under protocol 1.
func (u *upgrades) main(n *node) {
	if _, err := u.ctl.WriteString("main\n"); err != nil {
		n.log.Warn("upgrade: the old process cannot be told this one is the main process", "error", err)
	}
	u.takeOver(n)
}

// abandon closes the control socket of an upgrade the old process aborted.
func (u *upgrades) abandon() {
	u.ctl.Close()
	u.ctl = nil
}

// takeOver waits (in the background) until the old process has released
// VRRP or is gone, and runs the instances alone from then on.
func (u *upgrades) takeOver(n *node) {
	ctl, r, proto := u.ctl, u.ctlr, u.protocol()
	u.ctl = nil
	u.handover.Store(true)
	go func() {
		defer u.handover.Store(false)
		line, err := r.ReadString('\n')
		ctl.Close()
		how := "the old process released it"
		if strings.TrimSpace(line) != "released" {
			how = "the old process is gone"
			if err != nil && !errors.Is(err, os.ErrClosed) {
				how += " (" + err.Error() + ")"
			}
		}
		if n.vrrp != nil {
			n.vrrp.Confirm()
		}
		if n.takenOver != nil {
			close(n.takenOver) // BGP's sessions open now
		}
		n.log.Info("upgrade complete: this process alone runs the node", "from", u.spec.PID, "vrrp", how, "protocol", proto)
	}()
}

// takingOver says whether this process, ready, waits for the old one to
// hand over (takeOver).
func (u *upgrades) takingOver() bool { return u != nil && u.handover.Load() }
