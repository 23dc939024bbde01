package nodeconfig

import (
	"bytes"
	"encoding/json"
	"reflect"

	"github.com/gitedge/gitedge/forge"
	"github.com/gitedge/gitedge/notify"
)

// File mirrors the node config's YAML format, field for field; the JSON
// names are the file's. Build turns it into a Config. Pointers mark the
// sections that are optional as a whole.
type File struct {
	Node    string   `json:"node"`
	Source  Source   `json:"source"`
	Webhook *Webhook `json:"webhook,omitempty"`
	Proxmox *Proxmox `json:"proxmox,omitempty"`
	Admin   Admin    `json:"admin,omitzero"`
	Proxy   Proxy    `json:"proxy,omitzero"`
	// Forge and Notify are decoded straight into the packages' own
	// section types, which carry the file's JSON names.
	Forge    *forge.Config       `json:"forge,omitempty"`
	Notify   []notify.SinkConfig `json:"notify,omitempty"`
	StateDir string              `json:"stateDir,omitempty"`
	Secrets  *Secrets            `json:"secrets,omitempty"`
}

// Secrets says where this node finds the secrets the routes repository
// names instead of holding ({secret: NAME}, {age: …}).
type Secrets struct {
	// Dir holds one file per secret name; default /etc/gitedge/secrets.
	Dir string `json:"dir,omitempty"`
	// Files maps a secret name to its file, ahead of the credentials
	// directory and Dir.
	Files map[string]string `json:"files,omitempty"`
	// AgeIdentity is the age identity file decrypting {age: …}; default
	// $CREDENTIALS_DIRECTORY/age.key when systemd passes it, else
	// /etc/gitedge/age.key.
	AgeIdentity string `json:"ageIdentity,omitempty"`
}

// Source says where the routes repository comes from.
type Source struct {
	URL    string `json:"url"`              // ssh://, https://, git://, file://, scp-style or a plain path
	Branch string `json:"branch,omitempty"` // default main; at most one of branch, tag and commit
	Tag    string `json:"tag,omitempty"`
	Commit string `json:"commit,omitempty"`
	Path   string `json:"path,omitempty"` // sub-directory holding the YAML; default the root
	Poll   string `json:"poll,omitempty"` // robfig/cron spec; default "@every 1m"
	// ForcePush is what to do when the branch moves to a commit that does
	// not descend from the live one: "follow" (default) or "refuse".
	ForcePush string       `json:"forcePush,omitempty"`
	Auth      SourceAuth   `json:"auth,omitzero"`
	Verify    SourceVerify `json:"verify,omitzero"`
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

// Webhook enables the push webhook endpoint.
type Webhook struct {
	Listen     string         `json:"listen"`
	Path       string         `json:"path,omitempty"` // default /hook
	SecretFile string         `json:"secretFile"`
	Limits     *WebhookLimits `json:"limits,omitempty"`
	// Relay: tell the other nodes of the nodes list of a new commit.
	// Unset or true: on, with the defaults; false: off; a mapping: on,
	// with its settings.
	Relay *WebhookRelay `json:"relay,omitempty"`
}

// WebhookRelay is webhook.relay written as a mapping (or true/false).
type WebhookRelay struct {
	// Off is `relay: false`: this node sends no relays (it still accepts
	// them).
	Off bool `json:"-"`
	// KeyFile holds the key relays are signed and checked with; default
	// webhook.secretFile. Every node must have the same.
	KeyFile string `json:"keyFile,omitempty"`
	// Port is the port of the peers' webhook listeners; default this
	// node's webhook.listen port.
	Port int `json:"port,omitempty"`
	// Peers maps a node name to the URL of its webhook listener (the
	// relay path is added when the URL has none), ahead of its address
	// in the nodes list.
	Peers map[string]string `json:"peers,omitempty"`
	// Window is how far a relay's time may be from this node's clock, a
	// Go duration; default 30s.
	Window string `json:"window,omitempty"`
}

// UnmarshalJSON takes true, false or the mapping (unknown fields
// refused).
func (r *WebhookRelay) UnmarshalJSON(b []byte) error {
	switch string(bytes.TrimSpace(b)) {
	case "true", "null":
		*r = WebhookRelay{}
		return nil
	case "false":
		*r = WebhookRelay{Off: true}
		return nil
	}
	if b = bytes.TrimSpace(b); len(b) == 0 || b[0] != '{' {
		kind := "string"
		switch {
		case len(b) > 0 && b[0] == '[':
			kind = "list"
		case len(b) > 0 && b[0] != '"':
			kind = "number"
		}
		// Said as "expected true or false": what `relay: no` meant.
		return &json.UnmarshalTypeError{Value: kind, Type: reflect.TypeFor[bool]()}
	}
	type plain WebhookRelay
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var p plain
	if err := dec.Decode(&p); err != nil {
		return err
	}
	*r = WebhookRelay(p)
	return nil
}

// MarshalJSON writes false for Off, else the mapping.
func (r WebhookRelay) MarshalJSON() ([]byte, error) {
	if r.Off {
		return []byte("false"), nil
	}
	type plain WebhookRelay
	return json.Marshal(plain(r))
}

// WebhookLimits bound what the webhook's requests may hold (gitsource's
// WebhookConfig says why each default is what it is). Unset or 0: the
// default. Durations are Go durations ("5s").
type WebhookLimits struct {
	MaxBodyBytes       int64  `json:"maxBodyBytes,omitempty"`
	MaxConns           int    `json:"maxConns,omitempty"`
	MaxConnsPerSource  int    `json:"maxConnsPerSource,omitempty"`
	MaxBodies          int    `json:"maxBodies,omitempty"`
	MaxBodiesPerSource int    `json:"maxBodiesPerSource,omitempty"`
	HeaderTimeout      string `json:"headerTimeout,omitempty"`
	BodyTimeout        string `json:"bodyTimeout,omitempty"`
	Deliveries         int    `json:"deliveries,omitempty"`
}

// Proxmox says how to reach the Proxmox VE API. The token secret is read
// from TokenSecretFile by ProxmoxClient, never kept in the config.
type Proxmox struct {
	URL             string `json:"url"`
	TokenID         string `json:"tokenID"` // user@realm!tokenname
	TokenSecretFile string `json:"tokenSecretFile"`
	CAFile          string `json:"caFile,omitempty"`
	// InsecureSkipVerify accepts any certificate (self-signed lab setups).
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// Proxy tunes this node's dataplane: what depends on the machine rather
// than on the routes.
type Proxy struct {
	// IdlePoll is the longest the proxy's thread keeps polling for
	// events after its last one, while it is loaded: a duration as
	// "200us", or "off". Default dataplane.DefaultIdlePoll.
	IdlePoll string `json:"idlePoll,omitempty"`
}

// Admin is the status and metrics HTTP server.
type Admin struct {
	Listen string `json:"listen,omitempty"` // default 127.0.0.1:9100; "off" disables it
}
