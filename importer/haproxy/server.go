package haproxy

import (
	"fmt"
	"strconv"
	"time"
)

// ServerOptions are the options of a server or default-server line that
// gitedge can carry over; Other keeps the rest as written.
type ServerOptions struct {
	Weight     Setting[int]
	MaxConn    Setting[int]
	SendProxy  Setting[int] // 0 none, 1 send-proxy, 2 send-proxy-v2
	Check      Setting[bool]
	Inter      Setting[time.Duration]
	Rise, Fall Setting[int]
	Backup     Setting[bool]
	Disabled   Setting[bool]
	// Other holds the remaining options, each with its arguments.
	Other [][]string
	// Unknown is the first option this parser does not know, and the
	// words after it, which it could not interpret.
	Unknown []string
}

// Server is one server line, with default-server options applied.
type Server struct {
	*Directive
	Name string
	Addr Addr
	ServerOptions
}

// serverFlags take no argument; serverArgs take one.
var (
	serverFlags = map[string]bool{
		"backup": true, "no-backup": true, "check": true, "no-check": true, "disabled": true, "enabled": true,
		"send-proxy": true, "no-send-proxy": true, "send-proxy-v2": true, "no-send-proxy-v2": true,
		"send-proxy-v2-ssl": true, "send-proxy-v2-ssl-cn": true, "no-send-proxy-v2-ssl": true, "no-send-proxy-v2-ssl-cn": true,
		"check-send-proxy": true, "no-check-send-proxy": true, "check-ssl": true, "no-check-ssl": true,
		"ssl": true, "no-ssl": true, "tfo": true, "no-tfo": true, "tls-tickets": true, "no-tls-tickets": true,
		"no-verifyhost": true, "non-stick": true, "stick": true, "allow-0rtt": true, "agent-check": true,
		"no-agent-check": true, "force-sslv3": true, "force-tlsv10": true, "force-tlsv11": true, "force-tlsv12": true,
		"force-tlsv13": true, "no-sslv3": true, "no-tlsv10": true, "no-tlsv11": true, "no-tlsv12": true, "no-tlsv13": true,
		"ssl-reuse": true, "no-ssl-reuse": true, "check-via-socks4": true, "redispatch": true,
	}
	serverArgs = map[string]bool{
		"weight": true, "maxconn": true, "minconn": true, "maxqueue": true, "inter": true, "fastinter": true,
		"downinter": true, "rise": true, "fall": true, "port": true, "addr": true, "cookie": true, "id": true,
		"slowstart": true, "on-error": true, "on-marked-down": true, "on-marked-up": true, "error-limit": true,
		"observe": true, "init-addr": true, "resolvers": true, "resolve-prefer": true, "resolve-net": true,
		"resolve-opts": true, "source": true, "ca-file": true, "crt": true, "ciphers": true, "ciphersuites": true,
		"sni": true, "verify": true, "verifyhost": true, "alpn": true, "npn": true, "check-alpn": true, "check-proto": true,
		"check-sni": true, "proto": true, "pool-max-conn": true, "pool-purge-delay": true, "pool-low-conn": true,
		"max-reuse": true, "namespace": true, "redir": true, "track": true, "agent-port": true, "agent-inter": true,
		"agent-addr": true, "agent-send": true, "ssl-min-ver": true, "ssl-max-ver": true, "crl-file": true,
		"tcp-ut": true, "proxy-v2-options": true, "socks4": true, "ws": true, "shard": true, "log-proto": true,
		"set-proxy-v2-tlv-fmt": true, "curves": true, "sigalgs": true, "client-sigalgs": true, "guid": true,
		"hash-key": true, "log-bufsize": true, "check-pool-conn-name": true, "pool-conn-name": true, "strict-maxconn": true,
	}
)

// parseServerOptions applies the option words to o. d locates errors.
func parseServerOptions(d *Directive, o *ServerOptions, words []string) error {
	for i := 0; i < len(words); i++ {
		w := words[i]
		set := func(v bool) Setting[bool] { return Setting[bool]{Val: v, Set: true, From: d} }
		if serverFlags[w] {
			switch w {
			case "backup":
				o.Backup = set(true)
			case "no-backup":
				o.Backup = set(false)
			case "check":
				o.Check = set(true)
			case "no-check":
				o.Check = set(false)
			case "disabled":
				o.Disabled = set(true)
			case "enabled":
				o.Disabled = set(false)
			case "send-proxy":
				o.SendProxy = Setting[int]{Val: 1, Set: true, From: d}
			case "send-proxy-v2":
				o.SendProxy = Setting[int]{Val: 2, Set: true, From: d}
			case "no-send-proxy", "no-send-proxy-v2":
				o.SendProxy = Setting[int]{Val: 0, Set: true, From: d}
			default:
				o.Other = append(o.Other, []string{w})
			}
			continue
		}
		if !serverArgs[w] {
			o.Unknown = words[i:]
			return nil
		}
		if i+1 >= len(words) {
			return fmt.Errorf("server option %q needs a value", w)
		}
		v := words[i+1]
		i++
		switch w {
		case "weight", "maxconn", "rise", "fall":
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("server option %s %q: expected a whole number", w, v)
			}
			s := Setting[int]{Val: n, Set: true, From: d}
			switch w {
			case "weight":
				if n > 256 {
					return fmt.Errorf("server option weight %d: HAProxy allows 0..256", n)
				}
				o.Weight = s
			case "maxconn":
				o.MaxConn = s
			case "rise":
				if n < 1 {
					return fmt.Errorf("server option rise %d: must be at least 1", n)
				}
				o.Rise = s
			case "fall":
				if n < 1 {
					return fmt.Errorf("server option fall %d: must be at least 1", n)
				}
				o.Fall = s
			}
		case "inter":
			t, err := ParseTime(v)
			if err != nil {
				return fmt.Errorf("server option inter: %v", err)
			}
			if t <= 0 {
				return fmt.Errorf("server option inter %q: must be more than 0", v)
			}
			o.Inter = Setting[time.Duration]{Val: t, Set: true, From: d}
		default:
			o.Other = append(o.Other, []string{w, v})
		}
	}
	return nil
}

