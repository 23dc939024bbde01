package failover

import (
	"fmt"
	"strings"
	"syscall"
)

// Linux capabilities an instance needs, as CapabilityError names them.
const (
	CapNetAdmin = "CAP_NET_ADMIN"
	CapNetRaw   = "CAP_NET_RAW"
)

// CapabilityError says the process may not do what an instance needs.
type CapabilityError struct {
	Interface string
	Missing   []string // CapNetAdmin, CapNetRaw
}

func (e *CapabilityError) Error() string {
	why := map[string]string{
		CapNetAdmin: CapNetAdmin + " (to add the VIPs when it becomes master)",
		CapNetRaw:   CapNetRaw + " (to send and receive VRRP and gratuitous ARP / NA)",
	}
	var b strings.Builder
	for i, c := range e.Missing {
		if i > 0 {
			b.WriteString(" and ")
		}
		b.WriteString(why[c])
	}
	return fmt.Sprintf("interface %s: not permitted: the process lacks %s; run gitedge as root or grant it %s (systemd: AmbientCapabilities=%s %s)",
		e.Interface, b.String(), strings.Join(e.Missing, " and "), CapNetAdmin, CapNetRaw)
}

// Transient answers false: retrying cannot grant a capability (the
// reconcile loop reports it as stalled instead of retrying it every few
// seconds); a restart with the capability can.
func (e *CapabilityError) Transient() bool { return false }

// Unwrap makes errors.Is(err, os.ErrPermission) hold.
func (e *CapabilityError) Unwrap() error { return syscall.EPERM }
