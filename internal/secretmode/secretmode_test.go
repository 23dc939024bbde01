package secretmode

import (
	"io/fs"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tt := range []struct {
		mode fs.FileMode
		want string
	}{
		{0o600, ""},
		{0o640, ""},
		{0o644, "readable by every user (mode 0644): chmod 0640 /etc/gitedge/x"},
		{0o604, "readable by every user (mode 0604)"},
	} {
		err := Check("/etc/gitedge/x", tt.mode)
		if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("mode %04o: %v, want %q", tt.mode, err, tt.want)
		}
	}
}
