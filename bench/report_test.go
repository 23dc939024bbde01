package main

import (
	"strings"
	"testing"
)

func TestPairedWithBest(t *testing.T) {
	rps := func(r result) float64 { return r.RPS }
	cycles := func(proxy string, rates ...float64) []result {
		var rs []result
		for i, x := range rates {
			if x >= 0 { // a negative rate: the slice failed
				rs = append(rs, result{Proxy: proxy, Round: i + 1, RPS: x})
			}
		}
		return rs
	}
	for _, tc := range []struct {
		name, proxy          string
		runs, haproxy, nginx []result
		want                 string
	}{
		// nginx swings around HAProxy's level: the better of the two in
		// each cycle is 110 half the time, but the peer to beat is one
		// of them, here HAProxy (medians equal).
		{"one peer for every cycle", "gitedge", cycles("gitedge", 105, 105, 105, 105),
			cycles("haproxy", 100, 100, 100, 100), cycles("nginx", 110, 90, 110, 90), "4/4 (p 0.12), median 1.05"},
		{"the peer with the higher median", "gitedge", cycles("gitedge", 105, 105, 105, 105),
			cycles("haproxy", 100, 100, 100, 100), cycles("nginx", 110, 110, 110, 90), "1/4 (p 0.62), median 0.95"},
		{"HAProxy against nginx", "haproxy", cycles("haproxy", 100, 100, 100), cycles("haproxy", 100, 100, 100), cycles("nginx", 90, 120, 130), "1/3 (p 1), median 0.83"},
		{"nginx against HAProxy", "nginx", cycles("nginx", 90, 120, 130), cycles("haproxy", 100, 100, 100), cycles("nginx", 90, 120, 130), "2/3 (p 1), median 1.20"},
		// As a sign test does: a tie is neither above nor below.
		{"ties are left out of the count", "gitedge", cycles("gitedge", 100, 110, 120), cycles("haproxy", 100, 100, 100), nil, "2/2 (p 0.5), median 1.10"},
		{"a cycle with no figure is left out", "gitedge", cycles("gitedge", 0, 110), cycles("haproxy", 100, 100), nil, "1/1 (p 1), median 1.10"},
		{"cycles the peer missed are left out", "gitedge", cycles("gitedge", 90, 120, 130),
			cycles("haproxy", 100, -1, 100), nil, "1/2 (p 1), median 1.10"},
		{"no cycle in common", "gitedge", cycles("gitedge", 100), cycles("haproxy", -1, 100), nil, "–"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pairedWithBest(tc.proxy, tc.runs, tc.haproxy, tc.nginx, rps); got != tc.want {
				t.Errorf("pairedWithBest = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTable: a sliced run's table says how it was measured and counts
// cycles; a run in rounds counts rounds, the same way.
func TestTable(t *testing.T) {
	// A proxy skipped and one that failed to start come first: the note
	// must still count the cycles measured.
	rs := []result{
		{Scenario: "close", Proxy: "caddy", Round: 1, SliceSecs: 2, Skipped: "not in this test"},
		{Scenario: "close", Proxy: "gitedge-base", Round: 1, SliceSecs: 2, Error: "nothing listens"},
	}
	for c := 1; c <= 15; c++ {
		g := 1100.0
		if c > 13 {
			g = 900
		}
		rs = append(rs,
			result{Scenario: "close", Proxy: "haproxy", Round: c, RPS: 800, ProxyCPU: 80, SliceSecs: 2},
			result{Scenario: "close", Proxy: "nginx", Round: c, RPS: 1000, ProxyCPU: 80, SliceSecs: 2},
			result{Scenario: "close", Proxy: "gitedge", Round: c, RPS: g, ProxyCPU: 80, SliceSecs: 2})
	}
	out := table(rs)
	for _, want := range []string{"15 cycles of 2s slices", "cycles above the better of HAProxy and nginx (sign test), median ratio",
		"- close gitedge-base cycle 1: nothing listens",
		"| gitedge | 15 | 1100 [900–1100] | 1.38 | 1.10 | 13/15 (p 0.0074), median 1.10 |", // against nginx, the better by median
		"| haproxy | 15 | 800 [800–800] | 1.00 | 0.80 | 0/15 (p 6.1e-05), median 0.80 |",   // each of the two against the other
		"| nginx | 15 | 1000 [1000–1000] | 1.25 | 1.00 | 15/15 (p 6.1e-05), median 1.25 |",
		// CPU per request against HAProxy's (1000 µs), cycle by cycle:
		// gitedge's 727 µs in 13 cycles and 889 in 2.
		"| 727 | 0.73 (15/15 below, p 6.1e-05) |"} {
		if !strings.Contains(out, want) {
			t.Errorf("sliced table lacks %q:\n%s", want, out)
		}
	}
	rs = rs[2:]
	for i := range rs {
		rs[i].SliceSecs = 0
	}
	out = table(rs)
	if strings.Contains(out, "slices") || !strings.Contains(out, "rounds above the better of HAProxy and nginx") ||
		!strings.Contains(out, "| 13/15 (p 0.0074), median 1.10 |") || !strings.Contains(out, "| 727 | 0.73 (15/15 below, p 6.1e-05) |") {
		t.Errorf("a table of rounds:\n%s", out)
	}
}

// TestTableTwoBuilds: with gitedge-base in the run, a line under the
// table compares the two builds round by round (cycle by cycle): the
// rate above and the CPU per request below, each with its sign test.
func TestTableTwoBuilds(t *testing.T) {
	var rs []result
	for c := 1; c <= 10; c++ {
		cpu := 50.0 // the new build: 500 µs a request, the base 550
		if c > 8 {
			cpu = 60 // 600 µs in two cycles
		}
		rs = append(rs,
			result{Scenario: "tls-close", Proxy: "haproxy", Round: c, RPS: 1000, ProxyCPU: 50, SliceSecs: 2},
			result{Scenario: "tls-close", Proxy: "gitedge", Round: c, RPS: 1010, ProxyCPU: cpu * 1.01, SliceSecs: 2},
			result{Scenario: "tls-close", Proxy: "gitedge-base", Round: c, RPS: 1000, ProxyCPU: 55, SliceSecs: 2})
	}
	out := table(rs)
	want := "gitedge against gitedge-base, cycle by cycle: req/s above in 10/10 (p 0.002), median ratio 1.010; CPU per request below in 8/10 (p 0.11), median ratio 0.909."
	if !strings.Contains(out, want) {
		t.Errorf("the table lacks %q:\n%s", want, out)
	}
	if out := table(rs[:0:0]); strings.Contains(out, "gitedge-base") {
		t.Errorf("an empty run mentions gitedge-base:\n%s", out)
	}
	var without []result
	for _, r := range rs {
		if r.Proxy != "gitedge-base" {
			without = append(without, r)
		}
	}
	if out := table(without); strings.Contains(out, "against gitedge-base") {
		t.Errorf("a run without gitedge-base compares with it:\n%s", out)
	}
}

// TestErrorMark: a row whose runs had errors has its rate marked, and a
// line under the table says how many; a clean row has neither.
func TestErrorMark(t *testing.T) {
	rs := []result{
		{Scenario: "ka", Proxy: "haproxy", Round: 1, RPS: 100, Requests: 600},
		{Scenario: "ka", Proxy: "haproxy", Round: 2, RPS: 110, Requests: 660},
		{Scenario: "ka", Proxy: "nginx", Round: 1, RPS: 120, Requests: 720, Non2xx: 5},
		{Scenario: "ka", Proxy: "nginx", Round: 2, RPS: 120, Requests: 720, Errors: 2},
		{Scenario: "reload", Proxy: "haproxy", Round: 1, RPS: 90, Requests: 900, Errors: 7, Reloads: 10, FinalOK: true},
		{Scenario: "reload", Proxy: "gitedge", Round: 1, RPS: 95, Requests: 950, Reloads: 10, FinalOK: true},
	}
	out := table(rs)
	for _, want := range []string{
		"| nginx | 2 | 120 [120–120] † |",
		"† nginx: the rate includes 5 error answers (non-2xx) and 2 socket errors, in 2 of 2 runs.",
		"| haproxy | 1 | 90.0 † |",
		"† haproxy: the rate includes 0 error answers (non-2xx) and 7 socket errors, in 1 of 1 runs.",
		"| gitedge | 1 | 95.0 |",
		"| haproxy | 2 | 105 [100–110] |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "†"); n != 4 {
		t.Errorf("%d marks, want 4 (two rates, two notes):\n%s", n, out)
	}
}
