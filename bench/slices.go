package main

import (
	"context"
	"fmt"
	"math/big"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Slices: the throughput scenarios measured with every proxy up at once,
// each on a loopback address of its own, in short slices taken in turn
// (-slices N). The machine's noise moves in seconds (Round 17 of
// docs/benchmarks.md): a proxy's 2 s rates spread by 5 to 20 %, so three
// rounds of 6 s a proxy, a minute apart, cannot tell a few percent from
// chance. Slices a few seconds apart put the proxies under nearly the
// same weather, and many of them give a count (the cycles in which a
// proxy was above one peer) that a sign test can judge.

// slot is t for the i-th proxy of a sliced run: the same ports on the
// i-th loopback address after t's (127.0.0.2, .3, …), clear of the
// servers' addresses.
func (t topology) slot(i int) (topology, error) {
	a, err := netip.ParseAddr(t.ProxyIP)
	if err != nil || !a.Is4() {
		return t, fmt.Errorf("proxy address %q: a sliced run needs an IPv4 loopback address", t.ProxyIP)
	}
	b := a.As4()
	if int(b[3])+i > 254 {
		return t, fmt.Errorf("proxy address %s: no room for %d proxies after it", t.ProxyIP, i+1)
	}
	b[3] += byte(i)
	ip := netip.AddrFrom4(b).String()
	for _, s := range slices.Concat(httpServers, tlsServers) {
		if s.ip == ip {
			return t, fmt.Errorf("proxy %d of a sliced run would listen on %s, a server's address: fewer proxies", i+1, ip)
		}
	}
	t.ProxyIP = ip
	return t, nil
}

// sliced runs scenario sc as r.o.Slices cycles: every proxy is started
// once, on its own address, warmed up, then each cycle runs wrk against
// every proxy for r.o.Slice in turn, starting one proxy further down the
// list each cycle (roundOrder). Each slice is a result whose Round is its
// cycle, so the table's medians and counts read cycles as rounds.
func (r *runner) sliced(ctx context.Context, sc string) error {
	type up struct {
		pe   *peer
		p    *proc
		dir  string
		t    topology
		args []string
	}
	ups := map[string]*up{}
	var names []string
	defer func() {
		for _, u := range ups {
			r.stop(u.p, syscall.SIGTERM)
		}
	}()
	// slice is the result of proxy name's slice in a cycle (1 for what
	// comes before the first: its start and warm-up).
	slice := func(name string, cycle int) result {
		return result{Scenario: sc, Proxy: name, Round: cycle, SliceSecs: r.o.Slice.Seconds()}
	}
	for i, name := range r.o.Proxies {
		pe := peers[name]
		res := slice(name, 1)
		if strings.Contains(sc, "tls") && !pe.tls {
			res.Skipped = "no TLS passthrough"
			r.record(res)
			continue
		}
		t, err := r.o.Topology.slot(i)
		if err != nil {
			return err
		}
		u := &up{pe: pe, dir: filepath.Join(r.out, "runs", fmt.Sprintf("%s-%s-slices", sc, name)), t: t}
		r.logf("%s: starting %s on %s", sc, name, t.ProxyIP)
		if u.p, err = r.launch(pe, u.dir, t); err != nil {
			res.Error = err.Error()
			r.record(res)
			continue
		}
		u.args = r.wrkArgs(sc, t, r.o.Conns)
		ups[name] = u
		names = append(names, name)
	}
	// drop stops a proxy that failed and leaves it out of the cycles
	// after this one; its failure is recorded.
	drop := func(name string, res result) {
		r.record(res)
		r.stop(ups[name].p, syscall.SIGTERM)
		delete(ups, name)
		names = slices.DeleteFunc(names, func(n string) bool { return n == name })
	}
	for _, name := range slices.Clone(names) {
		if r.o.Warmup <= 0 {
			break
		}
		u := ups[name]
		if _, err := r.wrk(ctx, u.dir, "warmup", r.o.Warmup, u.t, u.args); err != nil {
			res := slice(name, 1)
			res.Error = "warm-up: " + err.Error()
			drop(name, res)
		}
	}
	for cycle := 1; cycle <= r.o.Slices && len(names) > 0; cycle++ {
		var line []string
		for _, name := range roundOrder(names, cycle) {
			if err := ctx.Err(); err != nil {
				return err
			}
			u := ups[name]
			res := slice(name, cycle)
			err := r.measure(ctx, sc, u.p, u.dir, fmt.Sprintf("slice-%02d", cycle), r.o.Slice, u.t, u.args, &res)
			select {
			case <-u.p.done:
				// wrk still reports a rate (0) against a proxy gone.
				err = fmt.Errorf("%s exited during the slice (see %s)", name, u.dir)
			default:
			}
			if err != nil {
				res.Error = err.Error()
				line = append(line, name+" ERROR")
				drop(name, res)
				continue
			}
			r.store(res)
			line = append(line, fmt.Sprintf("%s %s", name, num(res.RPS)))
		}
		r.logf("%s cycle %d/%d: %s", sc, cycle, r.o.Slices, strings.Join(line, ", "))
	}
	return nil
}

// signTest is the two-sided sign test's p-value of k successes in n
// paired trials: the chance of a count at least as far from n/2 if
// either side of each pair were equally likely. Small, the count is not
// chance; 0.05 or more, it may be.
func signTest(k, n int) float64 {
	if n <= 0 {
		return 1
	}
	// Exact: twice the smaller tail, sum of C(n, i) for i up to it, over 2^n.
	tail := new(big.Int)
	for i := 0; i <= min(k, n-k); i++ {
		tail.Add(tail, new(big.Int).Binomial(int64(n), int64(i)))
	}
	p, _ := new(big.Rat).SetFrac(tail.Lsh(tail, 1), new(big.Int).Lsh(big.NewInt(1), uint(n))).Float64()
	return min(1, p)
}

// sliceNote says how a sliced scenario was measured, for the table.
func sliceNote(rs []result) string {
	var secs float64
	cycles := 0
	for _, r := range rs {
		if r.SliceSecs > 0 {
			secs = r.SliceSecs
			if r.Skipped == "" && r.Error == "" {
				cycles = max(cycles, r.Round)
			}
		}
	}
	if secs == 0 {
		return ""
	}
	return fmt.Sprintf("%d cycles of %s slices, every proxy up at once on its own address; medians over the slices; by cycle, each proxy against the better of HAProxy and nginx over the run (for either of them, the other).\n\n",
		cycles, time.Duration(secs*float64(time.Second)))
}
