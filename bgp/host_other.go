//go:build !linux

package bgp

import (
	"errors"
	"net/netip"
)

// hostSystem off Linux refuses to hold prefixes (local routes need
// netlink); the package builds so that validate and plan do.
func hostSystem() Host { return unsupportedHost{} }

type unsupportedHost struct{}

var errNotLinux = errors.New("bgp: holding announced prefixes needs Linux (netlink)")

func (unsupportedHost) SetPrefixes([]netip.Prefix) error { return errNotLinux }
func (unsupportedHost) Close() error                     { return nil }
