package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// peer is a proxy the benchmark runs: how to start it on a run directory
// holding its config, and how to make it re-read that config.
type peer struct {
	name    string
	tool    string // the executable that must be installed
	tls     bool   // SNI passthrough
	version func(r *runner) string
	start   func(r *runner, dir string) (*proc, error)
	// reload applies the config now in dir; the routes directory has been
	// rewritten and the peers' configs regenerated from it.
	reload func(r *runner, dir string, p *proc) error
}

var peers = map[string]*peer{
	"haproxy": {
		name: "haproxy", tool: "haproxy", tls: true,
		version: func(*runner) string { return firstLine("haproxy", "-v") },
		start: func(r *runner, dir string) (*proc, error) {
			cfg := filepath.Join(dir, "haproxy.cfg")
			if out, err := r.loadCommand("haproxy", "-c", "-q", "-f", cfg).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("haproxy -c %s: %v: %s", cfg, err, out)
			}
			// Master-worker: a reload (USR2) starts a new worker that takes
			// the listeners over from the old one, which finishes its
			// connections (HAProxy's seamless reload).
			return r.start("haproxy", r.proxyCPU, nil, dir, "haproxy", "-W", "-f", cfg)
		},
		reload: func(r *runner, dir string, p *proc) error {
			if out, err := r.loadCommand("haproxy", "-c", "-q", "-f", filepath.Join(dir, "haproxy.cfg")).CombinedOutput(); err != nil {
				return fmt.Errorf("haproxy -c: %v: %s", err, out)
			}
			return p.cmd.Process.Signal(syscall.SIGUSR2)
		},
	},
	"nginx": {
		name: "nginx", tool: "nginx", tls: true,
		version: func(*runner) string { return firstLine("nginx", "-v") },
		start: func(r *runner, dir string) (*proc, error) {
			cfg := filepath.Join(dir, "nginx.conf")
			if out, err := r.loadCommand("nginx", "-t", "-q", "-c", cfg, "-p", dir).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("nginx -t %s: %v: %s", cfg, err, out)
			}
			return r.start("nginx", r.proxyCPU, nil, dir, "nginx", "-c", cfg, "-p", dir)
		},
		reload: func(r *runner, dir string, p *proc) error {
			if out, err := r.loadCommand("nginx", "-t", "-q", "-c", filepath.Join(dir, "nginx.conf"), "-p", dir).CombinedOutput(); err != nil {
				return fmt.Errorf("nginx -t: %v: %s", err, out)
			}
			return p.cmd.Process.Signal(syscall.SIGHUP)
		},
	},
	"caddy": {
		name: "caddy", tool: "caddy",
		version: func(*runner) string { return firstLine("caddy", "version") },
		start: func(r *runner, dir string) (*proc, error) {
			return r.start("caddy", r.proxyCPU, caddyEnv(dir), dir, "caddy", "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile")
		},
		reload: func(r *runner, dir string, p *proc) error {
			t := r.o.Topology
			cmd := r.loadCommand("caddy", "reload", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile",
				"--address", fmt.Sprintf("%s:%d", t.ProxyIP, t.AdminPort))
			cmd.Env = append(os.Environ(), caddyEnv(dir)...)
			if out, err := cmd.CombinedOutput(); err != nil {
				return fmt.Errorf("caddy reload: %v: %s", err, out)
			}
			return nil
		},
	},
	"gitedge":      gitedgePeer("gitedge", func(o *options) string { return o.Gitedge }),
	"gitedge-base": gitedgePeer("gitedge-base", func(o *options) string { return o.GitedgeBase }),
}

// gitedgePeer runs `gitedge proxy` on the routes directory itself; bin
// picks the binary (gitedge-base: another build, to compare two).
func gitedgePeer(name string, bin func(*options) string) *peer {
	return &peer{
		name: name, tls: true,
		version: func(r *runner) string {
			out, _ := exec.Command(bin(&r.o), "version").CombinedOutput()
			return strings.Join(strings.Fields(string(out)), " ")
		},
		start: func(r *runner, dir string) (*proc, error) {
			// As every other proxy here: one core (GOMAXPROCS=1), SIGHUP reloads.
			return r.start(name, r.proxyCPU, []string{"GOMAXPROCS=1"}, dir,
				bin(&r.o), "proxy", "--watch=false", filepath.Join(dir, "routes"))
		},
		reload: func(r *runner, dir string, p *proc) error {
			return p.cmd.Process.Signal(syscall.SIGHUP)
		},
	}
}

