package dataplane

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// child is this test binary run again as a child process, running one
// test (its role, told by env) until the parent closes its stdin.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser // its standard input
	lines chan string    // its standard output, line by line; closed at its end
}

// startChild runs the test named run in a child process with env added
// to this one's; it is stopped when the test ends.
func startChild(t *testing.T, run string, env ...string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+run+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close() // the child ends on stdin's EOF
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(3 * waitFor):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	c := &child{cmd: cmd, in: in, lines: make(chan string, 256)}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	return c
}

// next returns the rest of the child's next line that starts with prefix.
func (c *child) next(t *testing.T, prefix string) string {
	t.Helper()
	deadline := time.After(3 * waitFor)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				t.Fatalf("the child ended before saying %q", prefix)
			}
			if rest, found := strings.CutPrefix(l, prefix); found {
				return rest
			}
		case <-deadline:
			t.Fatalf("the child did not say %q", prefix)
		}
	}
}
