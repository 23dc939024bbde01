package infra

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Tag marks the VMs gitedge created; only those are ever changed or deleted.
const Tag = "gitedge"

// Config is the infra part of one repository revision.
type Config struct {
	VMs []VM
	// Prune deletes tagged VMs that left the repository.
	Prune bool
}

// VM is the declared spec of one Proxmox VE virtual machine. Zero values
// mean "not managed" unless said otherwise; the loader fills defaults.
type VM struct {
	Name   string // the Proxmox VM name
	VMID   int    // required: the idempotency key across racing nodes (100..999999999)
	Node   string // the Proxmox node the VM lives on
	Clone  string // template VM name to full-clone from
	CPU    string // "host", "x86-64-v2-AES", ...; "" = keep the template's
	Cores  int    // default 1
	Memory int    // MiB, default 512
	OnBoot bool
	Agent  bool
	// Description is the Proxmox description (Terraform desc).
	Description string
	Disk        Disk
	// Network is net0, net1, …: when set, the VM's whole set of NICs
	// (the ones past its end are removed); empty = not managed.
	Network   []NIC
	CloudInit CloudInit
	Serial    string // serial0 type ("socket"); "" = not managed
	VGA       string // "serial0", "std", ...; "" = not managed
	HA        *HA    // nil = not HA-managed
	// IgnoreChanges lists top-level fields (as spelled in YAML: network,
	// disk, cloudInit, ...) whose drift on an existing VM is left alone.
	IgnoreChanges []string
}

// Disk is the boot disk, resized (grow only) after the clone.
type Disk struct {
	Bus     string // scsi, virtio, sata, ide
	Storage string // target storage of the clone
	Size    Size
	Format  string // qcow2, raw, vmdk; "" = storage default
}

// Key is the Proxmox config key of the disk ("scsi0").
func (d Disk) Key() string { return d.Bus + "0" }

// NIC is one network device, net0, net1, ...
type NIC struct {
	Model  string // virtio, e1000, ...
	Bridge string
	VLAN   int // 0 = untagged
}

// CloudInit is the cloud-init part of the config.
type CloudInit struct {
	User         string
	IPConfig     IPConfig
	Nameserver   string // space separated as Proxmox stores it
	SearchDomain string
	SSHKeys      []string
}

// IPConfig is ipconfig0: a static address or DHCP (both zero: not managed).
type IPConfig struct {
	DHCP    bool
	IP      netip.Prefix
	Gateway netip.Addr
}

// String renders the Proxmox form "ip=192.0.2.250/24,gw=192.0.2.1".
func (c IPConfig) String() string {
	var parts []string
	if c.DHCP {
		parts = append(parts, "ip=dhcp")
	} else if c.IP.IsValid() {
		parts = append(parts, "ip="+c.IP.String())
	}
	if c.Gateway.IsValid() {
		parts = append(parts, "gw="+c.Gateway.String())
	}
	return strings.Join(parts, ",")
}

// HA is the HA resource of the VM.
type HA struct {
	Group string
	State string // started, stopped, disabled, ignored
}

// Size is a disk size in bytes; Proxmox units are binary (8G = 8 GiB).
type Size int64

// ParseSize parses "8G", "512M", "1T", "100K" or a plain number of bytes.
func ParseSize(s string) (Size, error) {
	if s == "" {
		return 0, fmt.Errorf("empty size: expected a number with a unit, as 8G")
	}
	mult := int64(1)
	num := s
	switch s[len(s)-1] {
	case 'K', 'k':
		mult = 1 << 10
	case 'M', 'm':
		mult = 1 << 20
	case 'G', 'g':
		mult = 1 << 30
	case 'T', 't':
		mult = 1 << 40
	}
	if mult != 1 {
		num = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q: expected a positive whole number with K, M, G or T, as 8G", s)
	}
	return Size(n * mult), nil
}

// String renders the size in the largest unit that divides it, as Proxmox does.
func (s Size) String() string {
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if int64(s) >= u.n && int64(s)%u.n == 0 {
			return strconv.FormatInt(int64(s)/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// IgnorableFields returns the names accepted in IgnoreChanges.
func IgnorableFields() []string {
	return []string{"cpu", "cores", "memory", "onBoot", "agent", "description", "disk", "network", "cloudInit", "serial", "vga", "ha"}
}

// Ignores reports whether drift of field on an existing VM is left alone.
func (v VM) Ignores(field string) bool { return slices.Contains(v.IgnoreChanges, field) }
