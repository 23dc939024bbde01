package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"filippo.io/age"

	"github.com/gitedge/gitedge/internal/secretmode"
)

// Defaults of the node config's secrets section.
const (
	// DefaultDir is where {secret: NAME} is read from: DefaultDir/NAME.
	DefaultDir = "/etc/gitedge/secrets"
	// DefaultAgeIdentity is the age identity file when none is named.
	DefaultAgeIdentity = "/etc/gitedge/age.key"
	// CredentialAgeIdentity is the systemd credential read as the age
	// identity when secrets.ageIdentity is unset
	// (LoadCredential=age.key:/etc/gitedge/age.key).
	CredentialAgeIdentity = "age.key"
	// CredentialsEnv is the variable systemd sets to the directory of the
	// unit's credentials (LoadCredential=, SetCredentialEncrypted=).
	CredentialsEnv = "CREDENTIALS_DIRECTORY"
	// MaxFileBytes bounds a secret file and an identity file.
	MaxFileBytes = 64 << 10
)

// Store resolves Values on one node. Its zero value reads DefaultDir and
// DefaultAgeIdentity; files are read at every Resolve, so a secret
// rotated on disk is picked up by the next pass.
type Store struct {
	// Dir holds one file per secret name; "" means DefaultDir.
	Dir string
	// Files maps a secret name to its file, ahead of everything else.
	Files map[string]string
	// CredentialsDir is systemd's credentials directory, looked at after
	// Files and before Dir; "" when the unit loads none.
	CredentialsDir string
	// AgeIdentity is the age identity file (age-keygen's format, one or
	// more keys). "": CredentialsDir/age.key if it exists, else
	// DefaultAgeIdentity.
	AgeIdentity string
	// Config names the node config in messages ("" for none).
	Config string
	// DirFlag and AgeIdentityFlag name the flags that set Dir and
	// AgeIdentity when a command takes them from its flags instead of a
	// node config (gitedge vrrp's --secrets-dir, --age-identity): messages
	// then say what that command can do.
	DirFlag, AgeIdentityFlag string
}

// FromEnv returns s with CredentialsDir taken from $CREDENTIALS_DIRECTORY
// when it is not set.
func (s Store) FromEnv() Store {
	if s.CredentialsDir == "" {
		s.CredentialsDir = os.Getenv(CredentialsEnv)
	}
	return s
}

// Resolve returns the value v stands for on this node: Plain as is, a
// named secret read from its file, an age value decrypted with the node's
// identity. Errors say which secret, what was tried and what to do; they
// never hold the value.
func (s *Store) Resolve(v Value) (string, error) {
	if err := v.Check(); err != nil {
		return "", err
	}
	switch {
	case v.Secret != "":
		return s.named(v.Secret)
	case v.Age != "":
		return s.decrypt(v)
	}
	return v.Plain, nil
}

func (s *Store) conf(field string) string {
	if s.Config == "" {
		return field
	}
	return field + " of node config " + s.Config
}

// from says where a setting's value comes from, for messages: the flag or
// node config field that set it, or the default and why it applies.
func (s *Store) from(field, flag, value, def string) string {
	switch {
	case value != "" && flag != "":
		return flag
	case value != "":
		return s.conf(field)
	case flag != "":
		return "the default " + def + ": no " + flag
	case s.Config != "":
		return "the default " + def + ": " + field + " is unset in node config " + s.Config
	}
	return "the default " + def
}

func (s *Store) dir() string {
	if s.Dir == "" {
		return DefaultDir
	}
	return s.Dir
}

// named reads the secret called name: secrets.files, then the credentials
// directory, then secrets.dir.
func (s *Store) named(name string) (string, error) {
	if f, ok := s.Files[name]; ok {
		return readSecret(name, f, s.conf("secrets.files."+name))
	}
	var tried []string
	if s.CredentialsDir != "" {
		f := filepath.Join(s.CredentialsDir, name)
		if _, err := os.Lstat(f); err == nil {
			return readSecret(name, f, "$"+CredentialsEnv)
		}
		tried = append(tried, f+" ($"+CredentialsEnv+")")
	}
	f := filepath.Join(s.dir(), name)
	from := s.from("secrets.dir", s.DirFlag, s.Dir, DefaultDir)
	if _, err := os.Lstat(f); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return readSecret(name, f, from)
	}
	tried = append(tried, f+" ("+from+")")
	then := "or map the name to a file in secrets.files; then systemctl reload gitedge"
	if s.DirFlag != "" {
		then = "or name another directory with " + s.DirFlag + ", or hand it over as the systemd credential " + name +
			" (LoadCredential=" + name + ":FILE, read from $" + CredentialsEnv + ")"
	}
	return "", fmt.Errorf("secret %q is not on this node: no file %s: write the value into %s (chown root:gitedge, chmod 0640), %s",
		name, strings.Join(tried, " nor "), f, then)
}

