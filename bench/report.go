package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
)

func readResults(path string) ([]result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []result
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		rs = append(rs, r)
	}
	return rs, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// medianOf is the median of f over rs.
func medianOf(rs []result, f func(result) float64) float64 {
	xs := make([]float64, 0, len(rs))
	for _, r := range rs {
		xs = append(xs, f(r))
	}
	return median(xs)
}

func ratio(a, b float64) string {
	if b == 0 || a == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// orDash is num, or a dash for a figure not measured (zero).
func orDash(x float64) string {
	if x == 0 {
		return "–"
	}
	return num(x)
}

// pairedWithBest compares a proxy round by round (in a sliced run,
// cycle by cycle) with the better of HAProxy and nginx over the run
// (the one with the higher median; for either of them, the other), as
// "k/n (p P), median R": the rounds above it (ties left out), the sign
// test's p of that count, and the median of the rounds' ratios. One
// peer for every round, not the better of the two in each: the higher
// of two noisy rates is biased upwards, so a proxy level with both
// would come out above it in only about a third of the rounds, and the
// sign test would call that a deficit. Picking the peer by its median
// leans the same way, much less: when HAProxy and nginx are close, the
// one picked is the one the noise favoured.
func pairedWithBest(proxy string, runs, haproxy, nginx []result, val func(result) float64) string {
	var best []result
	switch {
	case proxy == "haproxy":
		best = nginx
	case proxy == "nginx":
		best = haproxy
	case medianOf(nginx, val) > medianOf(haproxy, val):
		best = nginx
	default:
		best = haproxy
	}
	ahead, n, m := paired(runs, best, val, false)
	if n == 0 {
		return "–"
	}
	return fmt.Sprintf("%d/%d (p %.2g), median %.2f", ahead, n, signTest(ahead, n), m)
}

// paired compares runs with peer cycle by cycle: in how many of the n
// cycles both have and differ in, runs' figure was above peer's (below
// with lower), and the median of the cycles' ratios. A tie says nothing
// either way and is left out of the count, as a sign test does (wrk
// gives MiB/s to three figures); a figure of 0 is a cycle not measured.
func paired(runs, peer []result, val func(result) float64, lower bool) (k, n int, medianRatio float64) {
	by := map[int]float64{}
	for _, r := range peer {
		by[r.Round] = val(r)
	}
	var ratios []float64
	for _, r := range runs {
		b, ok := by[r.Round]
		v := val(r)
		if !ok || b == 0 || v == 0 {
			continue
		}
		ratios = append(ratios, v/b)
		if v == b {
			continue
		}
		n++
		if (!lower && v > b) || (lower && v < b) {
			k++
		}
	}
	return k, n, median(ratios)
}

func num(x float64) string {
	switch {
	case x == 0:
		return "0"
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

// errorMark marks the rate of a row whose runs had errors: "" and no
// note when none did, else " †" and the line said under the table. wrk's
// rate counts every answer, a non-2xx one too, so such a rate is not all
// good answers.
func errorMark(proxy string, runs []result) (mark, note string) {
	var non2xx, sockErrs int64
	var k int
	for _, r := range runs {
		if r.Non2xx+r.Errors > 0 {
			k++
		}
		non2xx += r.Non2xx
		sockErrs += r.Errors
	}
	if k == 0 {
		return "", ""
	}
	return " †", fmt.Sprintf("† %s: the rate includes %d error answers (non-2xx) and %d socket errors, in %d of %d runs.\n", proxy, non2xx, sockErrs, k, len(runs))
}

// table renders the results as markdown: per scenario, one row per proxy
// with the median of its rounds, and ratios to HAProxy and to the better
// of HAProxy and nginx, from the same run.
func table(rs []result) string {
	var b strings.Builder
	var order []string
	by := map[string]map[string][]result{}
	var proxies []string
	for _, r := range rs {
		if by[r.Scenario] == nil {
			by[r.Scenario] = map[string][]result{}
			order = append(order, r.Scenario)
		}
		by[r.Scenario][r.Proxy] = append(by[r.Scenario][r.Proxy], r)
		if !slices.Contains(proxies, r.Proxy) {
			proxies = append(proxies, r.Proxy)
		}
	}
	var failures []string
	for _, r := range rs {
		if r.Error != "" {
			round := "round"
			if r.SliceSecs > 0 {
				round = "cycle"
			}
			failures = append(failures, fmt.Sprintf("%s %s %s %d: %s", r.Scenario, r.Proxy, round, r.Round, r.Error))
		}
	}
	for _, sc := range order {
		fmt.Fprintf(&b, "\n### %s\n\n", sc)
		var scRuns []result
		for _, p := range proxies {
			scRuns = append(scRuns, by[sc][p]...)
		}
		sliceText := sliceNote(scRuns) // "" unless a sliced run
		b.WriteString(sliceText)
		ok := func(p string) []result {
			var out []result
			for _, r := range by[sc][p] {
				if r.Skipped == "" && r.Error == "" {
					out = append(out, r)
				}
			}
			return out
		}
		med := func(p string, f func(result) float64) float64 { return medianOf(ok(p), f) }
		var notes []string // under the table: rates that include errors
		switch {
		case strings.HasPrefix(sc, "mem"):
			b.WriteString("| proxy | runs | bytes per idle connection (median) | × HAProxy | connections ready | RSS idle MiB | RSS loaded MiB |\n|---|---|---|---|---|---|---|\n")
			bpc := func(r result) float64 { return r.BytesPerConn }
			h := med("haproxy", bpc)
			for _, p := range proxies {
				runs := ok(p)
				if len(runs) == 0 {
					continue
				}
				var ready []string
				for _, r := range runs {
					ready = append(ready, fmt.Sprintf("%d/%d", r.Ready, r.Conns))
				}
				fmt.Fprintf(&b, "| %s | %d | %s | %s | %s | %.1f | %.1f |\n", p, len(runs), num(med(p, bpc)), ratio(med(p, bpc), h),
					strings.Join(ready, " "), med(p, func(r result) float64 { return float64(r.RSSBaseKiB) / 1024 }),
					med(p, func(r result) float64 { return float64(r.RSSLoadKiB) / 1024 }))
			}
		case strings.HasPrefix(sc, "reload"):
			b.WriteString("| proxy | runs | req/s (median) | socket errors per run | non-2xx per run | reload failures | final routes in force |\n|---|---|---|---|---|---|---|\n")
			for _, p := range proxies {
				runs := ok(p)
				if len(runs) == 0 {
					continue
				}
				var errs, non2xx, fails, final []string
				for _, r := range runs {
					errs = append(errs, fmt.Sprint(r.Errors))
					non2xx = append(non2xx, fmt.Sprint(r.Non2xx))
					fails = append(fails, fmt.Sprintf("%d/%d", r.ReloadFailed, r.Reloads))
					final = append(final, map[bool]string{true: "yes", false: "NO"}[r.FinalOK])
				}
				mark, note := errorMark(p, runs)
				if note != "" {
					notes = append(notes, note)
				}
				fmt.Fprintf(&b, "| %s | %d | %s%s | %s | %s | %s | %s |\n", p, len(runs), num(med(p, func(r result) float64 { return r.RPS })), mark,
					strings.Join(errs, " "), strings.Join(non2xx, " "), strings.Join(fails, " "), strings.Join(final, " "))
			}
		default:
			unit, val := "req/s", func(r result) float64 { return r.RPS }
			if sc == "big" {
				unit, val = "MiB/s", func(r result) float64 { return r.MiBps }
			}
			// tls-close adds the share of handshakes the servers resumed:
			// the load core's work per connection, and so the rate, turn
			// on it.
			resumed := sc == "tls-close"
			extra, extraSep := "", ""
			if resumed {
				extra, extraSep = " TLS resumed % |", "---|"
			}
			rounds := "rounds"
			if sliceText != "" {
				rounds = "cycles"
			}
			fmt.Fprintf(&b, "| proxy | runs | %s median [min–max] | × HAProxy | × best of HAProxy, nginx | %s above the better of HAProxy and nginx (sign test), median ratio | p50 ms | p99 ms | p99 × HAProxy | errors | proxy CPU %% | proxy CPU µs per request | CPU per request × HAProxy | load core busy %% | proxy sleeps per request |%s\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|%s\n", unit, rounds, extra, extraSep)
			// The proxy's CPU time per request (per connection in close
			// and tls-close): what a load-generator-bound scenario does
			// not show in its rate.
			cpuPerReq := func(r result) float64 {
				if r.RPS <= 0 {
					return 0
				}
				return r.ProxyCPU * 1e4 / r.RPS
			}
			// The CPU per request against HAProxy's, round by round (cycle
			// by cycle): the median of the ratios, the rounds below
			// HAProxy's and the sign test's p.
			cpuRatio := func(p string, runs []result) string {
				if p == "haproxy" {
					return ratio(med(p, cpuPerReq), med("haproxy", cpuPerReq))
				}
				k, n, m := paired(runs, ok("haproxy"), cpuPerReq, true)
				if n == 0 {
					return "–"
				}
				return fmt.Sprintf("%.2f (%d/%d below, p %.2g)", m, k, n, signTest(k, n))
			}
			h := med("haproxy", val)
			best := max(h, med("nginx", val))
			p99 := func(r result) float64 { return r.P99 }
			for _, p := range proxies {
				runs := ok(p)
				if len(runs) == 0 {
					continue
				}
				lo, hi := val(runs[0]), val(runs[0])
				var errs int64
				for _, r := range runs {
					lo, hi = min(lo, val(r)), max(hi, val(r))
					errs += r.Errors + r.Non2xx
				}
				m := med(p, val)
				mark, note := errorMark(p, runs)
				if note != "" {
					notes = append(notes, note)
				}
				fmt.Fprintf(&b, "| %s | %d | %s [%s–%s]%s | %s | %s | %s | %s | %s | %s | %d | %s | %s | %s | %s | %s |", p, len(runs), num(m), num(lo), num(hi), mark,
					ratio(m, h), ratio(m, best), pairedWithBest(p, runs, ok("haproxy"), ok("nginx"), val),
					num(med(p, func(r result) float64 { return r.P50 })), num(med(p, p99)),
					ratio(med(p, p99), med("haproxy", p99)), errs, num(med(p, func(r result) float64 { return r.ProxyCPU })),
					num(med(p, cpuPerReq)), cpuRatio(p, runs), orDash(med(p, func(r result) float64 { return r.LoadCPU })),
					num(med(p, func(r result) float64 { return r.ProxySleeps })))
				if resumed {
					fmt.Fprintf(&b, " %s |", orDash(med(p, func(r result) float64 { return r.TLSResumed })))
				}
				b.WriteString("\n")
			}
			// Two builds in one run (-gitedge-base): the one against the
			// other, round by round, as the rows are against the peers.
			if g, base := ok("gitedge"), ok("gitedge-base"); len(g) > 0 && len(base) > 0 {
				k, n, m := paired(g, base, val, false)
				kc, nc, mc := paired(g, base, cpuPerReq, true)
				if n > 0 || nc > 0 {
					fmt.Fprintf(&b, "\ngitedge against gitedge-base, %s by %s: %s above in %d/%d (p %.2g), median ratio %.3f; CPU per request below in %d/%d (p %.2g), median ratio %.3f.\n",
						strings.TrimSuffix(rounds, "s"), strings.TrimSuffix(rounds, "s"), unit, k, n, signTest(k, n), m, kc, nc, signTest(kc, nc), mc)
				}
			}
		}
		if len(notes) > 0 {
			b.WriteString("\n" + strings.Join(notes, "\n"))
		}
		for _, p := range proxies {
			for _, r := range by[sc][p] {
				if r.Skipped != "" {
					fmt.Fprintf(&b, "\n%s: skipped (%s).\n", p, r.Skipped)
				}
			}
		}
	}
	if len(failures) > 0 {
		b.WriteString("\n### runs that failed\n\n")
		for _, f := range failures {
			b.WriteString("- " + f + "\n")
		}
	}
	return b.String()
}
