package haproxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Addr is an address as HAProxy writes it in bind and server lines.
type Addr struct {
	Raw string
	// Family is a prefix such as "ipv4@", "ipv6@", "unix@", "fd@"; "" when none.
	Family string
	// Host is an IP literal, a host name, "" or "*" (every address), or a
	// path for unix sockets.
	Host string
	// IP is Host parsed when it is an IP literal.
	IP netip.Addr
	// Port is 0 when absent; PortHigh > Port for a range (bind only).
	Port, PortHigh int
	// PortOffset is set for server ports written "+N" or "-N".
	PortOffset bool
}

// IsInet reports whether the address is an IP (or host name) and port.
func (a Addr) IsInet() bool {
	return a.Family == "" || a.Family == "ipv4@" || a.Family == "ipv6@"
}

// parseAddr reads "[FAMILY@]HOST:PORT", ":PORT", "[V6]:PORT", "V6:PORT"
// (HAProxy splits at the last colon) or a unix path. needPort says whether
// a port is required (bind) or optional (server).
func parseAddr(raw string, bind bool) (Addr, error) {
	a := Addr{Raw: raw}
	s := raw
	if i := strings.Index(s, "@"); i > 0 && !strings.Contains(s[:i], ":") && !strings.Contains(s[:i], "/") {
		a.Family = s[:i+1]
		s = s[i+1:]
		switch a.Family {
		case "ipv4@", "ipv6@":
		case "unix@", "abns@", "abnsz@", "fd@", "sockpair@", "uxst@", "uxdg@", "udp@", "udp4@", "udp6@", "quic4@", "quic6@", "tcp@", "tcp4@", "tcp6@", "rhttp@", "mptcp@", "mptcp4@", "mptcp6@":
			a.Host = s
			return a, nil
		default:
			return a, fmt.Errorf("bad address %q: unknown address family %q", raw, a.Family)
		}
	}
	if strings.HasPrefix(s, "/") {
		a.Family = "unix@"
		a.Host = s
		return a, nil
	}
	var host, port string
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return a, fmt.Errorf("bad address %q: '[' without ']'", raw)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return a, fmt.Errorf("bad address %q: expected ':' and a port after ']'", raw)
			}
			port = rest[1:]
		}
	case strings.Contains(s, ":"):
		i := strings.LastIndexByte(s, ':')
		host, port = s[:i], s[i+1:]
	default:
		host = s
	}
	a.Host = host
	if host != "" && host != "*" {
		if ip, err := netip.ParseAddr(host); err == nil {
			if ip.Zone() != "" {
				return a, fmt.Errorf("bad address %q: zones are not supported", raw)
			}
			a.IP = ip.Unmap()
		} else if strings.Contains(host, "${") {
			return a, fmt.Errorf("bad address %q: HAProxy expands the environment variable at start, the importer cannot: write the address itself", raw)
		} else if looksNumeric(host) || strings.Contains(host, ":") {
			return a, fmt.Errorf("bad address %q: %q is not an IP address", raw, host)
		} else if !hostName(host) {
			return a, fmt.Errorf("bad address %q: %q is neither an IP address nor a host name", raw, host)
		}
	} else if !bind {
		return a, fmt.Errorf("bad address %q: a server needs an address", raw)
	}
	switch {
	case port == "" && bind:
		return a, fmt.Errorf("bad address %q: a bind needs a port, as :80 or 192.0.2.1:80", raw)
	case port == "":
	case !bind && (port[0] == '+' || port[0] == '-'):
		n, err := strconv.Atoi(port[1:])
		if err != nil || n > 65535 {
			return a, fmt.Errorf("bad address %q: bad port offset %q", raw, port)
		}
		a.PortOffset = true
		a.Port = n
	default:
		lo, hi, isRange := strings.Cut(port, "-")
		p, err := strconv.Atoi(lo)
		if err != nil || p < 1 || p > 65535 {
			return a, fmt.Errorf("bad address %q: bad port %q, expected 1..65535", raw, lo)
		}
		a.Port, a.PortHigh = p, p
		if isRange {
			if !bind {
				return a, fmt.Errorf("bad address %q: a server port cannot be a range", raw)
			}
			q, err := strconv.Atoi(hi)
			if err != nil || q < p || q > 65535 {
				return a, fmt.Errorf("bad address %q: bad port range %q", raw, port)
			}
			a.PortHigh = q
		}
	}
	if a.IP.IsValid() && a.Family == "ipv4@" && !a.IP.Is4() || a.IP.IsValid() && a.Family == "ipv6@" && !a.IP.Is6() {
		return a, fmt.Errorf("bad address %q: %s does not match %s", raw, a.IP, a.Family)
	}
	return a, nil
}

func looksNumeric(h string) bool {
	for i := 0; i < len(h); i++ {
		if (h[i] < '0' || h[i] > '9') && h[i] != '.' {
			return false
		}
	}
	return true
}

func hostName(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return h != ""
}
