package forge

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/gitedge/gitedge/internal/secretmode"
)

// token is an API token. Every way of printing it prints "[redacted]", so
// a token that reaches a log call, an error or a JSON document by mistake
// still does not leak.
type token struct{ v string }

const redacted = "[redacted]"

func (token) String() string               { return redacted }
func (token) GoString() string             { return redacted }
func (token) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (token) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (token) MarshalText() ([]byte, error) { return []byte(redacted), nil }
func (t token) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }
func (t token) scrub(s string) string      { return scrub(s, t.v) }
func (t token) equal(o token) bool         { return t.v == o.v }

// scrub replaces every occurrence of secret in s.
func scrub(s, secret string) string {
	if secret == "" {
		return s
	}
	return strings.ReplaceAll(s, secret, redacted)
}

// readToken reads a token file: surrounding white space is dropped, and an
// empty file is an error. A file every user may read is refused, as ssh
// refuses such a private key and the node refuses such a secret file
// (package secrets). Errors name the file, never its content.
func readToken(path string) (token, error) {
	if err := secretmode.Stat(path); err != nil {
		return token{}, fmt.Errorf("forge.tokenFile %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return token{}, fmt.Errorf("forge.tokenFile %s: %v", path, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return token{}, fmt.Errorf("forge.tokenFile %s: empty", path)
	}
	if strings.ContainsAny(v, "\r\n") {
		return token{}, fmt.Errorf("forge.tokenFile %s: more than one line; the file must hold the token only", path)
	}
	return token{v: v}, nil
}
