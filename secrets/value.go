package secrets

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"filippo.io/age/armor"
)

// Value is a secret as the repository writes it: one of the value itself
// (a YAML string: Plain), the name of a secret resolved on the node
// ({secret: NAME}), or the value encrypted to the nodes' age keys
// ({age: "-----BEGIN AGE ENCRYPTED FILE-----…"}). The zero Value is unset.
type Value struct {
	// Plain is the value written as a string in the repository.
	Plain string `json:"-"`
	// Secret names a secret resolved on the node (Store.Resolve).
	Secret string `json:"secret,omitempty"`
	// Age is the value encrypted to the nodes' age recipients, armored.
	Age string `json:"age,omitempty"`

	// unknown is the first key of the mapping form that is neither secret
	// nor age: Check reports it, located, so the rest of the document
	// still decodes (an error here would stop the whole document's).
	unknown string
}

// UnmarshalJSON accepts a string (the value itself) or a mapping with
// secret or age; unknown keys in the mapping are errors, as everywhere in
// the repository.
func (v *Value) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		*v = Value{}
		return json.Unmarshal(b, &v.Plain)
	case len(b) > 0 && b[0] == '{':
		var m map[string]json.RawMessage
		if err := json.Unmarshal(b, &m); err != nil {
			return err
		}
		*v = Value{}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			var dst *string
			switch k {
			case FieldSecret:
				dst = &v.Secret
			case FieldAge:
				dst = &v.Age
			default:
				if v.unknown == "" {
					v.unknown = k
				}
				continue
			}
			if err := json.Unmarshal(m[k], dst); err != nil {
				if te, ok := errors.AsType[*json.UnmarshalTypeError](err); ok {
					te.Field = k
				}
				return err
			}
		}
		return nil
	case bytes.Equal(b, []byte("null")):
		*v = Value{}
		return nil
	}
	what := "number"
	switch {
	case b[0] == '[':
		what = "array"
	case b[0] == 't' || b[0] == 'f':
		what = "bool"
	}
	return &json.UnmarshalTypeError{Value: what, Type: reflect.TypeFor[string]()}
}

// MarshalJSON writes the form UnmarshalJSON reads.
func (v Value) MarshalJSON() ([]byte, error) {
	if v.Secret == "" && v.Age == "" {
		return json.Marshal(v.Plain)
	}
	return json.Marshal(struct {
		Secret string `json:"secret,omitempty"`
		Age    string `json:"age,omitempty"`
	}{v.Secret, v.Age})
}

// IsZero reports whether the value is unset.
func (v Value) IsZero() bool { return v == Value{} }

// IsReference reports whether the value is resolved on the node (a named
// secret or an age-encrypted value) rather than written in the repository.
func (v Value) IsReference() bool { return v.Secret != "" || v.Age != "" }

// Source says where the value comes from, never what it is: "in the
// repository", `secret "vrrp-vi1"`, or "age-encrypted 1a2b3c4d" with a
// short hash of the ciphertext, so a plan shows a re-encryption.
func (v Value) Source() string {
	switch {
	case v.Secret != "":
		return fmt.Sprintf("secret %q", v.Secret)
	case v.Age != "":
		h := sha256.Sum256([]byte(strings.TrimSpace(v.Age)))
		return "age-encrypted " + hex.EncodeToString(h[:4])
	case v.Plain != "":
		return "in the repository"
	}
	return ""
}

// A secret name is a file name: no path, no leading dot.
var nameRule = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// MaxArmored bounds an age-encrypted value in the repository.
const MaxArmored = 64 << 10

// Field names of the mapping form, for located errors.
const (
	FieldSecret = "secret"
	FieldAge    = "age"
)

// ShapeError is a Value that cannot be resolved whatever the node: Field
// is the key of the mapping form at fault ("" for the value as a whole).
type ShapeError struct {
	Field string
	Msg   string
}

func (e *ShapeError) Error() string { return e.Msg }

// Check verifies the value's shape without any node secret: exactly one
// form, a secret name usable as a file name, an age value that is armored
// age ciphertext. It returns nil or a *ShapeError.
func (v Value) Check() error {
	switch {
	case v.unknown != "":
		return &ShapeError{Field: v.unknown, Msg: fmt.Sprintf("unknown field %q: expected secret (a name resolved on the node) or age (an encrypted value)", v.unknown)}
	case v.IsZero():
		return &ShapeError{Msg: "missing: the value, {secret: NAME} or {age: ENCRYPTED}"}
	case v.Secret != "" && v.Age != "":
		return &ShapeError{Msg: "both secret and age: give one (a name resolved on the node, or the value encrypted with gitedge secret encrypt)"}
	case v.Secret != "":
		if !nameRule.MatchString(v.Secret) {
			return &ShapeError{Field: FieldSecret, Msg: fmt.Sprintf("bad secret name %q: letters, digits, '.', '_' and '-', starting with a letter or digit (it is a file name on the node)", v.Secret)}
		}
	case v.Age != "":
		if _, err := dearmor(v.Age); err != nil {
			return &ShapeError{Field: FieldAge, Msg: err.Error()}
		}
	}
	return nil
}

const armorHeader = "-----BEGIN AGE ENCRYPTED FILE-----"

// dearmor returns the binary age file of an armored value.
func dearmor(s string) ([]byte, error) {
	if len(s) > MaxArmored {
		return nil, fmt.Errorf("an age-encrypted value of %d bytes: at most %d", len(s), MaxArmored)
	}
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, armorHeader) {
		return nil, errors.New("not an age-encrypted value: expected the armored output of gitedge secret encrypt (" + armorHeader + " …)")
	}
	b, err := io.ReadAll(armor.NewReader(strings.NewReader(s + "\n")))
	if err != nil {
		return nil, fmt.Errorf("not a well-formed age-encrypted value (%v): paste the whole output of gitedge secret encrypt, as a YAML block (age: |)", err)
	}
	if !bytes.HasPrefix(b, []byte("age-encryption.org/v1\n")) {
		return nil, errors.New("the armored value is not an age file: encrypt it with gitedge secret encrypt")
	}
	return b, nil
}
