package pvesim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// pval is one request parameter with the JSON kind it arrived as, because
// PVE's validator is stricter for booleans given as strings (API.md 1.2).
type pval struct {
	s    string
	kind byte // 's' string (also every form/query value), 'n' number, 'b' JSON boolean
}

type params map[string]pval

// readParams merges the body (JSON or form) and the query string; query
// parameters win, as in pve-http-server.
func readParams(r *http.Request) (params, *apiError) {
	p := params{}
	if r.Body != nil {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			return nil, &apiError{code: 400, msg: "unable to read request body"}
		}
		body = bytes.TrimSpace(body)
		ct := r.Header.Get("Content-Type")
		switch {
		case len(body) == 0:
		case strings.HasPrefix(ct, "application/json"):
			dec := json.NewDecoder(bytes.NewReader(body))
			dec.UseNumber()
			var m map[string]any
			if err := dec.Decode(&m); err != nil {
				return nil, &apiError{code: 400, msg: "Parameter verification failed.", errs: map[string]string{"body": "unable to parse JSON body: " + err.Error()}}
			}
			for k, v := range m {
				switch v := v.(type) {
				case string:
					p[k] = pval{s: v, kind: 's'}
				case json.Number:
					p[k] = pval{s: v.String(), kind: 'n'}
				case bool:
					s := "0"
					if v {
						s = "1"
					}
					p[k] = pval{s: s, kind: 'b'}
				case nil:
				case []any:
					// "-list" formatted strings accept an array, joined with ','.
					var parts []string
					for _, e := range v {
						parts = append(parts, fmt.Sprint(e))
					}
					p[k] = pval{s: strings.Join(parts, ","), kind: 's'}
				default:
					return nil, &apiError{code: 400, msg: "Parameter verification failed.", errs: map[string]string{k: "type check failed - got an object"}}
				}
			}
		default:
			vals, err := url.ParseQuery(string(body))
			if err != nil {
				return nil, &apiError{code: 400, msg: "Parameter verification failed.", errs: map[string]string{"body": "unable to parse form body"}}
			}
			for k, v := range vals {
				p[k] = pval{s: v[0], kind: 's'}
			}
		}
	}
	for k, v := range r.URL.Query() {
		p[k] = pval{s: v[0], kind: 's'}
	}
	return p, nil
}

// kind of a schema parameter.
type ptype int

const (
	tString ptype = iota
	tBool
	tInt
	tNumber
	tNet
	tIPConfig
	tDrive
	tTags
	tDNSName
	tSSHKeys
	tMemory
	tAgent
	tVGA
	tCPU
	tSerial
	tDelete
)

var (
	reDNSName = regexp.MustCompile(`^(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?)(?:\.(?:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?))*$`)
	reTag     = regexp.MustCompile(`^(?i)[a-z0-9_][a-z0-9_\-+.]*$`)
	reMAC     = regexp.MustCompile(`^(?i)[0-9a-f]{2}(?::[0-9a-f]{2}){5}$`)
	reIndexed = regexp.MustCompile(`^([a-z]+)(\d+)$`)
	reSize    = regexp.MustCompile(`^(\+)?(\d+(?:\.\d+)?)([KMGT])?$`)
)

// configKeyType returns the type of a VM config key, false if the key is
// not in the schema (the subset of qemu-server's schema the simulator knows).
func configKeyType(k string) (ptype, bool) {
	switch k {
	case "onboot", "numa", "protection", "template", "ciupgrade", "acpi", "kvm", "tablet", "autostart", "localtime", "reboot":
		return tBool, true
	case "cores", "sockets", "vcpus", "balloon", "cpuunits", "shares":
		return tInt, true
	case "cpulimit":
		return tNumber, true
	case "memory":
		return tMemory, true
	case "name":
		return tDNSName, true
	case "tags":
		return tTags, true
	case "agent":
		return tAgent, true
	case "vga":
		return tVGA, true
	case "cpu":
		return tCPU, true
	case "sshkeys":
		return tSSHKeys, true
	case "description", "ciuser", "cipassword", "citype", "cicustom", "nameserver", "searchdomain",
		"boot", "ostype", "scsihw", "hotplug", "smbios1", "vmgenid", "meta", "machine", "bios", "lock", "startup", "hookscript", "args":
		return tString, true
	}
	if m := reIndexed.FindStringSubmatch(k); m != nil {
		n, _ := strconv.Atoi(m[2])
		switch m[1] {
		case "net":
			return tNet, n <= 31
		case "ipconfig":
			return tIPConfig, n <= 31
		case "scsi":
			return tDrive, n <= 30
		case "virtio":
			return tDrive, n <= 15
		case "sata":
			return tDrive, n <= 5
		case "ide":
			return tDrive, n <= 3
		case "serial":
			return tSerial, n <= 3
		case "unused":
			return tString, n <= 255
		}
	}
	return 0, false
}

// errNotInSchema is PVE's answer to a parameter it does not know.
const errNotInSchema = "property is not defined in schema and the schema does not allow additional properties"

