package gitsource

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretFileModes: a credential, webhook secret or relay key file
// every user may read is refused, as the node's other secret files are;
// one the gitedge group may read is taken.
func TestSecretFileModes(t *testing.T) {
	tests := []struct {
		mode os.FileMode
		want string // an error containing it; "" for none
	}{
		{0o600, ""},
		{0o640, ""},
		{0o644, "readable by every user (mode 0644): chmod 0640"},
		{0o604, "readable by every user (mode 0604)"},
	}
	for _, tt := range tests {
		file := filepath.Join(t.TempDir(), "webhook.secret")
		if err := os.WriteFile(file, []byte("s3cret\n"), tt.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(file, tt.mode); err != nil { // past the umask
			t.Fatal(err)
		}
		key, err := ReadRelayKey(file)
		switch {
		case tt.want == "" && (err != nil || string(key) != "s3cret"):
			t.Errorf("mode %04o: %q, %v", tt.mode, key, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "s3cret")):
			t.Errorf("mode %04o: %v, want an error with %q and without the secret", tt.mode, err, tt.want)
		}
	}
}
