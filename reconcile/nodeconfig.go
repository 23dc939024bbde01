package reconcile

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/gitedge/gitedge/dataplane"
	k8syaml "sigs.k8s.io/yaml"
)

// DefaultNodeConfigPath is where gitedge looks for the node's local config.
const DefaultNodeConfigPath = "/etc/gitedge/gitedge.yaml"

// NodeConfig is the node's local config (SPEC §2): which node this is and
// how to reach things. It is not in git; secrets are only ever named here
// as files, and the files are read by the subsystem that needs them.
type NodeConfig struct {
	Node     string         `json:"node"`
	Source   SourceConfig   `json:"source"`
	Webhook  *WebhookConfig `json:"webhook,omitempty"`
	Proxmox  *ProxmoxConfig `json:"proxmox,omitempty"`
	Admin    AdminConfig    `json:"admin"`
	StateDir string         `json:"stateDir"`
	// Path is the file the config was read from (not part of the format).
	Path string `json:"-"`
}

// SourceConfig says where the routes repository comes from.
type SourceConfig struct {
	URL    string `json:"url"`    // ssh://, https://, file://, scp-style or a plain path
	Branch string `json:"branch"` // default main; exclusive with Tag and Commit
	Tag    string `json:"tag,omitempty"`
	Commit string `json:"commit,omitempty"`
	Path   string `json:"path"` // sub-directory holding the YAML; default the root
	Poll   string `json:"poll"` // robfig/cron spec; default "@every 1m"
	// ForcePush is what to do when the branch moves to a commit that does
	// not descend from the live one: "follow" (default) or "refuse".
	ForcePush string       `json:"forcePush,omitempty"`
	Auth      SourceAuth   `json:"auth"`
	Verify    SourceVerify `json:"verify"`
	// Depth > 0 fetches only that many commits (huge repositories); it
	// needs forcePush: follow. Default 0, the whole history.
	Depth int `json:"depth,omitempty"`
}

// SourceAuth names the credential files for the remote.
type SourceAuth struct {
	SSHKeyFile     string `json:"sshKeyFile,omitempty"`
	KnownHostsFile string `json:"knownHostsFile,omitempty"`
	TokenFile      string `json:"tokenFile,omitempty"`    // https: a token (sent as the basic-auth password)
	Username       string `json:"username,omitempty"`     // https basic auth user; default "git"
	PasswordFile   string `json:"passwordFile,omitempty"` // https basic auth password
}

// SourceVerify enables signature checks.
type SourceVerify struct {
	KeyringFile string `json:"keyringFile,omitempty"` // armored OpenPGP public keys
}

// WebhookConfig enables the push webhook endpoint.
type WebhookConfig struct {
	Listen     string `json:"listen"`
	Path       string `json:"path"` // default /hook
	SecretFile string `json:"secretFile"`
}

// ProxmoxConfig says how to reach the Proxmox VE API.
type ProxmoxConfig struct {
	URL             string `json:"url"`
	TokenID         string `json:"tokenID"` // user@realm!tokenname
	TokenSecretFile string `json:"tokenSecretFile"`
	CAFile          string `json:"caFile,omitempty"`
	// InsecureSkipVerify accepts any certificate (self-signed lab setups).
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// AdminConfig is the status / metrics HTTP server.
type AdminConfig struct {
	Listen string `json:"listen"` // default 127.0.0.1:9100; "off" disables it
}

// LoadNodeConfig reads and checks a node config file, filling defaults.
func LoadNodeConfig(path string) (*NodeConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node config: %w", err)
	}
	return ParseNodeConfig(path, data)
}

// ParseNodeConfig parses node config bytes; path is used in errors only.
func ParseNodeConfig(path string, data []byte) (*NodeConfig, error) {
	var c NodeConfig
	if err := k8syaml.UnmarshalStrict(data, &c); err != nil {
		msg := err.Error()
		for _, p := range []string{"error converting YAML to JSON: ", "error unmarshaling JSON: while decoding JSON: ", "yaml: "} {
			msg = strings.TrimPrefix(msg, p)
		}
		return nil, fmt.Errorf("node config %s: %s", path, msg)
	}
	c.Path = path
	c.Source.Branch = cmp.Or(c.Source.Branch, "main")
	c.Source.Poll = cmp.Or(c.Source.Poll, "@every 1m")
	c.Source.ForcePush = cmp.Or(c.Source.ForcePush, "follow")
	c.Admin.Listen = cmp.Or(c.Admin.Listen, "127.0.0.1:9100")
	c.StateDir = cmp.Or(c.StateDir, "/var/lib/gitedge")
	if c.Webhook != nil {
		c.Webhook.Path = cmp.Or(c.Webhook.Path, "/hook")
	}
	var errs []error
	if c.Node == "" {
		errs = append(errs, errors.New("node: missing: the name of this node, as in the Edge's spec.nodes"))
	}
	if c.Source.URL == "" {
		errs = append(errs, errors.New("source.url: missing: the routes repository (ssh://, https://, file:// or a path)"))
	}
	pins := 0
	for _, s := range []string{c.Source.Tag, c.Source.Commit} {
		if s != "" {
			pins++
		}
	}
	if pins > 1 {
		errs = append(errs, errors.New("source: set at most one of tag and commit"))
	}
	if c.Source.ForcePush != "follow" && c.Source.ForcePush != "refuse" {
		errs = append(errs, fmt.Errorf("source.forcePush: %q: expected follow or refuse", c.Source.ForcePush))
	}
	if w := c.Webhook; w != nil {
		if w.Listen == "" {
			errs = append(errs, errors.New("webhook.listen: missing: the address to listen on, as :9000"))
		}
		if w.SecretFile == "" {
			errs = append(errs, errors.New("webhook.secretFile: missing: unsigned webhooks are not accepted"))
		}
	}
	if w := c.Webhook; w != nil && c.Admin.Listen != "off" {
		a, errA := dataplane.ParseBind(c.Admin.Listen)
		h, errH := dataplane.ParseBind(w.Listen)
		if errA == nil && errH == nil && bindsClash(a, h) {
			errs = append(errs, fmt.Errorf("webhook.listen: %s clashes with admin.listen %s: use two ports", w.Listen, c.Admin.Listen))
		}
	}
	if p := c.Proxmox; p != nil {
		if p.URL == "" || p.TokenID == "" || p.TokenSecretFile == "" {
			errs = append(errs, errors.New("proxmox: url, tokenID and tokenSecretFile are all required"))
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("node config %s: %w", path, errors.Join(errs...))
	}
	return &c, nil
}
