// Command overlay writes the overlay that builds gitedge with the netpoller
// in epoll's order (package netpollorder) into DIR and prints the go build
// flag that uses it: `go build $(go run ./internal/netpollorder/overlay DIR) ...`.
// The GOROOT patched is the one `$GO env GOROOT` names (GO defaults to go),
// run from the current directory, so that it is the toolchain the build
// will use. When the runtime is not the one it knows, it says so on stderr
// and exits 1.
package main

import (
	"fmt"
	"os"

	"github.com/gitedge/gitedge/internal/netpollorder"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: overlay DIR")
		os.Exit(2)
	}
	goTool := os.Getenv("GO")
	if goTool == "" {
		goTool = "go"
	}
	goroot, err := netpollorder.GOROOT(goTool)
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlay: %v\n", err)
		os.Exit(1)
	}
	overlay, err := netpollorder.WriteOverlay(goroot, os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "overlay: %v\n", err)
		os.Exit(1)
	}
	fmt.Println("-overlay=" + overlay)
}
