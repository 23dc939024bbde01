package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"testing"
)

func TestSignTest(t *testing.T) {
	for _, tc := range []struct {
		k, n int
		want float64
	}{
		{13, 15, 2 * (1 + 15 + 105) / 32768.0}, // Round 17's close: 13 of 15 cycles ahead
		{2, 15, 2 * (1 + 15 + 105) / 32768.0},  // the same count the other way
		{7, 15, 1},                             // level
		{8, 15, 1},
		{0, 5, 2 / 32.0},
		{5, 5, 2 / 32.0},
		{1, 1, 1},
		{0, 0, 1},
	} {
		if got := signTest(tc.k, tc.n); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("signTest(%d, %d) = %g, want %g", tc.k, tc.n, got, tc.want)
		}
	}
}

func TestSlot(t *testing.T) {
	base := defaultTopology()
	for _, tc := range []struct {
		ip      string
		i       int
		want    string
		wantErr string
	}{
		{"127.0.0.2", 0, "127.0.0.2", ""},
		{"127.0.0.2", 4, "127.0.0.6", ""},
		{"127.0.0.2", 9, "", "a server's address"}, // 127.0.0.11 is a1
		{"127.0.0.250", 5, "", "no room"},
		{"::1", 0, "", "IPv4"},
	} {
		t.Run(fmt.Sprintf("%s+%d", tc.ip, tc.i), func(t *testing.T) {
			b := base
			b.ProxyIP = tc.ip
			got, err := b.slot(tc.i)
			switch {
			case tc.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("slot(%d) = %v, %v; want an error with %q", tc.i, got.ProxyIP, err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case got.ProxyIP != tc.want || got.HTTPPort != b.HTTPPort || got.TLSPort != b.TLSPort:
				t.Errorf("slot(%d) = %s:%d/%d, want %s on the same ports", tc.i, got.ProxyIP, got.HTTPPort, got.TLSPort, tc.want)
			}
		})
	}
}

// TestSlicedTable: a sliced run's table says how it was measured and
// judges its count of cycles; a run in rounds does not.
func TestSlicedTable(t *testing.T) {
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
	if strings.Contains(out, "slices") || !strings.Contains(out, "rounds at or above that best") || !strings.Contains(out, "| 13/15 |") ||
		!strings.Contains(out, "| 727 | 0.73 |") {
		t.Errorf("a table of rounds:\n%s", out)
	}
}

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

func TestParseRun(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-slices", "20"}, ""},
		{[]string{"-slices", "20", "-slice", "3s"}, ""},
		{[]string{"-rounds", "5"}, ""},
		{[]string{"-slices", "20", "-rounds", "5"}, "-rounds and -slices both set"},
		{[]string{"-slices", "20", "-slice", "1500ms"}, "whole seconds"},
		{[]string{"-slices", "20", "-slice", "0s"}, "whole seconds"},
		{[]string{"-no-such-flag"}, "not defined"},
	} {
		o, err := parseRun(tc.args)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("parseRun(%q): %v", tc.args, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseRun(%q) = %v, want an error with %q", tc.args, err, tc.wantErr)
		case err == nil && tc.args[0] == "-slices" && o.Slices != 20:
			t.Errorf("parseRun(%q): slices %d", tc.args, o.Slices)
		}
	}
}

func TestRunRefusesAProxyTwice(t *testing.T) {
	o := defaultOptions()
	o.Scenarios, o.Proxies = []string{"ka"}, []string{"haproxy", "gitedge", "gitedge"}
	_, err := run(t.Context(), o, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `"gitedge" named twice`) {
		t.Fatalf("run with gitedge twice: %v", err)
	}
}
