package netpollorder

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/internal/testkit"
)

func goroot(t *testing.T) string {
	t.Helper()
	dir, err := GOROOT("go")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPatch(t *testing.T) {
	real, err := os.ReadFile(filepath.Join(goroot(t), File))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, src, err string
	}{
		{"the installed runtime", string(real), ""},
		{"no return", strings.Replace(string(real), anchor, "\treturn toRun, 0\n}\n", 1), "found 0 times"},
		{"two returns", string(real) + "\nfunc f() (gList, int32) {\n" + decl + "\tdelta := int32(0)\n" + anchor, "found 2 times"},
		{"another list", strings.Replace(string(real), decl, "\tvar toRun gQueue\n", 1), "found 0 times"},
		{"not Go", decl + anchor, "does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Patch([]byte(tc.src))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), File) {
					t.Fatalf("err %v, want one naming %s and %q", err, File, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(out, []byte(reversal+anchor)) || len(out) != len(tc.src)+len(reversal) {
				t.Errorf("the reversal is not right before netpoll's return (%d bytes from %d)", len(out), len(tc.src))
			}
		})
	}
}

// TestOverlayOrder builds the probe with the stock runtime and with the
// overlay, as the Makefile does, and runs both: the stock scheduler runs a
// batch from the netpoller last-ready first, the patched one in epoll's
// order. If the stock one ever says FIFO, Go keeps the order itself and
// the patch can go.
func TestOverlayOrder(t *testing.T) {
	dir := t.TempDir()
	overlay, err := WriteOverlay(goroot(t), filepath.Join(dir, "netpoll"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"stock", nil, LIFO},
		{"overlay", []string{"-overlay=" + overlay}, FIFO},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := filepath.Join(dir, "probe-"+tc.name)
			args := append([]string{"build", "-o", bin}, tc.flags...)
			build := exec.Command("go", append(args, "./testdata/probe")...)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("%s: %v\n%s", build, err, out)
			}
			for range 3 {
				out, err := exec.Command(bin).Output()
				if err != nil {
					t.Fatal(err)
				}
				if got := strings.TrimSpace(string(out)); got != tc.want {
					t.Fatalf("netpoll order %s, want %s", got, tc.want)
				}
			}
		})
	}
}

// TestOrderInProcess: the probe works in a test process too, among other
// goroutines: it tells one of the two orders, and gives GOMAXPROCS back.
// Under the race detector (`make unit`), whose scheduler shuffles its run
// queue, it can only say mixed, so there this checks that the probe ends;
// TestOverlayOrder's builds are without the race detector.
func TestOrderInProcess(t *testing.T) {
	before := runtimeGOMAXPROCS()
	got := Order()
	if want := []string{FIFO, LIFO}; testkit.RaceEnabled {
		if got != Mixed {
			t.Errorf("Order() = %q under the race detector, want %q", got, Mixed)
		}
	} else if got != want[0] && got != want[1] {
		t.Errorf("Order() = %q, want one of %q", got, want)
	}
	if after := runtimeGOMAXPROCS(); after != before {
		t.Errorf("GOMAXPROCS %d after the probe, was %d", after, before)
	}
}

func runtimeGOMAXPROCS() int { return runtime.GOMAXPROCS(0) }
