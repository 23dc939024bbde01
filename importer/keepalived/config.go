package keepalived

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gitedge/gitedge/importer/report"
)

// Config is what the importer needs from one node's keepalived.conf.
type Config struct {
	Instances []*Instance
	Scripts   map[string]*Script
	// Version is global_defs' vrrp_version; 0 when unset (keepalived: 2).
	Version int
	// Other holds top-level blocks and global_defs lines that are not typed.
	Other []*Block
}

// Instance is one vrrp_instance block.
type Instance struct {
	*Block
	Name            string
	State           string // MASTER or BACKUP; "" when unset
	Interface       string
	VRID            int
	Priority        int // 0 when unset (keepalived: 100)
	AdvertInt       time.Duration
	Version         int // 0 when unset
	AuthType        string
	AuthPass        string
	VIPs            []VIP
	NoPreempt       bool
	PreemptDelay    time.Duration
	UnicastSrc      netip.Addr
	UnicastPeers    []netip.Addr
	TrackScripts    []Track
	TrackInterfaces []Track
	GARPRepeat      int
	GARPDelay       time.Duration
	GARPRefresh     time.Duration
	// Lines maps each typed keyword to where it was written.
	Lines map[string]report.Pos
	// Other holds the lines (and blocks) of the instance that are not typed.
	Other []*Block
}

// VIP is one virtual_ipaddress line.
type VIP struct {
	report.Pos
	Prefix    netip.Prefix
	HasLength bool // written with /LEN; keepalived's default is /32 or /128
	Dev       string
	Label     string
	Other     []string
	Excluded  bool // from virtual_ipaddress_excluded
}

// Track is one track_script or track_interface line.
type Track struct {
	report.Pos
	Name   string
	Weight *int
}

// Script is one vrrp_script block.
type Script struct {
	*Block
	Name     string
	Script   string
	Interval time.Duration
	Weight   *int
	Other    []*Block
	lines    map[string]report.Pos
}

// Lines returns where a keyword of the script was written (the block's
// line when it was not).
func (s *Script) Lines(kw string) report.Pos {
	if p, ok := s.lines[kw]; ok {
		return p
	}
	return s.Pos
}

// Options tell Parse how to follow includes; both nil refuses includes.
type Options struct {
	ReadFile ReadFile
	Glob     Glob
}

// Parse reads one keepalived configuration.
func Parse(file string, data []byte, opts Options) (*Config, error) {
	var errs report.Errors
	p := &parser{read: opts.ReadFile, glob: opts.Glob, errs: &errs}
	top := p.parseFile(file, data)
	c := &Config{Scripts: map[string]*Script{}}
	for _, b := range top {
		switch b.Keyword() {
		case "vrrp_instance":
			in := instance(b, &errs)
			for _, o := range c.Instances {
				if o.Name == in.Name {
					errs.Add(b.Pos, "vrrp_instance %s is already defined at %s", in.Name, o.Pos)
				}
			}
			c.Instances = append(c.Instances, in)
		case "vrrp_script":
			s := script(b, &errs)
			if o, dup := c.Scripts[s.Name]; dup {
				errs.Add(b.Pos, "vrrp_script %s is already defined at %s", s.Name, o.Pos)
			}
			c.Scripts[s.Name] = s
		case "global_defs":
			for _, g := range b.Children {
				if g.Keyword() == "vrrp_version" && len(g.Args) == 2 {
					v, err := strconv.Atoi(g.Args[1])
					if err != nil || (v != 2 && v != 3) {
						errs.Add(g.Pos, "vrrp_version: expected 2 or 3, got %q", g.Args[1])
						continue
					}
					c.Version = v
					continue
				}
				c.Other = append(c.Other, g)
			}
		default:
			c.Other = append(c.Other, b)
		}
	}
	for _, in := range c.Instances {
		for _, t := range in.TrackScripts {
			if _, ok := c.Scripts[t.Name]; !ok {
				errs.Add(t.Pos, "track_script %s: no vrrp_script named %q", t.Name, t.Name)
			}
		}
	}
	return c, errs.Err()
}