// merge returns o with every option set in over replacing its own, as a
// server line does with the default-server options before it.
func (o ServerOptions) merge(over ServerOptions) ServerOptions {
	out := o
	over.Weight.into(&out.Weight)
	over.MaxConn.into(&out.MaxConn)
	over.SendProxy.into(&out.SendProxy)
	over.Check.into(&out.Check)
	over.Inter.into(&out.Inter)
	over.Rise.into(&out.Rise)
	over.Fall.into(&out.Fall)
	over.Backup.into(&out.Backup)
	over.Disabled.into(&out.Disabled)
	out.Other = append(append([][]string(nil), o.Other...), over.Other...)
	if over.Unknown != nil {
		out.Unknown = over.Unknown
	}
	return out
}

// Bind is one bind line: its addresses and options.
type Bind struct {
	*Directive
	Addrs       []Addr
	AcceptProxy bool
	SSL         bool
	// Other holds the remaining options, each with its arguments.
	Other [][]string
	// Unknown is the first option this parser does not know and the words
	// after it.
	Unknown []string
}

var (
	bindFlags = map[string]bool{
		"accept-proxy": true, "ssl": true, "v4v6": true, "v6only": true, "transparent": true, "defer-accept": true,
		"tfo": true, "allow-0rtt": true, "no-sslv3": true, "no-tlsv10": true, "no-tlsv11": true, "no-tlsv12": true,
		"no-tlsv13": true, "force-sslv3": true, "force-tlsv10": true, "force-tlsv11": true, "force-tlsv12": true,
		"force-tlsv13": true, "strict-sni": true, "prefer-client-ciphers": true, "no-ca-names": true,
		"generate-certificates": true, "no-tls-tickets": true, "tls-tickets": true, "quic-force-retry": true,
		"no-alpn": true, "idle-ping": true,
	}
	bindArgs = map[string]bool{
		"crt": true, "crt-list": true, "alpn": true, "npn": true, "ciphers": true, "ciphersuites": true,
		"ca-file": true, "crl-file": true, "verify": true, "name": true, "id": true, "interface": true,
		"maxconn": true, "backlog": true, "mode": true, "uid": true, "gid": true, "user": true, "group": true,
		"process": true, "thread": true, "nice": true, "namespace": true, "curves": true, "ecdhe": true,
		"ssl-min-ver": true, "ssl-max-ver": true, "tcp-ut": true, "mss": true, "proto": true, "level": true,
		"severity-output": true, "accept-netscaler-cip": true, "ca-verify-file": true, "ca-sign-file": true,
		"ca-sign-pass": true, "sigalgs": true, "client-sigalgs": true, "crt-ignore-err": true, "ca-ignore-err": true,
		"quic-cc-algo": true, "shards": true, "label": true, "guid-prefix": true, "quic-socket": true, "tcp-md5sig": true,
	}
)

func parseBind(d *Directive, words []string) (*Bind, error) {
	if len(words) == 0 {
		return nil, fmt.Errorf("bind needs an address, as :80")
	}
	b := &Bind{Directive: d}
	for raw := range splitComma(words[0]) {
		a, err := parseAddr(raw, true)
		if err != nil {
			return nil, err
		}
		b.Addrs = append(b.Addrs, a)
	}
	rest := words[1:]
	for i := 0; i < len(rest); i++ {
		w := rest[i]
		switch {
		case w == "accept-proxy":
			b.AcceptProxy = true
		case w == "ssl":
			b.SSL = true
		case bindFlags[w]:
			b.Other = append(b.Other, []string{w})
		case w == "expose-fd":
			if i+1 >= len(rest) {
				return nil, fmt.Errorf("bind option expose-fd needs a value")
			}
			b.Other = append(b.Other, rest[i:i+2])
			i++
		case bindArgs[w]:
			if i+1 >= len(rest) {
				return nil, fmt.Errorf("bind option %q needs a value", w)
			}
			b.Other = append(b.Other, rest[i:i+2])
			i++
		default:
			b.Unknown = rest[i:]
			return b, nil
		}
	}
	return b, nil
}

// splitComma yields the non-empty parts of a comma-separated list.
func splitComma(s string) func(func(string) bool) {
	return func(yield func(string) bool) {
		start := 0
		for i := 0; i <= len(s); i++ {
			if i == len(s) || s[i] == ',' {
				if i > start && !yield(s[start:i]) {
					return
				}
				start = i + 1
			}
		}
	}
}
