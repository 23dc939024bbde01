package nodeconfig

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gitedge/gitedge/forge"
	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/gitsource/relay"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/notify"
	"github.com/gitedge/gitedge/reconcile"
	"github.com/gitedge/gitedge/secrets"
)

// The node-level defaults; each subsystem's section gets its defaults
// from that subsystem.
const (
	// DefaultPath is where gitedge looks for the node config.
	DefaultPath = "/etc/gitedge/gitedge.yaml"
	// DefaultAdminListen is admin.listen when unset.
	DefaultAdminListen = "127.0.0.1:9100"
	// DefaultStateDir is stateDir when unset.
	DefaultStateDir = "/var/lib/gitedge"
)

// Config is a node config, built and checked: each section is the config
// type of the subsystem it configures.
type Config struct {
	// Path is the file the config was read from; "" for one built in
	// code. Messages name it.
	Path string
	// Node is this node's name, as in the Edge's spec.nodes.
	Node string
	// Source is the routes repository, with gitsource's defaults applied
	// and Node and StateDir filled in.
	Source gitsource.Config
	// Webhook is the push endpoint; nil: none. Ref is the source's.
	Webhook *gitsource.WebhookConfig
	// Relay is how this node tells its peers of a new commit; nil: it
	// does not (no webhook, or webhook.relay: false). Node, KeyFile,
	// Port and Path are filled.
	Relay *relay.Config
	// Proxmox is how to reach the Proxmox VE API; nil: no infra.
	Proxmox *Proxmox
	// AdminListen is the admin server's address; "" when it is off.
	AdminListen string
	// IdlePoll is the dataplane's Options.IdlePoll: 0 its default,
	// negative off.
	IdlePoll time.Duration
	// Forge is where commit statuses go; nil: nowhere. Node is filled.
	Forge *forge.Config
	// Notify lists the notification sinks (none: Sinks is empty). Node
	// is filled.
	Notify notify.Config
	// StateDir holds the last applied record and the git cache.
	StateDir string
	// Secrets resolves the secrets the repository names: the secrets
	// section with its defaults, and systemd's $CREDENTIALS_DIRECTORY as
	// it was when the config was built.
	Secrets secrets.Store
	// File is the config as written, before defaults: what a reload
	// compares section by section.
	File File
}

// Load reads and builds a node config file.
func Load(path string) (*Config, error) {
	return LoadFor(path, "")
}

// LoadFor reads and builds a node config file for a command that follows
// the local directory dir instead of the configured remote (--source
// DIR): there the source section is optional, its url defaulting to dir.
// dir "" is Load.
func LoadFor(path, dir string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	f, err := decode(path, data)
	if err != nil {
		return nil, err
	}
	if dir != "" && f.Source.URL == "" {
		f.Source.URL = dir
	}
	return Build(f, path)
}

// Parse decodes node config bytes strictly and builds them; path names the
// file in errors.
func Parse(path string, data []byte) (*Config, error) {
	f, err := decode(path, data)
	if err != nil {
		return nil, err
	}
	return Build(f, path)
}

// decode decodes node config bytes strictly, errors located as the routes
// repository's are (file:line: field: message).
func decode(path string, data []byte) (File, error) {
	var f File
	if err := reconcile.DecodeFile(path, data, &f, "the node config's fields in docs/node-config.md"); err != nil {
		var errs reconcile.Errors
		if errors.As(err, &errs) && len(errs) > 1 {
			return f, fmt.Errorf("node config %s: %w", path, err)
		}
		return f, fmt.Errorf("node config %w", err)
	}
	return f, nil
}