// readSecret reads one secret file: refused when every user may read it,
// empty, or too large; trailing newlines are dropped (echo adds one).
func readSecret(name, path, from string) (string, error) {
	b, err := readPrivate(path, fmt.Sprintf("secret %q", name), from, "write the value into it (chown root:gitedge, chmod 0640)")
	if err != nil {
		return "", err
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("secret %q: %s (%s) is empty: write the value into it", name, path, from)
	}
	return v, nil
}

// readPrivate reads a file holding key material, refusing one that every
// user on the node may read, as ssh refuses such a private key.
func readPrivate(path, what, from, missing string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		hint := ""
		switch {
		case errors.Is(err, fs.ErrNotExist):
			hint = ": " + missing
		case errors.Is(err, fs.ErrPermission):
			hint = ": make it readable by the user gitedge runs as (chown root:gitedge " + path + "; chmod 0640 " + path + ")"
		}
		return nil, fmt.Errorf("%s: cannot read %s (%s): %w%s", what, path, from, err, hint)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%s: %s (%s): %v", what, path, from, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %s (%s) is not a regular file", what, path, from)
	}
	if err := secretmode.Check(path, st.Mode()); err != nil {
		return nil, fmt.Errorf("%s: %s (%s) is %w", what, path, from, err)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s (%s): %v", what, path, from, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%s: %s (%s) is larger than %d KiB", what, path, from, MaxFileBytes>>10)
	}
	return b, nil
}

// identityFile says which age identity file the node uses, and from where.
func (s *Store) identityFile() (path, from string) {
	switch {
	case s.AgeIdentity != "":
		return s.AgeIdentity, s.from("secrets.ageIdentity", s.AgeIdentityFlag, s.AgeIdentity, DefaultAgeIdentity)
	case s.CredentialsDir != "":
		p := filepath.Join(s.CredentialsDir, CredentialAgeIdentity)
		if _, err := os.Lstat(p); err == nil {
			return p, "$" + CredentialsEnv
		}
	}
	return DefaultAgeIdentity, s.from("secrets.ageIdentity", s.AgeIdentityFlag, "", DefaultAgeIdentity) + ", nor the systemd credential " + CredentialAgeIdentity + " in $" + CredentialsEnv
}

// Identities reads the node's age identities and returns them with the
// file they came from (named in messages).
func (s *Store) Identities() (ids []age.Identity, path string, err error) {
	path, from := s.identityFile()
	b, err := readPrivate(path, "age identity", from, "make one with gitedge secret keygen --out "+path+", then re-encrypt the value to its recipient")
	if err != nil {
		return nil, path, err
	}
	ids, err = age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return nil, path, fmt.Errorf("age identity %s (%s): %v: expected the output of gitedge secret keygen or age-keygen", path, from, err)
	}
	return ids, path, nil
}

// Recipients returns the public recipients of the node's identities, as
// `gitedge secret encrypt --recipient` takes them.
func (s *Store) Recipients() ([]string, error) {
	ids, _, err := s.Identities()
	if err != nil {
		return nil, err
	}
	return recipientsOf(ids), nil
}

func recipientsOf(ids []age.Identity) []string {
	var out []string
	for _, id := range ids {
		switch k := id.(type) {
		case *age.X25519Identity:
			out = append(out, k.Recipient().String())
		case *age.HybridIdentity:
			out = append(out, k.Recipient().String())
		}
	}
	slices.Sort(out)
	return out
}

func (s *Store) decrypt(v Value) (string, error) {
	src := v.Source()
	bin, err := dearmor(v.Age)
	if err != nil {
		return "", err
	}
	ids, path, err := s.Identities()
	if err != nil {
		return "", fmt.Errorf("the value is %s and this node cannot decrypt it: %w", src, err)
	}
	r, err := age.Decrypt(bytes.NewReader(bin), ids...)
	if err != nil {
		if _, ok := errors.AsType[*age.NoIdentityMatchError](err); ok {
			return "", fmt.Errorf("the value is %s, but not to this node's age key (identity %s, recipient %s): re-encrypt it with gitedge secret encrypt, adding --recipient %s",
				src, path, strings.Join(recipientsOf(ids), ", "), strings.Join(recipientsOf(ids), " --recipient "))
		}
		return "", fmt.Errorf("the value is %s and does not decrypt with identity %s: %v", src, path, err)
	}
	b, err := io.ReadAll(io.LimitReader(r, MaxFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("the value is %s and does not decrypt with identity %s: %v (altered ciphertext?)", src, path, err)
	}
	if len(b) == 0 {
		return "", fmt.Errorf("the value is %s and decrypts to nothing: encrypt a non-empty value", src)
	}
	return string(b), nil
}
