//go:build e2e

package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestBinaryNetpollOrder: the binary the suite runs is the one `make build`
// ships, with the netpoller in epoll's order (internal/netpollorder), or
// the stock runtime's order when built with NETPOLL=stock (the Makefile
// passes its NETPOLL as GE_NETPOLL).
func TestBinaryNetpollOrder(t *testing.T) {
	want := "netpoll FIFO)"
	if os.Getenv("GE_NETPOLL") == "stock" {
		want = "netpoll LIFO)"
	}
	out, err := exec.Command(gitedgeBin(t), "version").Output()
	if err != nil {
		t.Fatalf("gitedge version: %v", err)
	}
	if !strings.HasSuffix(strings.TrimSpace(string(out)), want) {
		t.Fatalf("gitedge version: %q, want it to end in %q (make build builds with NETPOLL=fifo; GE_NETPOLL=stock for a stock build)", out, want)
	}
}
