package main

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

// daemonSupported says whether the commands that serve traffic or VRRP
// (run, proxy, vrrp, demo) run on this system: the dataplane splices and
// binds with Linux socket options, failover uses raw sockets and netlink.
// The commands a reviewer runs on a laptop (validate, plan, import,
// inventory, status, version) build and work everywhere.
func daemonSupported() error { return supportedOn(runtime.GOOS) }

// supportedOn is daemonSupported for a given GOOS.
func supportedOn(goos string) error {
	if goos == "linux" {
		return nil
	}
	return fmt.Errorf("runs on Linux only (this is %s); validate, plan, import, inventory, status and version work here", goos)
}

// notifyHUP asks for SIGHUP (reload) for a command that runs a node. Call
// it before anything else: SIGHUP's default action ends the process, and
// a reload asked early must not be lost.
func notifyHUP() (<-chan os.Signal, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}