// Build turns a File into a Config: node-level defaults applied, each
// section converted into its subsystem's type and checked by it. Every
// problem is reported, prefixed with path (the file, or a name for a
// config made in code).
func Build(f File, path string) (*Config, error) {
	c := &Config{
		Path:        path,
		Node:        f.Node,
		AdminListen: f.Admin.Listen,
		StateDir:    f.StateDir,
		Proxmox:     f.Proxmox,
		File:        f,
	}
	if c.AdminListen == "" {
		c.AdminListen = DefaultAdminListen
	} else if c.AdminListen == "off" {
		c.AdminListen = ""
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	s := f.Source
	c.Source = gitsource.Config{
		URL: s.URL, Branch: s.Branch, Tag: s.Tag, Commit: s.Commit, Path: s.Path, Poll: s.Poll,
		ForcePush: gitsource.ForcePushPolicy(s.ForcePush), Depth: s.Depth,
		Auth: gitsource.Auth{
			SSHKeyFile: s.Auth.SSHKeyFile, KnownHostsFile: s.Auth.KnownHostsFile,
			Username: s.Auth.Username, TokenFile: s.Auth.TokenFile, PasswordFile: s.Auth.PasswordFile,
		},
		KeyringFile: s.Verify.KeyringFile,
		StateDir:    c.StateDir,
		Node:        c.Node,
	}.WithDefaults()
	var errs []error
	var err error
	if c.IdlePoll, err = ParseIdlePoll(f.Proxy.IdlePoll); err != nil {
		errs = append(errs, fmt.Errorf("proxy.idlePoll: %w", err))
	}
	if w := f.Webhook; w != nil {
		c.Webhook = &gitsource.WebhookConfig{Listen: w.Listen, Path: w.Path, SecretFile: w.SecretFile, Ref: c.Source.Ref()}
		errs = append(errs, webhookLimits(c.Webhook, w.Limits)...)
		errs = append(errs, c.webhookRelay(w)...)
	}
	if f.Forge != nil {
		fc := *f.Forge
		fc.Node = c.Node
		c.Forge = &fc
	}
	c.Notify = notify.Config{Node: c.Node, Sinks: f.Notify}
	c.Secrets = secrets.Store{Config: path}
	if sc := f.Secrets; sc != nil {
		c.Secrets.Dir, c.Secrets.Files, c.Secrets.AgeIdentity = sc.Dir, sc.Files, sc.AgeIdentity
	}
	c.Secrets = c.Secrets.FromEnv()

	if c.Node == "" {
		errs = append(errs, errors.New("node: missing: the name of this node, as in the Edge's spec.nodes"))
	}
	if err := c.Source.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.Webhook != nil {
		if err := c.Webhook.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Local().Clashes(); err != nil {
		errs = append(errs, err)
	}
	if p := c.Proxmox; p != nil && (p.URL == "" || p.TokenID == "" || p.TokenSecretFile == "") {
		errs = append(errs, errors.New("proxmox: url, tokenID and tokenSecretFile are all required"))
	}
	if c.Forge != nil && c.Node != "" {
		if err := c.Forge.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Node != "" {
		if err := c.Notify.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if sc := f.Secrets; sc != nil {
		for _, name := range slices.Sorted(maps.Keys(sc.Files)) {
			if err := (secrets.Value{Secret: name}).Check(); err != nil {
				errs = append(errs, fmt.Errorf("secrets.files.%s: %v", name, err))
			} else if sc.Files[name] == "" {
				errs = append(errs, fmt.Errorf("secrets.files.%s: missing: the file holding the secret", name))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s: %w", c.where(), errors.Join(errs...))
	}
	return c, nil
}

// maxIdlePoll bounds proxy.idlePoll: a longer poll spends a core's time
// on gaps no sleep would have made costly.
const maxIdlePoll = 10 * time.Millisecond

// ParseIdlePoll parses proxy.idlePoll (and gitedge proxy --idle-poll):
// "" the default (0), "off" or a zero duration none (-1).
func ParseIdlePoll(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	if v == "off" {
		return -1, nil
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		return 0, fmt.Errorf("%q: expected a duration as 200us, or off", v)
	case d < 0 || d > maxIdlePoll:
		return 0, fmt.Errorf("%s: expected 0 (off) to %v", v, maxIdlePoll)
	case d == 0:
		return -1, nil
	}
	return d, nil
}

// webhookLimits sets the limits of a webhook section on wc, and returns
// what is wrong with them.
func webhookLimits(wc *gitsource.WebhookConfig, l *WebhookLimits) []error {
	if l == nil {
		return nil
	}
	var errs []error
	count := func(field string, v int64) int64 {
		if v < 0 {
			errs = append(errs, fmt.Errorf("webhook.limits.%s: %d: expected a positive number (or 0 for the default)", field, v))
			return 0
		}
		return v
	}
	dur := func(field, v string) time.Duration {
		if v == "" {
			return 0
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("webhook.limits.%s: %q: expected a positive duration, as 5s", field, v))
			return 0
		}
		return d
	}
	wc.MaxBody = count("maxBodyBytes", l.MaxBodyBytes)
	wc.MaxConns = int(count("maxConns", int64(l.MaxConns)))
	wc.MaxConnsPerSource = int(count("maxConnsPerSource", int64(l.MaxConnsPerSource)))
	wc.MaxBodies = int(count("maxBodies", int64(l.MaxBodies)))
	wc.MaxBodiesPerSource = int(count("maxBodiesPerSource", int64(l.MaxBodiesPerSource)))
	wc.Deliveries = int(count("deliveries", int64(l.Deliveries)))
	wc.HeaderTimeout = dur("headerTimeout", l.HeaderTimeout)
	wc.BodyTimeout = dur("bodyTimeout", l.BodyTimeout)
	return errs
}

// webhookRelay sets the relay's settings on the webhook (the receiving
// side) and builds c.Relay (the sending side) unless it is off; it
// returns what is wrong with them.
func (c *Config) webhookRelay(w *Webhook) []error {
	r := w.Relay
	if r == nil {
		r = &WebhookRelay{}
	}
	var errs []error
	c.Webhook.RelayKeyFile = r.KeyFile
	if r.Window != "" {
		d, err := time.ParseDuration(r.Window)
		if err != nil || d < time.Second || d > 10*time.Minute {
			errs = append(errs, fmt.Errorf("webhook.relay.window: %q: expected a duration from 1s to 10m, as 30s", r.Window))
		}
		c.Webhook.RelayWindow = d
	}
	if r.Port < 0 || r.Port > 65535 {
		errs = append(errs, fmt.Errorf("webhook.relay.port: %d: expected a port, 1 to 65535", r.Port))
	}
	path := gitsource.RelayPath(w.Path)
	peers := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(r.Peers)) {
		u, err := peerURL(r.Peers[name], path)
		if name == "" {
			err = errors.New("a node name is empty")
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("webhook.relay.peers.%s: %v", name, err))
			continue
		}
		peers[name] = u
	}
	port := r.Port
	if port == 0 {
		if _, p, err := net.SplitHostPort(w.Listen); err == nil {
			port, _ = strconv.Atoi(p)
		}
		if port <= 0 && !r.Off && w.Listen != "" {
			errs = append(errs, fmt.Errorf("webhook.relay.port: missing: webhook.listen %q names no port number to reach the peers at; set webhook.relay.port (or webhook.relay: false)", w.Listen))
		}
	}
	if r.Off {
		return errs
	}
	c.Relay = &relay.Config{Node: c.Node, KeyFile: cmp.Or(r.KeyFile, w.SecretFile), Port: port, Path: path, Peers: peers}
	return errs
}

// peerURL checks a peer's URL from webhook.relay.peers and adds the relay
// path when it has none.
func peerURL(s, relayPath string) (string, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "", fmt.Errorf("%q: not a URL: %v", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("%q: expected an http:// or https:// URL of the node's webhook listener, as https://lb-1.example:9000", s)
	case u.Host == "" || u.Hostname() == "":
		return "", fmt.Errorf("%q: no host", s)
	case u.User != nil:
		return "", fmt.Errorf("%q: no credentials in the URL: relays are signed with the relay key", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("%q: no query or fragment", s)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%q: port %s: expected 1 to 65535", s, p)
		}
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = relayPath
	}
	return u.String(), nil
}

// where names the config in messages.
func (c *Config) where() string {
	if c.Path == "" {
		return "node config"
	}
	return "node config " + c.Path
}

// Local returns what a routes repository is checked against on this node
// (`gitedge validate --node-config`, and every commit under `gitedge
// run`): the node's name, the addresses it listens on for itself, and its
// secrets.
func (c *Config) Local() *reconcile.Local {
	store := c.Secrets
	l := &reconcile.Local{Node: c.Node, Config: c.Path, Secrets: &store}
	if c.AdminListen != "" {
		l.Listens = append(l.Listens, reconcile.LocalListen{Field: "admin.listen", Addr: c.AdminListen})
	}
	if c.Webhook != nil && c.Webhook.Listen != "" {
		l.Listens = append(l.Listens, reconcile.LocalListen{Field: "webhook.listen", Addr: c.Webhook.Listen})
	}
	return l
}

// ProxmoxClient builds the Proxmox client config, reading the token secret
// from its file. Errors name the file, never its content.
func (c *Config) ProxmoxClient() (infra.ClientConfig, error) {
	p := c.Proxmox
	if p == nil {
		return infra.ClientConfig{}, fmt.Errorf("%s: no proxmox section (url, tokenID, tokenSecretFile)", c.where())
	}
	data, err := os.ReadFile(p.TokenSecretFile)
	if err != nil {
		return infra.ClientConfig{}, fmt.Errorf("%s: proxmox.tokenSecretFile: %w", c.where(), err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return infra.ClientConfig{}, fmt.Errorf("%s: proxmox.tokenSecretFile %s is empty", c.where(), p.TokenSecretFile)
	}
	return infra.ClientConfig{
		URL:                p.URL,
		TokenID:            p.TokenID,
		TokenSecret:        infra.Secret(secret),
		CAFile:             p.CAFile,
		InsecureSkipVerify: p.InsecureSkipVerify,
	}, nil
}
