//go:build !linux

package failover

import (
	"context"
	"errors"
)

// errNotLinux is what every host operation says off Linux: VRRP's raw
// sockets, the VIPs and the link watch use Linux interfaces (AF_PACKET,
// netlink). The package builds everywhere so that validate and plan do.
var errNotLinux = errors.New("VRRP needs Linux (raw sockets and netlink)")

// hostSystem is the System of this host: off Linux, one that refuses.
func hostSystem() System { return unsupportedSystem{} }

type unsupportedSystem struct{}

func (unsupportedSystem) Open(Instance) (Transport, Effects, error) { return nil, nil, errNotLinux }
func (unsupportedSystem) LinkState(string) (LinkState, error)       { return LinkState{}, errNotLinux }
func (unsupportedSystem) Watch(context.Context, Watcher) error      { return errNotLinux }
