package main

import (
	"strings"
	"testing"
)

func TestReconcileOnce(t *testing.T) {
	code, out, errOut := gitedge(t, "reconcile", "--once", "--config", "/nonexistent", "--source", "../../examples/homelab")
	if code != 0 || !strings.Contains(out, ": applied") || !strings.Contains(out, "desired: 2 node(s), 2 listener(s), 3 route(s)") {
		t.Errorf("valid: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = gitedge(t, "reconcile", "--once", "--dry-run", "--config", "/nonexistent", "--source", "../../examples/homelab")
	if code != 0 || !strings.Contains(out, ": planned") {
		t.Errorf("dry run: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = gitedge(t, "reconcile", "--once", "--config", "/nonexistent", "--source", "../../reconcile/testdata/invalid/bad-size")
	if code != 1 || !strings.Contains(out, ": invalid") || !strings.Contains(errOut, `spec.disk.size: bad size "8GB"`) {
		t.Errorf("invalid: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, _ := gitedge(t, "reconcile", "--source", "x"); code != 2 {
		t.Errorf("without --once: exit %d, want 2", code)
	}
}
