package main

import (
	"fmt"
	"runtime"
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
