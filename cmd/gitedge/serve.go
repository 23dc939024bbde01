package main

import (
	"bufio"
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
//     tells the old process, which releases VRRP and drains.
func serveNode(ctx context.Context, n *node, u *upgrades) error {
	nctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- n.run(nctx) }()
	go n.sd.Watchdog(nctx, n.watchdogHealthy, n.log)

	first := make(chan firstPass, 1)
	go func() { first <- n.waitFirstPass(nctx) }()
	stopping := ctx.Done()
	var usr2 <-chan os.Signal // read once ready: a SIGUSR2 before waits
	var statusTick <-chan time.Time
	lastStatus := ""
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
			if u.child() {
				_ = n.sd.ReadyAsMain(lastStatus)
				u.ready(n)
			} else {
				_ = n.sd.Ready(lastStatus)
			}
			n.sdReady.Store(true)
			n.log.Info("ready", "status", lastStatus)
			if u != nil {
				usr2 = u.usr2
			}
			t := time.NewTicker(time.Second)
			defer t.Stop()
			statusTick = t.C
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

// ready is the new process's side once it serves: tell the old one, then
// wait (in the background) until it has released VRRP or is gone, and run
// the instances alone from then on.
func (u *upgrades) ready(n *node) {
	u.closeInherited()
	ctl := u.ctl
	u.ctl = nil
	if _, err := ctl.WriteString("ready\n"); err != nil {
		n.log.Warn("upgrade: the old process cannot be told this one is ready", "error", err)
	}
	go func() {
		line, err := bufio.NewReader(ctl).ReadString('\n')
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
		n.log.Info("upgrade complete: this process alone runs the node", "from", u.spec.PID, "vrrp", how)
	}()
}
