package infra

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"
)

// Secret is a credential. It prints, logs and marshals as "[redacted]";
// only Reveal gives the value.
type Secret string

const redacted = "[redacted]"

func (Secret) String() string               { return redacted }
func (Secret) GoString() string             { return redacted }
func (Secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (s Secret) Reveal() string             { return string(s) }

// ClientConfig says how to reach the Proxmox VE API. cmd builds it from the
// node config (its proxmox section and the token file it names).
type ClientConfig struct {
	// URL is the API base, as https://proxmox1:8006/api2/json.
	URL string
	// TokenID is user@realm!tokenname.
	TokenID string
	// TokenSecret is the token's secret (a UUID).
	TokenSecret Secret
	// CAFile is a PEM bundle to trust; empty means the system roots.
	CAFile string
	// InsecureSkipVerify accepts any certificate.
	InsecureSkipVerify bool
	// Timeout bounds every API call; zero means 30 s.
	Timeout time.Duration
}

// NewAPI returns the API over a go-proxmox client. No request is made.
func NewAPI(cfg ClientConfig) (API, error) {
	if cfg.URL == "" || cfg.TokenID == "" || cfg.TokenSecret == "" {
		return nil, &Error{Kind: Terminal, Reason: ReasonUnauthorized, Op: "connect",
			Err: errors.New("proxmox url, tokenID and the token secret are all required (node config: proxmox.url, proxmox.tokenID, proxmox.tokenSecretFile)")}
	}
	if !strings.Contains(cfg.TokenID, "!") || !strings.Contains(cfg.TokenID, "@") {
		return nil, &Error{Kind: Terminal, Reason: ReasonUnauthorized, Op: "connect",
			Err: fmt.Errorf("proxmox tokenID %q: expected user@realm!tokenname", cfg.TokenID)}
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// pveproxy speaks HTTP/1.1 only (API.md 1.1).
	tr.ForceAttemptHTTP2 = false
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	tr.MaxIdleConnsPerHost = 32
	opts := []proxmox.Option{
		proxmox.WithHTTPClient(&http.Client{Transport: tr}),
		proxmox.WithAPIToken(cfg.TokenID, cfg.TokenSecret.Reveal()),
		proxmox.WithTimeout(timeout),
		proxmox.WithUserAgent("gitedge"),
	}
	if cfg.CAFile != "" {
		opts = append(opts, proxmox.WithRootCAFile(cfg.CAFile))
	}
	if cfg.InsecureSkipVerify {
		opts = append(opts, proxmox.WithInsecureSkipVerify())
	}
	return &goProxmox{c: proxmox.NewClient(strings.TrimSuffix(cfg.URL, "/"), opts...), secret: cfg.TokenSecret.Reveal()}, nil
}

// goProxmox implements API with go-proxmox v0.8.2.
type goProxmox struct {
	c      *proxmox.Client
	secret string
}

var _ API = (*goProxmox)(nil)

// clean keeps the token out of errors: go-proxmox never puts it there, but
// a transport error quoting a request must not either.
func (g *goProxmox) clean(err error) error {
	if err == nil || g.secret == "" || !strings.Contains(err.Error(), g.secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), g.secret, redacted))
}

func (g *goProxmox) vm(node string, vmid int) *proxmox.VirtualMachine {
	v := &proxmox.VirtualMachine{}
	v.New(g.c, node, vmid)
	return v
}

func (g *goProxmox) cluster() *proxmox.Cluster { return (&proxmox.Cluster{}).New(g.c) }

func (g *goProxmox) Resources(ctx context.Context) ([]Resource, error) {
	rs, err := g.cluster().Resources(ctx, "vm")
	if err != nil {
		return nil, g.clean(err)
	}
	var out []Resource
	for _, r := range rs {
		// type=vm includes LXC containers.
		if r.Type != "qemu" {
			continue
		}
		out = append(out, Resource{
			VMID: int(r.VMID), Node: r.Node, Name: r.Name, Status: r.Status,
			Tags: splitTags(r.Tags), Template: r.Template == 1, HAState: r.HAstate,
		})
	}
	return out, nil
}

