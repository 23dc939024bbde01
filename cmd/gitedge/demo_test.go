package main

import (
	"strings"
	"testing"
)

// TestDemo runs the whole `gitedge demo` tour in-process: git commits,
// webhook, proxy reload under load, refused commit, VMs in the simulator,
// drift set back. Every step checks itself; here we check what it printed.
func TestDemo(t *testing.T) {
	code, out, errOut := gitedge(t, "demo")
	if code != 0 {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	steps := strings.Split(out, "\n5. ")
	if len(steps) != 2 {
		t.Fatalf("no step 5 in:\n%s", out)
	}
	after := strings.Split(steps[1], "\n6. ")[0]
	for _, want := range []string{
		"0 failed; answers seen: blue, green",
		// A keep-alive client connection idle across the reload takes the
		// new table on its next request.
		"Host: app.demo.test' http://",
	} {
		if !strings.Contains(after, want) {
			t.Errorf("step 5 lacks %q:\n%s", want, after)
		}
	}
	for line := range strings.Lines(after) {
		if strings.Contains(line, "Host: app.demo.test") && !strings.Contains(line, "→  green") {
			t.Errorf("after the merge app.demo.test must answer green: %s", line)
		}
	}
	for _, want := range []string{
		"lb-0 ansible_host=192.0.2.250",
		"lb-1 ansible_host=192.0.2.251",
		`no Backend named "grene"`,
		"sets it back to 4096 MiB",
		`certificate of "secure.demo.test"`,
		"config:       Stalled",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
