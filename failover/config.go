package failover

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Config is what one node runs: its VRRP instances with this node's
// priority and peers already resolved. It is plain data; Equal compares it.
type Config struct {
	Instances []Instance
}

// Instance is one VRRP virtual router as seen by this node.
type Instance struct {
	Name      string
	Interface string
	VRID      uint8 // 1..255
	Version   int   // 2 (RFC 3768) or 3 (RFC 5798)
	// AdvertInterval: v3 has centisecond resolution (10ms..40.95s), v2 whole
	// seconds (1s..255s). Default 1s.
	AdvertInterval time.Duration
	// Priority is this node's priority: 1..254, or 255 for the address owner.
	Priority     uint8
	Preempt      bool          // default true
	PreemptDelay time.Duration // default 0
	// AuthPass is the v2 simple-text password (keepalived auth_type PASS);
	// "" means no authentication. At most 8 bytes.
	AuthPass string
	// UnicastPeers, when not empty, receive the advertisements instead of the
	// multicast group (224.0.0.18 / ff02::12).
	UnicastPeers []netip.Addr
	// UnicastSource is this node's address, the source of unicast adverts.
	UnicastSource netip.Addr
	VIPs          []netip.Prefix
	// TrackProxy makes the instance leave mastership while this node's proxy
	// listeners are unhealthy.
	TrackProxy bool
	// TrackInterfaces lists further interfaces whose loss puts the instance
	// in fault (its own Interface is always tracked).
	TrackInterfaces []string
	GARP            GARP
}

// GARP controls the gratuitous ARPs / unsolicited NAs sent for the VIPs.
type GARP struct {
	Repeat  int           // per burst on becoming master; default 5
	Delay   time.Duration // delay of the second burst; 0 = none; default 5s
	Refresh time.Duration // periodic refresh while master; 0 = off; default 60s
}

// Equal reports whether two configs are identical.
func (c Config) Equal(o Config) bool {
	return slices.EqualFunc(c.Instances, o.Instances, Instance.Equal)
}

// Equal reports whether two instances are identical.
func (i Instance) Equal(o Instance) bool {
	return i.Name == o.Name && i.Interface == o.Interface && i.VRID == o.VRID &&
		i.Version == o.Version && i.AdvertInterval == o.AdvertInterval &&
		i.Priority == o.Priority && i.Preempt == o.Preempt && i.PreemptDelay == o.PreemptDelay &&
		i.AuthPass == o.AuthPass && slices.Equal(i.UnicastPeers, o.UnicastPeers) &&
		i.UnicastSource == o.UnicastSource && slices.Equal(i.VIPs, o.VIPs) &&
		i.TrackProxy == o.TrackProxy && slices.Equal(i.TrackInterfaces, o.TrackInterfaces) &&
		i.GARP == o.GARP
}

// FieldError is a validation problem in one instance; Field is a path below
// the instance ("vips[1]").
type FieldError struct {
	Instance, Field, Msg string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("instance %q: %s: %s", e.Instance, e.Field, e.Msg)
}

// ValidateInstance checks one instance's protocol limits.
func ValidateInstance(in Instance) []*FieldError {
	var errs []*FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{in.Name, field, fmt.Sprintf(format, args...)})
	}
	if in.VRID == 0 {
		add("virtualRouterID", "must be 1..255")
	}
	switch in.Version {
	case 2:
		// RFC 3768 §5.3.7: Adver Int is an 8-bit count of seconds.
		if in.AdvertInterval < time.Second || in.AdvertInterval > 255*time.Second || in.AdvertInterval%time.Second != 0 {
			add("advertInterval", "VRRP v2 needs whole seconds in 1s..255s, got %s", in.AdvertInterval)
		}
	case 3:
		// RFC 5798 §5.2.7: 12-bit Max Adver Int in centiseconds.
		if in.AdvertInterval < 10*time.Millisecond || in.AdvertInterval > 4095*10*time.Millisecond || in.AdvertInterval%(10*time.Millisecond) != 0 {
			add("advertInterval", "VRRP v3 needs a multiple of 10ms in 10ms..40.95s, got %s", in.AdvertInterval)
		}
		if in.AuthPass != "" {
			add("auth", "authentication is VRRP v2 only (RFC 5798 removed it); use version: 2 or drop auth")
		}
	default:
		add("version", "must be 2 or 3, got %d", in.Version)
	}
	if len(in.AuthPass) > 8 {
		add("auth.password", "at most 8 characters (the VRRP v2 authentication field), got %d", len(in.AuthPass))
	}
	if len(in.VIPs) == 0 {
		add("vips", "at least one virtual IP is required")
	}
	if len(in.VIPs) > 255 {
		add("vips", "at most 255 virtual IPs per instance (the count is one byte)")
	}
	fam := 0
	for j, v := range in.VIPs {
		f := 4
		if v.Addr().Is6() {
			f = 6
			if in.Version == 2 {
				add(fmt.Sprintf("vips[%d]", j), "IPv6 %s needs VRRP v3", v)
			}
		}
		if fam != 0 && f != fam {
			add(fmt.Sprintf("vips[%d]", j), "IPv4 and IPv6 VIPs cannot share one instance (RFC 5798 §5.2.9); use two instances")
		}
		fam = f
	}
	for j, a := range in.UnicastPeers {
		if fam != 0 && a.Unmap().Is4() != (fam == 4) {
			add(fmt.Sprintf("unicastPeers[%d]", j), "peer %s is not of the VIPs' address family: VRRP carries one family per instance", a)
		}
	}
	if s := in.UnicastSource; s.IsValid() && len(in.UnicastPeers) > 0 && fam != 0 && s.Unmap().Is4() != (fam == 4) {
		add("unicastSource", "%s is not of the VIPs' address family", s)
	}
	if in.PreemptDelay < 0 || in.PreemptDelay > 1000*time.Second {
		add("preemptDelay", "must be 0s..1000s")
	}
	return errs
}
