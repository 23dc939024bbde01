package main

import "testing"

func TestAheadOfBest(t *testing.T) {
	rps := func(r result) float64 { return r.RPS }
	rounds := func(proxy string, rates ...float64) []result {
		var rs []result
		for i, x := range rates {
			if x >= 0 { // a negative rate: the round did not complete
				rs = append(rs, result{Proxy: proxy, Round: i + 1, RPS: x})
			}
		}
		return rs
	}
	for _, tc := range []struct {
		name                  string
		proxy, haproxy, nginx []result
		want                  string
	}{
		{"ahead in every round", rounds("g", 12, 22, 32), rounds("haproxy", 10, 20, 30), rounds("nginx", 11, 21, 31), "3/3"},
		// The median (22) beats both medians (21): one round's lead does
		// not make the others.
		{"ahead of the medians, not round by round", rounds("g", 9, 22, 40), rounds("haproxy", 10, 20, 30), rounds("nginx", 11, 21, 41), "1/3"},
		{"equal counts as at the best", rounds("g", 11, 1), rounds("haproxy", 10, 20), rounds("nginx", 11, 2), "1/2"},
		{"a round one peer missed has the other as its best", rounds("g", 12, 20, 32), rounds("haproxy", 10, -1, 30), rounds("nginx", 11, 21, -1), "2/3"},
		{"rounds both peers missed are left out", rounds("g", 12, 22, 32), rounds("haproxy", 10, -1, 30), rounds("nginx", 11, -1, 31), "2/2"},
		{"no nginx in the run: HAProxy is the best", rounds("g", 12, 19), rounds("haproxy", 10, 20), nil, "1/2"},
		{"HAProxy against nginx alone", rounds("haproxy", 10, 20), rounds("haproxy", 10, 20), rounds("nginx", 11, 19), "1/2"},
		{"no round in common", rounds("g", 12), rounds("haproxy", -1), rounds("nginx", -1, 11), "–"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := aheadOfBest(tc.proxy, tc.haproxy, tc.nginx, rps); got != tc.want {
				t.Errorf("aheadOfBest = %q, want %q", got, tc.want)
			}
		})
	}
}