func (g *goProxmox) HAResources(ctx context.Context) ([]HAResource, error) {
	hs, err := g.cluster().HAResources(ctx, "vm")
	if err != nil {
		return nil, g.clean(err)
	}
	out := make([]HAResource, 0, len(hs))
	for _, h := range hs {
		r := HAResource{SID: h.SID, Group: h.Group, State: "started"}
		if h.State != nil {
			r.State = *h.State
		}
		out = append(out, r)
	}
	return out, nil
}

func (g *goProxmox) Config(ctx context.Context, node string, vmid int) (VMConfig, error) {
	p, err := g.vm(node, vmid).Pending(ctx)
	if err != nil {
		return VMConfig{}, g.clean(err)
	}
	cfg := VMConfig{Values: map[string]string{}}
	if p == nil {
		return cfg, fmt.Errorf("GET /nodes/%s/qemu/%d/pending: empty answer", node, vmid)
	}
	for _, it := range *p {
		if it.Key == "digest" {
			cfg.Digest = scalar(it.Value)
			continue
		}
		cur, hasCur := it.Value, it.Value != nil
		switch {
		case it.Delete != nil && *it.Delete > 0:
			cfg.Pending = append(cfg.Pending, it.Key)
		case it.Pending != nil:
			cfg.Values[it.Key] = scalar(it.Pending)
			if !hasCur || scalar(cur) != scalar(it.Pending) {
				cfg.Pending = append(cfg.Pending, it.Key)
			}
		case hasCur:
			cfg.Values[it.Key] = scalar(cur)
		}
	}
	slices.Sort(cfg.Pending)
	return cfg, nil
}

// scalar renders a decoded JSON scalar (numbers arrive as float64).
func scalar(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case bool:
		if v {
			return "1"
		}
		return "0"
	case nil:
		return ""
	}
	return fmt.Sprint(v)
}

func (g *goProxmox) Status(ctx context.Context, node string, vmid int) (VMStatus, error) {
	var v proxmox.VirtualMachine
	if err := g.c.Get(ctx, fmt.Sprintf("/nodes/%s/qemu/%d/status/current", node, vmid), &v); err != nil {
		return VMStatus{}, g.clean(err)
	}
	return VMStatus{Status: v.Status, Lock: v.Lock, HA: v.HA.Managed == 1}, nil
}

func (g *goProxmox) Clone(ctx context.Context, r CloneRequest) (string, error) {
	opts := &proxmox.VirtualMachineCloneOptions{
		NewID: r.VMID, Name: r.Name, Description: r.Description,
		Full: proxmox.IntOrBool(!r.LinkedClone), Storage: r.Storage, Format: r.Format,
	}
	if r.TargetNode != "" && r.TargetNode != r.Node {
		opts.Target = r.TargetNode
	}
	if r.LinkedClone {
		opts.Storage, opts.Format = "", ""
	}
	_, task, err := g.vm(r.Node, r.Template).Clone(ctx, opts)
	if err != nil {
		return "", g.clean(err)
	}
	return upidOf(task)
}

func upidOf(t *proxmox.Task) (string, error) {
	if t == nil {
		return "", errors.New("proxmox returned no task ID")
	}
	return string(t.UPID), nil
}

// numericKeys go out as JSON numbers, as PVE documents them (strings work too).
var numericKeys = map[string]bool{"cores": true, "sockets": true, "memory": true, "onboot": true, "numa": true, "balloon": true}

func (g *goProxmox) SetConfig(ctx context.Context, node string, vmid int, digest string, set map[string]string, del []string) (string, error) {
	var opts []proxmox.VirtualMachineOption
	for _, k := range slices.Sorted(maps.Keys(set)) {
		var v any = set[k]
		if numericKeys[k] {
			if n, err := strconv.Atoi(set[k]); err == nil {
				v = n
			}
		}
		opts = append(opts, proxmox.VirtualMachineOption{Name: k, Value: v})
	}
	if len(del) > 0 {
		opts = append(opts, proxmox.VirtualMachineOption{Name: "delete", Value: strings.Join(del, ",")})
	}
	if digest != "" {
		opts = append(opts, proxmox.VirtualMachineOption{Name: "digest", Value: digest})
	}
	task, err := g.vm(node, vmid).Config(ctx, opts...)
	if err != nil {
		return "", g.clean(err)
	}
	return upidOf(task)
}