// caddyEnv keeps Caddy's state in the run directory, on one core.
func caddyEnv(dir string) []string {
	return []string{"GOMAXPROCS=1", "HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "caddy-data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "caddy-config")}
}

// clockTicks is the kernel's USER_HZ (100 on Linux).
const clockTicks = 100.0

// groupTicks sums the CPU ticks (user+system) of p's process group.
func groupTicks(p *proc) int64 {
	var sum int64
	forGroup(p, func(pid string, f []string) {
		var u, s int64
		fmt.Sscan(f[11], &u)
		fmt.Sscan(f[12], &s)
		sum += u + s
	})
	return sum
}

// cpuTicks reads one CPU's line of /proc/stat: the ticks it was busy
// (steal included: time the host took is time the load could not have)
// and all its ticks. ok is false when there is no such CPU, or none was
// named (an unpinned run: the load shares the cores with the proxy).
func cpuTicks(cpu string) (busy, total int64, ok bool) {
	if cpu == "" {
		return 0, 0, false
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	for l := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || f[0] != "cpu"+cpu {
			continue
		}
		for i, v := range f[1:9] { // user nice system idle iowait irq softirq steal
			var n int64
			fmt.Sscan(v, &n)
			total += n
			if i != 3 && i != 4 {
				busy += n
			}
		}
		return busy, total, true
	}
	return 0, 0, false
}

// groupSleeps sums the voluntary context switches of every thread of p's
// process group: how often the proxy blocked with nothing to do. Each
// such sleep ends with a wakeup that the load core pays for (the kernel
// sends the idle proxy core an interrupt), so in a scenario where the load
// core sets the rate, a proxy that sleeps more often per request leaves
// the load less time.
func groupSleeps(p *proc) int64 {
	var sum int64
	forGroup(p, func(pid string, _ []string) {
		tasks, _ := os.ReadDir("/proc/" + pid + "/task")
		for _, t := range tasks {
			b, err := os.ReadFile("/proc/" + pid + "/task/" + t.Name() + "/status")
			if err != nil {
				continue
			}
			for l := range strings.SplitSeq(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "voluntary_ctxt_switches:"); ok {
					var n int64
					fmt.Sscan(strings.TrimSpace(v), &n)
					sum += n
				}
			}
		}
	})
	return sum
}

// groupRSS sums the resident anonymous and shared memory (KiB) of p's
// process group: its heap, stacks and shared zones, not the pages of its
// executable. Those depend on the page cache's state rather than on the
// proxy: a gitedge binary just written by the linker was mapped 9 MiB
// larger at idle than a copy of the same file (RssFile 34 against 24 MiB).
func groupRSS(p *proc) int64 {
	var sum int64
	forGroup(p, func(pid string, _ []string) {
		b, err := os.ReadFile("/proc/" + pid + "/status")
		if err != nil {
			return
		}
		for l := range strings.SplitSeq(string(b), "\n") {
			for _, field := range []string{"RssAnon:", "RssShmem:"} {
				if v, ok := strings.CutPrefix(l, field); ok {
					var kib int64
					fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kib)
					sum += kib
				}
			}
		}
	})
	return sum
}

// forGroup calls fn with the fields after the command name of
// /proc/PID/stat (f[0] is the state) for every process of p's group.
func forGroup(p *proc, fn func(pid string, f []string)) {
	pg := p.cmd.Process.Pid
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid := e.Name()
		if pid[0] < '0' || pid[0] > '9' {
			continue
		}
		b, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		var pgrp int
		fmt.Sscan(f[2], &pgrp)
		if pgrp == pg {
			fn(pid, f)
		}
	}
}

// reloadWithin bounds the time a proxy may take to apply a reload: a
// change not seen by then counts as a failed reload; reloadPoll is how
// often the harness asks meanwhile.
const (
	reloadWithin = 5 * time.Second
	reloadPoll   = 20 * time.Millisecond
)
