package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/gitedge/gitedge/internal/netpollorder"
)

// Set at build time by the Makefile: -ldflags "-X main.version=... -X main.commit=... -X main.buildDate=...".
var (
	version   = "dev"
	commit    = "unknown"
	buildDate = "unknown"
)

func runVersion(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "version", "")
	if _, code, ok := fs.parse(args); !ok {
		return code
	}
	c := commit
	if c == "unknown" {
		if bi, ok := debug.ReadBuildInfo(); ok {
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" {
					c = s.Value
				}
			}
		}
	}
	// The netpoll order tells a Linux `make build` binary (FIFO) from a
	// plain `go build` one (LIFO): internal/netpollorder.
	fmt.Fprintf(env.stdout, "gitedge %s (commit %s, built %s, %s %s/%s, netpoll %s)\n", version, c, buildDate, runtime.Version(), runtime.GOOS, runtime.GOARCH, netpollorder.Order())
	return 0
}
