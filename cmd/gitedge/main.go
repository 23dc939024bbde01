package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. run gets the arguments after the command name
// and returns the process exit status.
type command struct {
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) int
}

// cliEnv carries the process's streams so commands are testable in-process.
type cliEnv struct {
	stdout, stderr io.Writer
	stdin          io.Reader // nil: os.Stdin (gitedge secret encrypt)
}

func commands() map[string]command {
	return map[string]command{
		"run":       {"the daemon: triggers, reconcile loop, proxy, VRRP, infra, admin server", runRun},
		"reconcile": {"one full pass (--once), exit status says whether it converged; --dry-run stops after plan", runReconcile},
		"demo":      {"everything on one machine: a local repository, the Proxmox simulator, the proxy on local ports", runDemo},
		"version":   {"print version, commit and build information", runVersion},
		"validate":  {"check a routes directory: schema, references, clashes (exit 1 with every error)", runValidate},
		"plan":      {"show what a change would do, compared with --base DIR|REF", runPlan},
		"status":    {"show a running node's live commit, last attempt, VRRP state and backends' health", runStatus},

		"pvesim":    {"run the Proxmox VE API simulator (what gitedge's infra tests and demo talk to)", runPvesim},
		"inventory": {"print an Ansible inventory of the managed VMs with their guest-agent addresses", runInventory},
		"source":    {"fetch and verify the configured routes repository and show what would be loaded (--watch follows it)", runSource},
		"vrrp":      {"run the VRRP instances of a routes directory for one node (as keepalived -f)", runVrrp},
		"proxy":     {"serve the listeners, routes and backends of DIR; reload on SIGHUP and file change", runProxy},
		"import":    {"turn an haproxy.cfg, keepalived.conf files and Terraform into a routes repository, with a report", runImport},
		"secret":    {"encrypt a secret for the repository to the nodes' age keys; make or show a node's age key", runSecret},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := &cliEnv{stdout: os.Stdout, stderr: os.Stderr}
	code := dispatch(ctx, env, os.Args[1:])
	stop()
	os.Exit(code)
}

func dispatch(ctx context.Context, env *cliEnv, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args[0] = "version"
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "gitedge: unknown command %q\n\n", args[0])
		usage(env.stderr, cmds)
		return 2
	}
	return c.run(ctx, env, args[1:])
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: gitedge COMMAND [flags]")
	fmt.Fprintln(w)
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun gitedge COMMAND -h for a command's flags.")
}

// cmdFlags is a command's flag set: its own flags plus the logging flags
// every command has (--log-level, --log-format).
type cmdFlags struct {
	*flag.FlagSet
	env       *cliEnv
	name      string
	argsUsage string
	logLevel  string
	logFormat string
	// minArgs and maxArgs bound the positional arguments (set with
	// positional); both 0 by default: a command takes none unless it says.
	minArgs, maxArgs int
	argNames         string
	// epilog is printed after the flags in the usage.
	epilog string
}

// newFlags makes a command's flag set; it reports to the command's stderr
// and returns errors rather than exiting. The logging flags default to
// info and text; a command changes that with logDefaults.
func newFlags(env *cliEnv, name, argsUsage string) *cmdFlags {
	f := &cmdFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), env: env, name: name, argsUsage: argsUsage}
	// parse reports errors and prints the usage itself, prefixed with the
	// command's name.
	f.SetOutput(io.Discard)
	f.FlagSet.Usage = func() {}
	f.StringVar(&f.logLevel, "log-level", "info", "log at this level and above: debug, info, warn or error")
	f.StringVar(&f.logFormat, "log-format", "text", "log lines as text (key=value) or json")
	return f
}

// Usage prints the command's usage line and flags on its stderr.
func (f *cmdFlags) Usage() {
	fmt.Fprintf(f.env.stderr, "usage: gitedge %s %s\n", f.name, f.argsUsage)
	f.printFlags(f.env.stderr)
	if f.epilog != "" {
		fmt.Fprintf(f.env.stderr, "\n%s\n", f.epilog)
	}
}

