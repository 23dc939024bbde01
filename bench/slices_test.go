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
