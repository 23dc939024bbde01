package main

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestGroupSleeps counts how often a process group blocked: a shell that
// waits for 20 short sleeps blocks at least 20 times, one that spins
// without a system call hardly ever.
func TestGroupSleeps(t *testing.T) {
	for _, tc := range []struct {
		name     string
		script   string
		min, max int64
	}{
		{"sleeps", "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 0.01; done; sleep 0.3", 20, 1 << 30},
		{"spins", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 0.3", 0, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command("sh", "-c", tc.script)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			p := &proc{name: tc.name, cmd: cmd}
			before := groupSleeps(p)
			// Read until the shell ends (its count goes with it): the last
			// reading falls in the final pause, after the counted part.
			var last int64
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
				select {
				case err := <-done:
					if err != nil {
						t.Fatal(err)
					}
					if got := last - before; got < tc.min || got > tc.max {
						t.Errorf("%s: %d sleeps counted, want %d to %d", tc.name, got, tc.min, tc.max)
					}
					return
				default:
				}
				if n := groupSleeps(p); n > 0 {
					last = n
				}
			}
			cmd.Process.Kill()
			t.Fatalf("%s did not end within 10 s", tc.name)
		})
	}
}
