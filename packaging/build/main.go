// Command build makes gitedge's release artifacts; `make deb` and `make
// release` run it:
//
//	go run ./packaging/build deb     --version V --arch amd64 --binary BIN --out dist
//	go run ./packaging/build archive --version V --arch arm64 --binary BIN --out dist
//	go run ./packaging/build sums dist
//
// BIN is the gitedge executable for linux/<arch>, built with CGO_ENABLED=0.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/gitedge/gitedge/packaging"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: build deb|archive --version V --arch ARCH --binary BIN --out DIR | build sums DIR")
		return 2
	}
	cmd, args := args[0], args[1:]
	if cmd == "sums" {
		if len(args) != 1 {
			fmt.Fprintln(stderr, "usage: build sums DIR")
			return 2
		}
		p, err := packaging.WriteSums(args[0])
		if err != nil {
			fmt.Fprintf(stderr, "build: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, p)
		return 0
	}
	var b func(packaging.Options) (string, error)
	switch cmd {
	case "deb":
		b = packaging.BuildDeb
	case "archive":
		b = packaging.BuildArchive
	default:
		fmt.Fprintf(stderr, "build: unknown command %q: expected deb, archive or sums\n", cmd)
		return 2
	}
	fs := flag.NewFlagSet("build "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o packaging.Options
	fs.StringVar(&o.Version, "version", "", "the Makefile's VERSION (git describe)")
	fs.StringVar(&o.Arch, "arch", "", "the binary's Go architecture: amd64 or arm64")
	fs.StringVar(&o.Binary, "binary", "", "the gitedge executable for linux/ARCH (CGO_ENABLED=0)")
	fs.StringVar(&o.Root, "root", ".", "the repository (packaging/, README.md, docs/)")
	fs.StringVar(&o.Out, "out", "dist", "the directory to write to")
	fs.StringVar(&o.Maintainer, "maintainer", packaging.DefaultMaintainer, "the package's Maintainer field")
	mtime := fs.String("mtime", os.Getenv("SOURCE_DATE_EPOCH"), "seconds since the epoch stamped on every file (default $SOURCE_DATE_EPOCH, else now)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "build %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 2
	}
	o.MTime = time.Now().UTC().Truncate(time.Second)
	if *mtime != "" {
		sec, err := strconv.ParseInt(*mtime, 10, 64)
		if err != nil {
			fmt.Fprintf(stderr, "build %s: --mtime %q: expected seconds since the epoch\n", cmd, *mtime)
			return 2
		}
		o.MTime = time.Unix(sec, 0).UTC()
	}
	p, err := b(o)
	if err != nil {
		fmt.Fprintf(stderr, "build: %v\n", err) // err starts with what it built
		return 1
	}
	fmt.Fprintln(stdout, p)
	return 0
}
