package main

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCPUTicks reads a core's line of /proc/stat: a named core that
// exists, and none when unpinned or the core does not exist.
func TestCPUTicks(t *testing.T) {
	for _, tc := range []struct {
		cpu  string
		want bool
	}{
		{"0", true},
		{"", false},
		{"99999", false},
		{"x", false},
	} {
		busy, total, ok := cpuTicks(tc.cpu)
		if ok != tc.want {
			t.Errorf("cpuTicks(%q): ok %v, want %v", tc.cpu, ok, tc.want)
			continue
		}
		if ok && (total <= 0 || busy < 0 || busy > total) {
			t.Errorf("cpuTicks(%q): busy %d of %d ticks", tc.cpu, busy, total)
		}
	}
	// A core spinning for a while shows as busy.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var was, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &was); err != nil {
		t.Fatal(err)
	}
	set.Set(0)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		t.Fatalf("pinning to cpu0: %v", err)
	}
	defer unix.SchedSetaffinity(0, &was)
	b0, t0, _ := cpuTicks("0")
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	b1, t1, _ := cpuTicks("0")
	if t1 <= t0 || b1-b0 < (t1-t0)/2 {
		t.Errorf("cpu0 spun for 300 ms: busy %d of %d ticks", b1-b0, t1-t0)
	}
}
