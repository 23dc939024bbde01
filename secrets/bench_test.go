package secrets

import (
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
)

// BenchmarkResolve: what a pass pays for each secret it resolves (files
// and identities are read at every pass, so a rotation needs no restart).
func BenchmarkResolve(b *testing.B) {
	dir := b.TempDir()
	id, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(dir, "age.key")
	if err := os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "vrrp-vi1"), []byte(value+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	armored, err := Encrypt([]byte(value), []age.Recipient{id.Recipient()})
	if err != nil {
		b.Fatal(err)
	}
	s := &Store{Dir: dir, AgeIdentity: idFile}
	for _, bc := range []struct {
		name string
		v    Value
	}{{"file", Value{Secret: "vrrp-vi1"}}, {"age", Value{Age: armored}}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if got, err := s.Resolve(bc.v); err != nil || got != value {
					b.Fatal(got, err)
				}
			}
		})
	}
}
