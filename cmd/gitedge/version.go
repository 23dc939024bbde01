package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
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
	fmt.Fprintf(env.stdout, "gitedge %s (commit %s, built %s, %s %s/%s)\n", version, c, buildDate, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return 0
}