// checkConfigKey validates config key k set to v: the value as PVE
// stores it goes into set, or the error text into errs.
func checkConfigKey(k string, v pval, set, errs map[string]string) {
	t, ok := configKeyType(k)
	if !ok {
		errs[k] = errNotInSchema
		return
	}
	val, msg := check(t, v)
	if msg != "" {
		errs[k] = msg
		return
	}
	set[k] = val
}

// check validates one value against its type and returns the value as PVE
// stores it, or the error text for the 400 "errors" object.
func check(t ptype, v pval) (string, string) {
	switch t {
	case tBool:
		// Top-level booleans: 1/0 as number or string, or JSON true/false;
		// the strings "true"/"yes"/"on" are rejected (API.md 1.2).
		if v.kind == 'b' || v.s == "0" || v.s == "1" {
			return v.s, ""
		}
		return "", fmt.Sprintf("type check ('boolean') failed - got '%s'", v.s)
	case tInt:
		if _, err := strconv.Atoi(v.s); err != nil || v.kind == 'b' {
			return "", fmt.Sprintf("type check ('integer') failed - got '%s'", v.s)
		}
		return v.s, ""
	case tNumber:
		if _, err := strconv.ParseFloat(v.s, 64); err != nil || v.kind == 'b' {
			return "", fmt.Sprintf("type check ('number') failed - got '%s'", v.s)
		}
		return v.s, ""
	case tMemory:
		s := strings.TrimPrefix(v.s, "current=")
		if n, err := strconv.Atoi(s); err != nil || n < 16 {
			return "", "invalid format - value must be an integer >= 16 (MiB)"
		}
		return v.s, ""
	case tDNSName:
		if !reDNSName.MatchString(v.s) {
			return "", fmt.Sprintf("value '%s' does not look like a valid DNS name", v.s)
		}
		return v.s, ""
	case tTags:
		for _, tg := range strings.FieldsFunc(v.s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' }) {
			if !reTag.MatchString(tg) {
				return "", fmt.Sprintf("invalid format - invalid tag '%s'", tg)
			}
		}
		return sortedTags(v.s), ""
	case tNet:
		n, err := parseNet(v.s)
		if err != "" {
			return "", "invalid format - format error\n" + err
		}
		return n.String(), ""
	case tIPConfig:
		if err := checkIPConfig(v.s); err != "" {
			return "", "invalid format - format error\n" + err
		}
		return v.s, ""
	case tDrive:
		if _, err := parseDrive(v.s); err != "" {
			return "", "invalid format - format error\n" + err
		}
		return v.s, ""
	case tSSHKeys:
		if strings.Contains(v.s, "+") {
			return "", "invalid format - invalid urlencoded string: " + v.s
		}
		if _, err := url.PathUnescape(v.s); err != nil {
			return "", "invalid format - invalid urlencoded string: " + v.s
		}
		return v.s, ""
	case tAgent:
		m, _ := parseProp(v.s, "enabled")
		if e := m["enabled"]; e != "0" && e != "1" {
			return "", "invalid format - agent.enabled: type check ('boolean') failed"
		}
		return v.s, ""
	case tVGA:
		m, _ := parseProp(v.s, "type")
		if !slices.Contains([]string{"std", "cirrus", "vmware", "qxl", "qxl2", "qxl3", "qxl4", "serial0", "serial1", "serial2", "serial3", "virtio", "virtio-gl", "none"}, m["type"]) {
			return "", fmt.Sprintf("invalid format - vga.type: value '%s' does not have a value in the enumeration", m["type"])
		}
		return v.s, ""
	case tCPU:
		m, _ := parseProp(v.s, "cputype")
		if m["cputype"] == "" {
			return "", "invalid format - cpu.cputype: property is missing"
		}
		return v.s, ""
	case tSerial:
		if v.s != "socket" && !strings.HasPrefix(v.s, "/dev/") {
			return "", "invalid format - value does not match the regex pattern"
		}
		return v.s, ""
	}
	return v.s, ""
}

// parseProp splits a property string "a=1,b=2" (the first part may omit
// its key, which is then defKey).
func parseProp(s, defKey string) (map[string]string, []string) {
	m := map[string]string{}
	var order []string
	for i, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok && i == 0 {
			k, v = defKey, part
		}
		m[k] = v
		order = append(order, k)
	}
	return m, order
}

var netModels = []string{"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci", "pcnet"}

// netDev is a parsed netN value.
type netDev struct {
	model, mac string
	opts       map[string]string // bridge, tag, firewall, ...
}

// String prints the canonical form: model=MAC first, then the options in
// alphabetical order (API.md 7.1).
func (n netDev) String() string {
	return joinProps(n.model+"="+n.mac, n.opts)
}

// joinProps renders a property string: first, then the options as
// key=value in alphabetical order.
func joinProps(first string, opts map[string]string) string {
	parts := []string{first}
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		parts = append(parts, k+"="+opts[k])
	}
	return strings.Join(parts, ",")
}