func (g *goProxmox) Resize(ctx context.Context, node string, vmid int, disk, size string) (string, error) {
	task, err := g.vm(node, vmid).ResizeDisk(ctx, disk, size)
	if err != nil {
		return "", g.clean(err)
	}
	return upidOf(task)
}

func (g *goProxmox) Power(ctx context.Context, node string, vmid int, action string) (string, error) {
	v := g.vm(node, vmid)
	var task *proxmox.Task
	var err error
	switch action {
	case "start":
		task, err = v.Start(ctx)
	case "stop":
		task, err = v.Stop(ctx)
	case "shutdown":
		task, err = v.Shutdown(ctx)
	default:
		return "", fmt.Errorf("unknown power action %q", action)
	}
	if err != nil {
		return "", g.clean(err)
	}
	return upidOf(task)
}

func (g *goProxmox) Delete(ctx context.Context, node string, vmid int) (string, error) {
	task, err := g.vm(node, vmid).Delete(ctx, &proxmox.VirtualMachineDeleteOptions{Purge: true, DestroyUnreferencedDisks: true})
	if err != nil {
		return "", g.clean(err)
	}
	return upidOf(task)
}

func (g *goProxmox) RegenerateCloudInit(ctx context.Context, node string, vmid int) error {
	return g.clean(g.vm(node, vmid).CloudInitRegenerate(ctx))
}

func (g *goProxmox) CreateHA(ctx context.Context, sid string, ha HA) error {
	st := ha.State
	return g.clean(g.cluster().NewHAResource(ctx, &proxmox.HAResourceCreateOption{SID: sid, Group: ha.Group, State: &st}))
}

func (g *goProxmox) UpdateHA(ctx context.Context, sid string, ha HA) error {
	st := ha.State
	opt := &proxmox.HAResourceUpdateOption{Group: ha.Group, State: &st}
	if ha.Group == "" {
		opt.Delete = "group"
	}
	return g.clean(g.cluster().HAResourceUpdate(ctx, sid, opt))
}

func (g *goProxmox) DeleteHA(ctx context.Context, sid string) error {
	// purge=false: the purge parameter is PVE 9 only (client-calls.md).
	return g.clean(g.cluster().HAResourceDelete(ctx, sid, false))
}

func (g *goProxmox) Task(ctx context.Context, upid string) (TaskStatus, error) {
	t := proxmox.NewTask(proxmox.UPID(upid), g.c)
	if t == nil {
		return TaskStatus{}, errors.New("empty task ID")
	}
	if err := t.Ping(ctx); err != nil {
		return TaskStatus{}, g.clean(err)
	}
	return TaskStatus{Running: t.Status == "running", ExitStatus: t.ExitStatus}, nil
}

func (g *goProxmox) AgentInterfaces(ctx context.Context, node string, vmid int) ([]AgentInterface, error) {
	ifs, err := g.vm(node, vmid).AgentGetNetworkIFaces(ctx)
	if err != nil {
		return nil, g.clean(err)
	}
	var out []AgentInterface
	for _, i := range ifs {
		ai := AgentInterface{Name: i.Name, MAC: strings.ToLower(i.HardwareAddress)}
		for _, a := range i.IPAddresses {
			ai.IPs = append(ai.IPs, AgentIP{Address: a.IPAddress, Prefix: a.Prefix, IPv6: a.IPAddressType == "ipv6"})
		}
		out = append(out, ai)
	}
	return out, nil
}

func (g *goProxmox) Bridges(ctx context.Context, node string) ([]Bridge, error) {
	// any_bridge, not bridge: a NIC may name an OVS bridge or an SDN VNet.
	ns, err := (&proxmox.Node{}).New(g.c, node).Networks(ctx, "any_bridge")
	if err != nil {
		return nil, g.clean(err)
	}
	out := make([]Bridge, 0, len(ns))
	for _, n := range ns {
		if n != nil {
			out = append(out, Bridge{Name: n.Iface, Type: n.Type, Active: n.Active != 0})
		}
	}
	return out, nil
}

func splitTags(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool { return r == ';' || r == ',' || r == ' ' })
}

func hasTag(tags []string, t string) bool { return slices.Contains(tags, t) }
