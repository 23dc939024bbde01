package secrets

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"filippo.io/age"
	"filippo.io/age/armor"
)

// ParseRecipients parses age recipients: each of list is one recipient
// (age1…), each file holds one per line (# comments), as age -r and -R.
func ParseRecipients(list []string, files []string) ([]age.Recipient, error) {
	var out []age.Recipient
	for i, r := range list {
		rs, err := age.ParseRecipients(strings.NewReader(r))
		if err != nil || len(rs) != 1 {
			// Not echoed: it may be a private key given by mistake.
			return nil, fmt.Errorf("--recipient #%d is not an age recipient (expected age1…, as printed by gitedge secret keygen or age-keygen -y)", i+1)
		}
		out = append(out, rs...)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("recipients file: %w", err)
		}
		rs, err := age.ParseRecipients(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("recipients file %s: %v", f, err)
		}
		out = append(out, rs...)
	}
	if len(out) == 0 {
		return nil, errors.New("no recipient: give --recipient age1… (one per node, plus yours) or --recipients-file FILE")
	}
	return out, nil
}

// Encrypt encrypts plaintext to the recipients and returns the armored
// ciphertext, the value of {age: …}.
func Encrypt(plaintext []byte, recipients []age.Recipient) (string, error) {
	if len(plaintext) == 0 {
		return "", errors.New("nothing to encrypt: the value is empty")
	}
	if len(plaintext) > MaxFileBytes {
		return "", fmt.Errorf("the value is larger than %d KiB", MaxFileBytes>>10)
	}
	var b bytes.Buffer
	aw := armor.NewWriter(&b)
	w, err := age.Encrypt(aw, recipients...)
	if err != nil {
		return "", err
	}
	if _, err := w.Write(plaintext); err != nil {
		return "", err
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	if err := aw.Close(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// YAML renders an armored value as the YAML mapping to paste under the
// field (password:), indented by indent spaces:
//
//	age: |
//	  -----BEGIN AGE ENCRYPTED FILE-----
//	  …
func YAML(armored string, indent int) string {
	pad := strings.Repeat(" ", indent)
	var b strings.Builder
	b.WriteString(pad + "age: |\n")
	for line := range strings.SplitSeq(strings.TrimRight(armored, "\n"), "\n") {
		b.WriteString(pad + "  " + line + "\n")
	}
	return b.String()
}

// Keygen makes a new age identity: the file content to keep on the node
// (0600) and its public recipient.
func Keygen() (identity, recipient string, err error) {
	k, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", err
	}
	return fmt.Sprintf("# created by gitedge secret keygen\n# public key: %s\n%s\n", k.Recipient(), k), k.Recipient().String(), nil
}

// RecipientsOfFile reads an identity file and returns its recipients
// (gitedge secret recipient FILE, as age-keygen -y).
func RecipientsOfFile(path string) ([]string, error) {
	b, err := readPrivate(path, "age identity", "--identity", "give the file gitedge secret keygen --out wrote")
	if err != nil {
		return nil, err
	}
	ids, err := age.ParseIdentities(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("age identity %s: %v", path, err)
	}
	return recipientsOf(ids), nil
}
