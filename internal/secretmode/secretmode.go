// Package secretmode holds the one rule every secret file of the node
// follows: a file every user may read is refused, as ssh refuses such a
// private key.
package secretmode

import (
	"fmt"
	"io/fs"
	"os"
)

// Check returns why a secret file of this mode is refused, or nil. The
// error names the file (for the chmod to run), never its content.
func Check(path string, mode fs.FileMode) error {
	if mode.Perm()&0o004 == 0 {
		return nil
	}
	return fmt.Errorf("readable by every user (mode %04o): chmod 0640 %s (owner root, group gitedge); refused until then", mode.Perm(), path)
}

// Stat is Check on the file at path. A file that cannot be stat'ed is not
// refused here: reading it reports why.
func Stat(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return nil
	}
	return Check(path, st.Mode())
}