func instance(b *Block, errs *report.Errors) *Instance {
	in := &Instance{Block: b, Lines: map[string]report.Pos{}}
	var ok bool
	if in.Name, ok = namedBlock(b, errs); !ok {
		return in
	}
	for _, d := range b.Children {
		kw := d.Keyword()
		args := d.Args[1:]
		fail := func(format string, a ...any) { errs.Add(d.Pos, "%s: %s", kw, fmt.Sprintf(format, a...)) }
		one := func() (string, bool) {
			if len(args) != 1 || d.Braced {
				fail("expected one value")
				return "", false
			}
			return args[0], true
		}
		// oneTo255 reads one number 1..255 into to (a VRID, a priority).
		oneTo255 := func(to *int) {
			if v, ok := one(); ok {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 || n > 255 {
					fail("expected 1..255, got %q", v)
				}
				*to = n
			}
		}
		in.Lines[kw] = d.Pos
		switch kw {
		case "state":
			if v, ok := one(); ok {
				if v != "MASTER" && v != "BACKUP" {
					fail("expected MASTER or BACKUP, got %q", v)
				}
				in.State = v
			}
		case "interface":
			if v, ok := one(); ok {
				in.Interface = v
			}
		case "virtual_router_id":
			oneTo255(&in.VRID)
		case "priority":
			oneTo255(&in.Priority)
		case "advert_int":
			if v, ok := one(); ok {
				t, err := seconds(v)
				if err != nil || t <= 0 {
					fail("expected seconds, as 1 or 0.5, got %q", v)
				}
				in.AdvertInt = t
			}
		case "vrrp_version", "version":
			if v, ok := one(); ok {
				n, err := strconv.Atoi(v)
				if err != nil || (n != 2 && n != 3) {
					fail("expected 2 or 3, got %q", v)
				}
				in.Version = n
			}
		case "authentication":
			if !d.Braced {
				fail("expected a { auth_type …  auth_pass … } block")
				continue
			}
			for _, a := range d.Children {
				switch {
				case a.Keyword() == "auth_type" && len(a.Args) == 2:
					in.AuthType = strings.ToUpper(a.Args[1])
					if in.AuthType != "PASS" && in.AuthType != "AH" {
						errs.Add(a.Pos, "auth_type: expected PASS or AH, got %q", a.Args[1])
					}
				case a.Keyword() == "auth_pass" && len(a.Args) == 2:
					in.AuthPass = a.Args[1]
				case a.Keyword() == "auth_pass":
					errs.Add(a.Pos, "authentication: auth_pass takes one value (the password, not shown here), got %d", len(a.Args)-1)
				default:
					errs.Add(a.Pos, "authentication: unexpected %q (expected auth_type and auth_pass)", a.String())
				}
			}
		case "virtual_ipaddress", "virtual_ipaddress_excluded":
			if !d.Braced {
				fail("expected a { } block of addresses")
				continue
			}
			for _, a := range d.Children {
				v, err := vip(a)
				if err != nil {
					errs.Add(a.Pos, "%s: %v", kw, err)
					continue
				}
				v.Excluded = kw == "virtual_ipaddress_excluded"
				in.VIPs = append(in.VIPs, v)
			}
		case "nopreempt":
			in.NoPreempt = true
		case "preempt":
			in.NoPreempt = false
		case "preempt_delay":
			if v, ok := one(); ok {
				t, err := seconds(v)
				if err != nil || t < 0 || t > 1000*time.Second {
					fail("expected 0..1000 seconds, got %q", v)
				}
				in.PreemptDelay = t
			}
		case "unicast_src_ip":
			if v, ok := one(); ok {
				a, err := netip.ParseAddr(v)
				if err != nil {
					fail("bad address %q: expected an IP address", v)
				}
				in.UnicastSrc = a.Unmap()
			}
		case "unicast_peer":
			if !d.Braced {
				fail("expected a { } block of addresses")
				continue
			}
			for _, a := range d.Children {
				ip, err := netip.ParseAddr(a.Keyword())
				if err != nil {
					errs.Add(a.Pos, "unicast_peer: bad address %q: expected an IP address", a.Keyword())
					continue
				}
				if len(a.Args) > 1 {
					in.Other = append(in.Other, a)
				}
				in.UnicastPeers = append(in.UnicastPeers, ip.Unmap())
			}
		case "track_script", "track_interface":
			if !d.Braced {
				fail("expected a { } block of names")
				continue
			}
			for _, a := range d.Children {
				t := Track{Pos: a.Pos, Name: a.Keyword()}
				if len(a.Args) == 3 && a.Args[1] == "weight" {
					w, err := strconv.Atoi(a.Args[2])
					if err != nil || w < -254 || w > 254 {
						errs.Add(a.Pos, "%s %s: weight must be -254..254, got %q", kw, t.Name, a.Args[2])
					}
					t.Weight = &w
				} else if len(a.Args) != 1 {
					errs.Add(a.Pos, "%s: expected NAME [weight N], got %q", kw, a.String())
				}
				if kw == "track_script" {
					in.TrackScripts = append(in.TrackScripts, t)
				} else {
					in.TrackInterfaces = append(in.TrackInterfaces, t)
				}
			}
		case "garp_master_repeat":
			if v, ok := one(); ok {
				n, err := strconv.Atoi(v)
				if err != nil || n < 1 {
					fail("expected a number, got %q", v)
				}
				in.GARPRepeat = n
			}
		case "garp_master_delay", "garp_master_refresh":
			if v, ok := one(); ok {
				t, err := seconds(v)
				if err != nil || t < 0 {
					fail("expected seconds, got %q", v)
				}
				if kw == "garp_master_delay" {
					in.GARPDelay = t
				} else {
					in.GARPRefresh = t
				}
			}
		default:
			delete(in.Lines, kw)
			in.Other = append(in.Other, d)
		}
	}
	if in.VRID == 0 {
		if _, set := in.Lines["virtual_router_id"]; !set {
			errs.Add(b.Pos, "vrrp_instance %s: virtual_router_id is missing", in.Name)
		}
	}
	if in.Interface == "" {
		if _, set := in.Lines["interface"]; !set {
			errs.Add(b.Pos, "vrrp_instance %s: interface is missing", in.Name)
		}
	}
	return in
}

