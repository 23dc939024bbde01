package main

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestReloadWant: after each reload d.test must reach what the new
// routes say: route a's servers with routes b (which add d.test to it),
// the default backend with routes a; the reloads alternate b, a, b, …
// so each is a change a proxy that never reloads would fail.
func TestReloadWant(t *testing.T) {
	for _, tc := range []struct {
		v    string
		tls  bool
		want []string
	}{
		{"b", false, []string{"a1", "a2"}},
		{"a", false, []string{"def1"}},
		{"b", true, []string{"ta1", "ta2"}},
		{"a", true, []string{"tdef1"}},
	} {
		if got := reloadWant(tc.v, tc.tls); !slices.Equal(got, tc.want) {
			t.Errorf("reloadWant(%s, tls %v) = %v, want %v", tc.v, tc.tls, got, tc.want)
		}
	}
	var seq []string
	for i := range 4 {
		seq = append(seq, reloadVariant(i))
	}
	if !slices.Equal(seq, []string{"b", "a", "b", "a"}) {
		t.Errorf("reload variants %v, want b a b a", seq)
	}
	// The routes each variant writes say so: d.test is in route a with
	// routes b only.
	for _, v := range []string{"a", "b"} {
		dir := t.TempDir()
		if err := writeRoutes(dir, defaultTopology(), v); err != nil {
			t.Fatal(err)
		}
		cfg, err := (&runner{}).routes(dir, v, defaultTopology())
		if err != nil {
			t.Fatal(err)
		}
		inA := false
		for _, r := range cfg.Routes {
			if r.HTTPBackend == "be_a" && slices.Contains(r.Hosts, "d.test") {
				inA = true
			}
		}
		if inA != (v == "b") {
			t.Errorf("routes %s: d.test in route a: %v", v, inA)
		}
	}
}

// TestWaitRouted: a change seen within the bound passes, one that never
// shows (a proxy still on the old routes, or not answering) fails with
// what it answered, after about the bound.
func TestWaitRouted(t *testing.T) {
	seq := func(answers ...string) func() (string, error) {
		i := 0
		return func() (string, error) {
			a := answers[min(i, len(answers)-1)]
			i++
			if a == "!" {
				return "", errors.New("connection refused")
			}
			return a, nil
		}
	}
	for _, tc := range []struct {
		name    string
		get     func() (string, error)
		want    []string
		wantErr string
	}{
		{"in force at once", seq("a2"), []string{"a1", "a2"}, ""},
		{"in force after the old worker's answers", seq("def1", "def1", "!", "a1"), []string{"a1", "a2"}, ""},
		{"never in force", seq("def1"), []string{"a1", "a2"}, `d.test reaches "def1"`},
		{"never answers", seq("!"), []string{"def1"}, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := waitRouted(tc.get, tc.want, 100*time.Millisecond, 5*time.Millisecond)
			took := time.Since(start)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("err %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("err %v, want one saying %q", err, tc.wantErr)
			case tc.wantErr != "" && took < 100*time.Millisecond:
				t.Errorf("gave up after %s, before the bound", took)
			case tc.wantErr == "" && took > time.Second:
				t.Errorf("took %s", took)
			}
		})
	}
}
