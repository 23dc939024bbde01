package failover

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"
)

// Config is what one node runs: its VRRP instances with this node's
// priority and peers already resolved. It is plain data; Equal compares it.
// A running Manager applies most changes in place (see changeRules).
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

// Equal reports whether two instances are identical. It compares every
// field by reflection, so a field added to Instance is compared without
// anyone remembering to; an empty slice equals a nil one.
func (i Instance) Equal(o Instance) bool {
	return len(changedFields(i, o)) == 0
}

// changedFields names the fields of Instance that differ, in declaration
// order.
func changedFields(a, b Instance) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []string
	for i := range va.NumField() {
		fa, fb := va.Field(i), vb.Field(i)
		if fa.Kind() == reflect.Slice && fa.Len() == 0 && fb.Len() == 0 {
			continue
		}
		if !reflect.DeepEqual(fa.Interface(), fb.Interface()) {
			out = append(out, va.Type().Field(i).Name)
		}
	}
	return out
}

// inPlace is the rule of a field a running instance takes without a
// restart (Router.Reconfigure).
func inPlace(a, b Instance) bool { return false }

// needsRestart is the rule of a field whose change needs a new instance.
func needsRestart(a, b Instance) bool { return true }

// changeRules says, for every field of Instance, whether a change to it
// needs the instance restarted (a new socket, a new election) rather than
// applied in place on the running one. A field missing here restarts (the
// safe side), and a test fails until it is classified.
var changeRules = map[string]func(old, next Instance) bool{
	// The identity: another name is another instance.
	"Name": needsRestart,
	// The socket is bound to the interface (SO_BINDTODEVICE) and joined
	// the multicast group on it.
	"Interface": needsRestart,
	// The socket's filter passes one VRID; a new VRID is a new router.
	"VRID": needsRestart,
	// Another protocol: timers, checksum and learned state differ.
	"Version": needsRestart,
	// Taken at the next advertisement (RFC 5798 §6.4.3).
	"AdvertInterval": inPlace,
	"Priority":       inPlace,
	"Preempt":        inPlace,
	"PreemptDelay":   inPlace,
	"AuthPass":       inPlace,
	// The peer list is read at every send and receive; switching between
	// multicast and unicast joins or leaves the group on the socket.
	"UnicastPeers": func(a, b Instance) bool { return (len(a.UnicastPeers) == 0) != (len(b.UnicastPeers) == 0) },
	// A unicast transport's source is fixed when it opens; without unicast
	// peers the source is the interface's address and this field unused.
	"UnicastSource": func(a, b Instance) bool { return len(b.UnicastPeers) > 0 },
	// Added and removed on the holder; another address family needs the
	// other socket (ip4 / ip6).
	"VIPs": func(a, b Instance) bool { return vipFamily(a.VIPs) != vipFamily(b.VIPs) },
	// The Manager tracks and untracks conditions on the running Router.
	"TrackProxy":      inPlace,
	"TrackInterfaces": inPlace,
	// Repeat and Delay apply at the next takeover, Refresh at once.
	"GARP": inPlace,
}

// restartFields names the changed fields that need the instance restarted.
func restartFields(old, next Instance) []string {
	var out []string
	for _, f := range changedFields(old, next) {
		if rule, ok := changeRules[f]; !ok || rule(old, next) {
			out = append(out, f)
		}
	}
	return out
}

// vipFamily is 6 when the VIPs are IPv6, else 4 (an instance carries one
// family, see ValidateInstance).
func vipFamily(vips []netip.Prefix) int {
	if len(vips) > 0 && vips[0].Addr().Is6() {
		return 6
	}
	return 4
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
