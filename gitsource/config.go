package gitsource

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// ForcePushPolicy is what to do when the pinned branch moves to a commit
// that does not descend from the last one handed over.
type ForcePushPolicy string

const (
	// ForcePushFollow hands the rewritten head over like any other commit
	// (Revision.ForcePushed is set). It is the default, as with Flux.
	ForcePushFollow ForcePushPolicy = "follow"
	// ForcePushRefuse refuses the rewritten head with a terminal
	// StepVerify error until the branch again descends from the live commit.
	ForcePushRefuse ForcePushPolicy = "refuse"
)

// Config says where the routes repository comes from (the node config's `source` section).
// It is plain data; secrets are named as files and read when needed, so a
// rotated token or keyring is picked up without a restart.
type Config struct {
	// URL of the remote: https://, http://, ssh://, scp-style
	// (git@host:path), git://, file:// or a plain path. Required. It must
	// not carry a password: use Auth.
	URL string
	// Exactly one of Branch, Tag and Commit pins what is followed. With
	// none set, Branch is "main".
	Branch string
	Tag    string
	Commit string // full 40-hex commit id
	// Path is the sub-directory holding the YAML; "" is the root.
	Path string
	// Poll is the robfig/cron spec of the poller (standard five fields or
	// a descriptor such as "@every 1m"). Default "@every 1m".
	Poll string
	// ForcePush defaults to ForcePushFollow.
	ForcePush ForcePushPolicy
	// Depth > 0 fetches only that many commits of history on every fetch
	// (huge repositories). A shallow history cannot prove a fast-forward,
	// so it requires ForcePushFollow. 0 fetches the whole history at the
	// first clone, then only what is new; under ForcePushFollow the cache
	// becomes shallow when it is compacted (see maxPacks), after which
	// Revision.ForcePushed is only set when the history at hand proves it.
	Depth int
	// Auth names the credential files.
	Auth Auth
	// KeyringFile, when set, is an armored OpenPGP public keyring: every
	// commit handed over must carry a valid signature by one of its keys.
	KeyringFile string
	// StateDir holds the local cache (StateDir/gitsource/…). Required for
	// a git remote.
	StateDir string
	// Node is this node's name; it only seeds the poll jitter.
	Node string
	// Timeout bounds one network operation (ref listing, one fetch).
	// Default 2m.
	Timeout time.Duration
	// RetryMin and RetryMax bound the jittered exponential backoff after a
	// transient failure. Defaults 2s and 5m.
	RetryMin, RetryMax time.Duration
	// MaxTreeBytes bounds the bytes of files read for one revision.
	// Default 256 MiB.
	MaxTreeBytes int64
}

// Auth names the files holding credentials for the remote. Which ones are
// used depends on the URL's scheme.
type Auth struct {
	// SSHKeyFile is the private key for ssh:// and scp-style URLs.
	SSHKeyFile string
	// KnownHostsFile is checked for the server's host key (ssh). When
	// empty, $SSH_KNOWN_HOSTS or ~/.ssh/known_hosts and
	// /etc/ssh/ssh_known_hosts are used. Unknown hosts are always refused.
	KnownHostsFile string
	// Username for https basic auth; default "git".
	Username string
	// TokenFile holds a token sent as the basic-auth password (https).
	TokenFile string
	// PasswordFile holds a basic-auth password (https). TokenFile wins
	// when both are set.
	PasswordFile string
}

// ref is the full name of the followed ref, "" for a commit pin.
func (c Config) ref() string {
	switch {
	case c.Commit != "":
		return ""
	case c.Tag != "":
		return "refs/tags/" + c.Tag
	default:
		return "refs/heads/" + cmp.Or(c.Branch, "main")
	}
}

// Ref is the full name of the followed ref (refs/heads/B or refs/tags/T),
// or "" when a commit is pinned. Webhooks use it to ignore other pushes.
func (c Config) Ref() string { return c.ref() }

// WithDefaults returns c with every default filled in: the one place the
// source's defaults live (the node config applies them through it).
func (c Config) WithDefaults() Config {
	if c.Tag == "" && c.Commit == "" {
		c.Branch = cmp.Or(c.Branch, "main")
	}
	c.Poll = cmp.Or(c.Poll, "@every 1m")
	c.ForcePush = cmp.Or(c.ForcePush, ForcePushFollow)
	c.Timeout = cmp.Or(c.Timeout, 2*time.Minute)
	c.RetryMin = cmp.Or(c.RetryMin, 2*time.Second)
	c.RetryMax = cmp.Or(c.RetryMax, 5*time.Minute)
	c.MaxTreeBytes = cmp.Or(c.MaxTreeBytes, 256<<20)
	c.Path = strings.Trim(filepath.ToSlash(c.Path), "/")
	if c.Path == "." {
		c.Path = ""
	}
	return c
}

// Validate checks c (after defaults) and returns every problem found.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("source.url: missing: the routes repository (ssh://, https://, git://, file:// or a path)"))
	} else if err := checkURL(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("source.url: %w", err))
	}
	pins := 0
	for _, s := range []string{c.Branch, c.Tag, c.Commit} {
		if s != "" {
			pins++
		}
	}
	if pins > 1 {
		errs = append(errs, errors.New("source: set only one of branch, tag and commit"))
	}
	if c.Commit != "" && !isHex40(c.Commit) {
		errs = append(errs, fmt.Errorf("source.commit: %q: expected a full 40-hex commit id", c.Commit))
	}
	if c.ForcePush != ForcePushFollow && c.ForcePush != ForcePushRefuse {
		errs = append(errs, fmt.Errorf("source.forcePush: %q: expected follow or refuse", c.ForcePush))
	}
	if c.Depth < 0 {
		errs = append(errs, fmt.Errorf("source.depth: %d: must be 0 (whole history) or more", c.Depth))
	}
	if c.Depth > 0 && c.ForcePush == ForcePushRefuse {
		errs = append(errs, errors.New("source.depth: a shallow history cannot prove a fast-forward; use forcePush: follow or depth 0"))
	}
	if _, err := cron.ParseStandard(c.Poll); err != nil {
		errs = append(errs, fmt.Errorf("source.poll: %q: %w", c.Poll, err))
	}
	if c.StateDir == "" {
		errs = append(errs, errors.New("stateDir: missing: the git cache lives there"))
	}
	if c.RetryMin > c.RetryMax {
		errs = append(errs, fmt.Errorf("retry: minimum %s above maximum %s", c.RetryMin, c.RetryMax))
	}
	return errors.Join(errs...)
}

// checkURL rejects URLs that carry a password, so no secret ever sits in
// the config, the logs or an error message.
func checkURL(raw string) error {
	if !strings.Contains(raw, "://") {
		return nil // scp-style or a path
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL: %v", redactErr(err, raw))
	}
	if _, ok := u.User.Password(); ok {
		return errors.New("has a password in it: put it in auth.passwordFile or auth.tokenFile")
	}
	switch u.Scheme {
	case "https", "http", "ssh", "git", "file":
		return nil
	}
	return fmt.Errorf("scheme %q: expected https, http, ssh, git or file", u.Scheme)
}

// redactErr formats err without the raw string, which may hold a password.
func redactErr(err error, raw string) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return strings.ReplaceAll(err.Error(), raw, "<url>")
}

// displayURL is the URL for logs and errors: no credentials.
func displayURL(raw string) string {
	if !strings.Contains(raw, "://") {
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable url>"
	}
	if u.User != nil {
		u.User = url.User(u.User.Username())
	}
	return u.String()
}

func isHex40(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, r := range s {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}