func parseNet(s string) (netDev, string) {
	n := netDev{opts: map[string]string{}}
	for _, part := range strings.Split(s, ",") {
		k, v, hasV := strings.Cut(part, "=")
		switch {
		case slices.Contains(netModels, k):
			n.model = k
			if hasV {
				n.mac = strings.ToUpper(v)
			}
		case k == "model":
			n.model = v
		case k == "macaddr":
			n.mac = strings.ToUpper(v)
		case k == "bridge" || k == "firewall" || k == "link_down" || k == "mtu" || k == "queues" || k == "rate" || k == "tag" || k == "trunks":
			n.opts[k] = v
		default:
			return n, fmt.Sprintf("net: unknown option '%s'", k)
		}
	}
	if !slices.Contains(netModels, n.model) {
		return n, fmt.Sprintf("model: value '%s' does not have a value in the enumeration", n.model)
	}
	if n.mac != "" && !reMAC.MatchString(n.mac) {
		return n, "macaddr: invalid format"
	}
	if t, ok := n.opts["tag"]; ok {
		if v, err := strconv.Atoi(t); err != nil || v < 1 || v > 4094 {
			return n, "tag: value must have a maximum value of 4094"
		}
	}
	for _, b := range []string{"firewall", "link_down"} {
		if v, ok := n.opts[b]; ok {
			switch strings.ToLower(v) {
			case "1", "on", "yes", "true":
				n.opts[b] = "1"
			case "0", "off", "no", "false":
				n.opts[b] = "0"
			default:
				return n, b + ": type check ('boolean') failed"
			}
		}
	}
	return n, ""
}

func checkIPConfig(s string) string {
	m, _ := parseProp(s, "")
	if _, ok := m[""]; ok {
		return "ipconfig: unknown option"
	}
	for k := range m {
		if !slices.Contains([]string{"ip", "gw", "ip6", "gw6"}, k) {
			return fmt.Sprintf("ipconfig: unknown option '%s'", k)
		}
	}
	if ip, ok := m["ip"]; ok && ip != "dhcp" {
		p, err := netip.ParsePrefix(ip)
		if err != nil || !p.Addr().Is4() {
			return "ip: invalid format - value does not look like a valid IPv4 network configuration"
		}
	}
	if gw, ok := m["gw"]; ok {
		a, err := netip.ParseAddr(gw)
		if err != nil || !a.Is4() {
			return "gw: invalid format - value does not look like a valid IPv4 address"
		}
		if ip := m["ip"]; ip == "" || ip == "dhcp" {
			return "gw: gateway specified without specifying an IP address"
		}
	}
	return ""
}

// drive is a parsed disk value.
type drive struct {
	file string
	opts map[string]string
}

func (d drive) String() string {
	return joinProps(d.file, d.opts)
}

func parseDrive(s string) (drive, string) {
	m, order := parseProp(s, "file")
	d := drive{file: m["file"], opts: map[string]string{}}
	if d.file == "" {
		return d, "file: property is missing"
	}
	if strings.ContainsAny(d.file, "= \t\n") {
		return d, fmt.Sprintf("file: invalid volume ID '%s'", d.file)
	}
	for _, k := range order {
		if k == "file" {
			continue
		}
		switch k {
		case "media", "size", "format", "cache", "discard", "iothread", "ssd", "backup", "replicate", "aio", "serial", "cyls", "heads", "secs", "trans", "snapshot", "ro", "wwn":
			d.opts[k] = m[k]
		default:
			return d, fmt.Sprintf("drive: unknown option '%s'", k)
		}
	}
	if f, ok := d.opts["format"]; ok && !slices.Contains([]string{"raw", "qcow2", "vmdk"}, f) {
		return d, "format: value does not have a value in the enumeration"
	}
	if m := d.opts["media"]; m != "" && m != "cdrom" && m != "disk" {
		return d, "media: value does not have a value in the enumeration"
	}
	return d, ""
}

// parseSize parses a resize size; rel is true for "+N".
func parseSize(s string) (bytes float64, rel bool, ok bool) {
	m := reSize.FindStringSubmatch(s)
	if m == nil {
		return 0, false, false
	}
	f, _ := strconv.ParseFloat(m[2], 64)
	switch m[3] {
	case "K":
		f *= 1 << 10
	case "M":
		f *= 1 << 20
	case "G":
		f *= 1 << 30
	case "T":
		f *= 1 << 40
	}
	return f, m[1] == "+", true
}

// formatSize writes a size with the largest exact unit (8 GiB → 8G,
// 8.5 GiB → 8704M), as PVE prints size= in disk strings.
func formatSize(n int64) string {
	for _, u := range []struct {
		s string
		n int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.n && n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ';' || r == ' ' || r == '\t' || r == '\n' })
}

func isDriveKey(k string) bool {
	t, ok := configKeyType(k)
	return ok && t == tDrive
}
