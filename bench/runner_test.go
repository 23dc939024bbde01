package main

import (
	"slices"
	"testing"
)

func TestRoundOrder(t *testing.T) {
	for _, tc := range []struct {
		proxies []string
		round   int
		want    []string
	}{
		{[]string{"haproxy", "nginx", "gitedge"}, 1, []string{"haproxy", "nginx", "gitedge"}},
		{[]string{"haproxy", "nginx", "gitedge"}, 2, []string{"nginx", "gitedge", "haproxy"}},
		{[]string{"haproxy", "nginx", "gitedge"}, 3, []string{"gitedge", "haproxy", "nginx"}},
		{[]string{"haproxy", "nginx", "gitedge"}, 4, []string{"haproxy", "nginx", "gitedge"}},
		{[]string{"gitedge"}, 5, []string{"gitedge"}},
		{[]string{"haproxy", "nginx", "gitedge"}, 0, []string{"gitedge", "haproxy", "nginx"}}, // the round before the first
		{nil, 2, nil},
	} {
		got := roundOrder(tc.proxies, tc.round)
		if !slices.Equal(got, tc.want) {
			t.Errorf("roundOrder(%v, %d) = %v, want %v", tc.proxies, tc.round, got, tc.want)
		}
	}
	// The list it was given stays as it was: the next round turns it again.
	p := []string{"a", "b", "c"}
	roundOrder(p, 2)
	if !slices.Equal(p, []string{"a", "b", "c"}) {
		t.Errorf("roundOrder changed its argument: %v", p)
	}
}

// TestDefaultRounds: without -rounds a run has one round per proxy, so
// each proxy runs in each place once; an explicit -rounds stays.
func TestDefaultRounds(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 4},
		{[]string{"-proxies", "haproxy,gitedge"}, 2},
		{[]string{"-proxies", "haproxy,nginx,gitedge", "-rounds", "5"}, 5},
		{[]string{"-rounds", "3"}, 3},
	} {
		o, err := parseRun(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if o.Rounds != tc.want {
			t.Errorf("parseRun(%q): %d rounds, want %d", tc.args, o.Rounds, tc.want)
		}
	}
}