// printFlags lists the flags as the usage line, the docs and the help
// spell them, "--name TYPE", not with flag.PrintDefaults' single dash.
func (f *cmdFlags) printFlags(w io.Writer) {
	f.VisitAll(func(fl *flag.Flag) {
		typ, usage := flag.UnquoteUsage(fl)
		line := "  --" + fl.Name
		if typ != "" {
			line += " " + typ
		}
		fmt.Fprintf(w, "%s\n    \t%s", line, strings.ReplaceAll(usage, "\n", "\n    \t"))
		if d := fl.DefValue; d != "" && d != "false" && d != "0" && d != "0s" && d != "[]" {
			if typ == "string" {
				fmt.Fprintf(w, " (default %q)", d)
			} else {
				fmt.Fprintf(w, " (default %v)", d)
			}
		}
		fmt.Fprintln(w)
	})
}

// flagErrorDashes spells the flag in one of the flag package's parse
// errors ("flag provided but not defined: -x", "invalid value … for flag
// -x: …") with two dashes, as everything else names flags.
var flagErrorDashes = regexp.MustCompile(`(not defined: |needs an argument: |for flag )-([A-Za-z0-9])`)

// usageError reports what was wrong with the command line, then the
// usage, and returns exit status 2.
func (f *cmdFlags) usageError(format string, args ...any) int {
	fmt.Fprintf(f.env.stderr, "gitedge %s: %s\n", f.name, fmt.Sprintf(format, args...))
	f.Usage()
	return 2
}

// positional says how many positional arguments the command takes, and
// names them for the usage error ("DIR").
func (f *cmdFlags) positional(lo, hi int, names string) {
	f.minArgs, f.maxArgs, f.argNames = lo, hi, names
}

// fail reports err as the command's failure and returns exit status 1.
func (f *cmdFlags) fail(err error) int {
	fmt.Fprintf(f.env.stderr, "gitedge %s: %v\n", f.name, err)
	return 1
}

// logDefaults sets the command's defaults of the logging flags.
func (f *cmdFlags) logDefaults(level, format string) {
	f.logLevel, f.Lookup("log-level").DefValue = level, level
	f.logFormat, f.Lookup("log-format").DefValue = format, format
}

// parseDir is parse for a command whose one optional positional argument
// is a directory (fs.positional(0, 1, "DIR")): "." when none is given.
func (f *cmdFlags) parseDir(args []string) (dir string, code int, ok bool) {
	pos, code, ok := f.parse(args)
	if !ok {
		return "", code, false
	}
	if len(pos) == 1 {
		return pos[0], 0, true
	}
	return ".", 0, true
}

// parse parses args allowing flags after positional arguments ("gitedge
// plan DIR --base X"), returning the positionals, and checks their number
// and the logging flags. ok is false when the command should exit with
// the returned code (2 for a usage error, said on stderr with the usage;
// 0 after -h).
func (f *cmdFlags) parse(args []string) (pos []string, code int, ok bool) {
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				f.Usage()
				return nil, 0, false
			}
			return nil, f.usageError("%s", flagErrorDashes.ReplaceAllString(err.Error(), "$1--$2")), false
		}
		args = f.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if _, err := newLogger(io.Discard, f.logLevel, f.logFormat); err != nil {
		return nil, f.usageError("%v", err), false
	}
	switch {
	case len(pos) > f.maxArgs && f.maxArgs == 0:
		return nil, f.usageError("unexpected argument %q: this command takes flags only", pos[0]), false
	case len(pos) > f.maxArgs:
		return nil, f.usageError("too many arguments %q: expected at most %d (%s)", pos, f.maxArgs, f.argNames), false
	case len(pos) < f.minArgs:
		return nil, f.usageError("missing argument: %s", f.argNames), false
	}
	return pos, 0, true
}

// logger is the command's logger, on its stderr, as the logging flags say
// (parse checked them).
func (f *cmdFlags) logger() *slog.Logger {
	log, _ := newLogger(f.env.stderr, f.logLevel, f.logFormat)
	return log
}
