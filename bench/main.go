package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gitedge/gitedge/reconcile"
)

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "run":
		err = cmdRun(os.Args[2:])
	case "configs":
		err = cmdConfigs(os.Args[2:])
	case "table":
		err = cmdTable(os.Args[2:])
	default:
		usage()
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  bench run [flags]                    measure the proxies side by side (see -h)
  bench configs -routes DIR -out DIR   write haproxy.cfg, nginx.conf and Caddyfile for a routes directory
  bench table RESULTS.jsonl            print the markdown table of a run
`)
}

func cmdRun(args []string) error {
	o, err := parseRun(args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, o, os.Stderr)
	if rep != "" {
		fmt.Print(rep)
	}
	return err
}

// parseRun reads run's flags over the defaults.
func parseRun(args []string) (options, error) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	o := defaultOptions()
	scen := fs.String("scenarios", strings.Join(o.Scenarios, ","), "comma list: "+strings.Join(allScenarios, ","))
	prox := fs.String("proxies", strings.Join(o.Proxies, ","), "comma list: haproxy, nginx, caddy, gitedge, gitedge-base")
	fs.IntVar(&o.Rounds, "rounds", 0, "rounds of the throughput scenarios (default: as many as -proxies names); each round runs every proxy once, in turn, starting one further down -proxies than the round before (a multiple of the number of proxies gives each every place equally often)")
	fs.IntVar(&o.Slices, "slices", 0, "measure the throughput scenarios in this many cycles of -slice instead of rounds: every proxy is started once, on a loopback address of its own, and each cycle runs every proxy for one slice in turn (docs/benchmarks.md, Slices)")
	fs.DurationVar(&o.Slice, "slice", o.Slice, "length of a slice of -slices, in whole seconds (wrk's unit)")
	fs.IntVar(&o.OtherRounds, "other-rounds", o.OtherRounds, "rounds of the reload and memory scenarios")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "length of each measured wrk run")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "unrecorded load before each measured run")
	fs.DurationVar(&o.ReloadDuration, "reload-duration", o.ReloadDuration, "length of a reload scenario")
	fs.IntVar(&o.Reloads, "reloads", o.Reloads, "reloads during a reload scenario")
	fs.IntVar(&o.MemConns, "mem-conns", o.MemConns, "idle connections of the memory scenarios (0: as many as the descriptor limit allows, at most 9000)")
	fs.StringVar(&o.Gitedge, "gitedge", o.Gitedge, "the gitedge binary under test")
	fs.StringVar(&o.GitedgeBase, "gitedge-base", "", "another gitedge build, measured as the proxy gitedge-base (add it to -proxies) to compare two builds in one run")
	fs.StringVar(&o.Out, "out", o.Out, "results directory (default: a new directory under the system's temporary one)")
	fs.BoolVar(&o.Topology.NoDeferAccept, "no-defer-accept", false, "listeners take each connection at the end of its handshake (deferAccept: false), in every proxy, instead of at its first byte (gitedge's default, HAProxy's defer-accept, nginx's deferred)")
	fs.BoolVar(&o.NoPin, "no-pin", o.NoPin, "do not pin the proxy and the load generator to separate cores")
	fs.BoolVar(&o.PerServerTicketKeys, "per-server-ticket-keys", false, "give each TLS server a session-ticket key of its own (resumption then depends on the order the proxy picks servers in) instead of one shared key")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.Scenarios = splitList(*scen)
	o.Proxies = splitList(*prox)
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["rounds"] {
		o.Rounds = len(o.Proxies) // each proxy in each place once
	}
	if o.Slices > 0 && set["rounds"] {
		return o, errors.New("-rounds and -slices both set: a sliced run measures the throughput scenarios in -slices cycles (the reload and memory ones in -other-rounds)")
	}
	if o.Slice < time.Second || o.Slice%time.Second != 0 {
		return o, fmt.Errorf("-slice %s: wrk runs for whole seconds; give 1s or more, in seconds", o.Slice)
	}
	return o, nil
}

func cmdConfigs(args []string) error {
	fs := flag.NewFlagSet("configs", flag.ExitOnError)
	routes := fs.String("routes", "", "a routes directory (what `gitedge proxy DIR` loads)")
	out := fs.String("out", "", "where to write the configs")
	stream := fs.String("nginx-stream-module", findStreamModule(), "nginx's stream module, loaded for tls listeners")
	fs.Parse(args)
	if *routes == "" || *out == "" {
		return errors.New("configs needs -routes DIR and -out DIR")
	}
	d, err := reconcile.LoadDir(*routes)
	if err != nil {
		return err
	}
	return writeConfigs(&d.Dataplane, *out, *stream, defaultTopology())
}

func cmdTable(args []string) error {
	if len(args) != 1 {
		return errors.New("table needs the results.jsonl of a run")
	}
	rs, err := readResults(args[0])
	if err != nil {
		return err
	}
	fmt.Print(table(rs))
	return nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// options of a run.
type options struct {
	Scenarios      []string
	Proxies        []string
	Rounds         int
	Slices         int           // cycles of a sliced run; 0: rounds
	Slice          time.Duration // a slice's length
	OtherRounds    int
	Duration       time.Duration
	Warmup         time.Duration
	ReloadDuration time.Duration
	Reloads        int
	MemConns       int
	MemHold        time.Duration
	Conns          int           // wrk -c
	WrkTimeout     time.Duration // wrk --timeout; 0: wrk's own (2s)
	BigConns       int           // wrk -c for the 1 MiB download
	Gitedge        string
	GitedgeBase    string
	Out            string
	NoPin          bool
	// PerServerTicketKeys: each TLS server its own ticket key (before
	// Round 9), not one shared by the pool.
	PerServerTicketKeys bool
	Topology            topology
}

var allScenarios = []string{"ka", "close", "tls-ka", "tls-close", "big", "reload", "reload-close", "reload-tls", "mem", "mem-tls", "mem-tls-silent"}

// defaultOptions is what `make bench` runs: about 13 minutes on two
// cores. Rounds is one per proxy (parseRun sets it from -proxies).
func defaultOptions() options {
	proxies := []string{"haproxy", "nginx", "caddy", "gitedge"}
	return options{
		Scenarios: allScenarios, Proxies: proxies,
		Rounds: len(proxies), Slice: 2 * time.Second, OtherRounds: 1, Duration: 6 * time.Second, Warmup: time.Second,
		ReloadDuration: 10 * time.Second, Reloads: 10, MemHold: 2 * time.Second,
		Conns: 64, BigConns: 8, Gitedge: "bin/gitedge", Topology: defaultTopology(),
	}
}
