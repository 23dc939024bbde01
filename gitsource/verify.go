package gitsource

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// verifyError is a refused signature: reason is one of the Reason
// constants.
type verifyError struct {
	reason string
	err    error
}

func (e *verifyError) Error() string { return e.err.Error() }
func (e *verifyError) Unwrap() error { return e.err }

// loadKeyring reads an armored OpenPGP public keyring. It is read on every
// verification so a rotated keyring applies at the next commit.
func loadKeyring(file string) (string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return "", &verifyError{ReasonKeyring, fmt.Errorf("keyring: %w", err)}
	}
	ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(string(data)))
	if err != nil {
		return "", &verifyError{ReasonKeyring, fmt.Errorf("keyring %s: not an armored OpenPGP public keyring (gpg --export --armor): %v", file, err)}
	}
	if len(ring) == 0 {
		return "", &verifyError{ReasonKeyring, fmt.Errorf("keyring %s: holds no keys", file)}
	}
	return string(data), nil
}

// verifyCommit checks that c carries a valid OpenPGP signature by a key of
// the armored keyring, with go-git's commit verification, and says who
// signed.
func verifyCommit(c *object.Commit, keyring, keyringFile string) (*Signer, error) {
	sig := strings.TrimSpace(c.PGPSignature)
	if sig == "" {
		return nil, &verifyError{ReasonUnsigned, fmt.Errorf("commit %s is not signed; a keyring is configured (%s), so only commits signed by its keys are applied", short(c.Hash.String()), keyringFile)}
	}
	if !strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----") {
		first, _, _ := strings.Cut(sig, "\n")
		return nil, &verifyError{ReasonBadSignature, fmt.Errorf("commit %s carries a signature that is not OpenPGP (%s); only OpenPGP signatures are accepted", short(c.Hash.String()), first)}
	}
	issuer := signatureIssuer(sig)
	entity, err := c.Verify(keyring)
	switch {
	case errors.Is(err, pgperrors.ErrUnknownIssuer):
		return nil, &verifyError{ReasonUntrusted, fmt.Errorf("commit %s is signed by key %s, which is not in the keyring %s", short(c.Hash.String()), cmp.Or(issuer, "(unknown id)"), keyringFile)}
	case err != nil:
		return nil, &verifyError{ReasonBadSignature, fmt.Errorf("commit %s: signature by key %s does not verify: %v", short(c.Hash.String()), cmp.Or(issuer, "(unknown id)"), err)}
	}
	s := &Signer{KeyID: issuer, Fingerprint: strings.ToUpper(fmt.Sprintf("%x", entity.PrimaryKey.Fingerprint))}
	if id := entity.PrimaryIdentity(); id != nil {
		s.Identity = id.Name
	}
	return s, nil
}

// signatureIssuer returns the 16-hex id of the key that made an armored
// signature, "" when it cannot be told.
func signatureIssuer(armored string) string {
	block, err := armor.Decode(strings.NewReader(armored))
	if err != nil {
		return ""
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return ""
	}
	s, ok := p.(*packet.Signature)
	if !ok {
		return ""
	}
	switch {
	case s.IssuerKeyId != nil:
		return fmt.Sprintf("%016X", *s.IssuerKeyId)
	case len(s.IssuerFingerprint) >= 8:
		return fmt.Sprintf("%X", s.IssuerFingerprint[len(s.IssuerFingerprint)-8:])
	}
	return ""
}
