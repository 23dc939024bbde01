package nstest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

// childEnv names, in a child test binary, the test it runs in a namespace.
const childEnv = "GITEDGE_NETNS_CHILD"

// InNetns runs the calling test again in a child process of the test
// binary, in a network namespace of its own that ends with the process
// (nothing to clean up, no name to collide with another run), and fails
// with the child's output when the child fails. It returns true in the
// child, where the test body runs. Root only: it skips otherwise.
func InNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childEnv) == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		testkit.Missing(t, "needs root for a network namespace (make test runs as root)")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("in a network namespace: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("the child did not run %s:\n%s", t.Name(), out)
	}
	if testing.Verbose() {
		t.Logf("in a network namespace:\n%s", out)
	}
	return false
}

// Run runs a command and fails the test with its output when it fails;
// it returns the output.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

var seq atomic.Int32

// Set is a lab's named namespaces. Each is made with lo up and without
// duplicate address detection; all are deleted, last made first, when
// the test ends.
type Set struct {
	t testing.TB
	// Prefix starts every name of the set: tag, pid and a sequence
	// number, so that a sweep can tell a dead process's namespaces.
	Prefix string

	mu   sync.Mutex
	made []string
}

// NewSet returns an empty set whose names start with tag, the pid and
// the set's number ("ge-" gives "ge-1234-1-"). Its teardown is
// registered now: cleanups registered after it (stopping the processes
// in the namespaces) run before it.
func NewSet(t testing.TB, tag string) *Set {
	s := &Set{t: t, Prefix: fmt.Sprintf("%s%d-%d-", tag, os.Getpid(), seq.Add(1))}
	t.Cleanup(func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, ns := range slices.Backward(s.made) {
			exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	return s
}

// Add makes the namespace named ns (the caller puts Prefix in front).
func (s *Set) Add(ns string) {
	s.t.Helper()
	Run(s.t, "ip", "netns", "add", ns)
	s.mu.Lock()
	s.made = append(s.made, ns)
	s.mu.Unlock()
	Run(s.t, "ip", "-n", ns, "link", "set", "lo", "up")
	// No duplicate address detection: link-local addresses usable at once.
	Run(s.t, "ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
}

// Command is a command run in namespace ns by `ip netns exec`, killed if
// the test process dies.
func Command(ns string, env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}