// vip reads "ADDR[/LEN] [dev IF] [label L] [brd A] [scope S] ...".
func vip(b *Block) (VIP, error) {
	v := VIP{Pos: b.Pos}
	s := b.Keyword()
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return v, fmt.Errorf("bad address %q: expected an IP address with an optional /length", s)
		}
		v.Prefix, v.HasLength = p, true
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return v, fmt.Errorf("bad address %q: expected an IP address with an optional /length", s)
		}
		a = a.Unmap()
		v.Prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if v.Prefix.Addr().Zone() != "" {
		return v, fmt.Errorf("bad address %q: zones are not supported", s)
	}
	args := b.Args[1:]
	for i := 0; i < len(args); i++ {
		switch w := args[i]; w {
		case "dev", "label", "brd", "scope", "peer", "table", "metric", "protocol":
			if i+1 >= len(args) {
				return v, fmt.Errorf("%s needs a value", w)
			}
			switch w {
			case "dev":
				v.Dev = args[i+1]
			case "label":
				v.Label = args[i+1]
			default:
				v.Other = append(v.Other, w, args[i+1])
			}
			i++
		default:
			v.Other = append(v.Other, w)
		}
	}
	return v, nil
}

// namedBlock is the name of a "keyword NAME { … }" block; ok is false,
// the error added, when b is not one.
func namedBlock(b *Block, errs *report.Errors) (name string, ok bool) {
	if len(b.Args) > 1 {
		name = b.Args[1]
	}
	if len(b.Args) != 2 || !b.Braced {
		errs.Add(b.Pos, "%s needs a name and a { } block", b.Keyword())
		return name, false
	}
	return name, true
}

func script(b *Block, errs *report.Errors) *Script {
	s := &Script{Block: b, lines: map[string]report.Pos{}}
	var ok bool
	if s.Name, ok = namedBlock(b, errs); !ok {
		return s
	}
	for _, d := range b.Children {
		s.lines[d.Keyword()] = d.Pos
		switch d.Keyword() {
		case "script":
			if len(d.Args) < 2 {
				errs.Add(d.Pos, "script needs a command")
				continue
			}
			s.Script = strings.Join(d.Args[1:], " ")
		case "interval":
			if len(d.Args) != 2 {
				errs.Add(d.Pos, "interval: expected seconds")
				continue
			}
			t, err := seconds(d.Args[1])
			if err != nil || t <= 0 {
				errs.Add(d.Pos, "interval: expected seconds, got %q", d.Args[1])
			}
			s.Interval = t
		case "weight":
			if len(d.Args) < 2 {
				errs.Add(d.Pos, "weight: expected a number")
				continue
			}
			w, err := strconv.Atoi(d.Args[1])
			if err != nil || w < -254 || w > 254 {
				errs.Add(d.Pos, "weight: expected -254..254, got %q", d.Args[1])
			}
			s.Weight = &w
		default:
			s.Other = append(s.Other, d)
		}
	}
	if s.Script == "" {
		errs.Add(b.Pos, "vrrp_script %s: script is missing", s.Name)
	}
	return s
}

// seconds reads keepalived's decimal seconds ("1", "0.5").
func seconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f > 1e6 || f < -1e6 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return time.Duration(math.Round(f * float64(time.Second))), nil
}
