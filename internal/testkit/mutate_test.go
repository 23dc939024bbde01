package testkit

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"
)

type Inner struct {
	Port uint16
	Tags []string
}

type sample struct {
	Name     string
	Count    int
	On       bool
	Wait     time.Duration
	Addr     netip.Addr
	Prefixes []netip.Prefix
	Opt      *Inner
	Items    []Inner
	Weights  map[string]uint8
	Inner    // embedded: its fields are reached as the outer ones
	hidden   string
}

func TestMutations(t *testing.T) {
	orig := sample{Name: "a", Addr: netip.MustParseAddr("192.0.2.1"), Items: []Inner{{Port: 80}}, Weights: map[string]uint8{"x": 1}, hidden: "h"}
	keep := orig
	keep.Items = slices.Clone(orig.Items)
	var paths []string
	for _, m := range Mutations(orig) {
		paths = append(paths, m.Path)
		if reflect.DeepEqual(m.Value, orig) {
			t.Errorf("%s: not changed", m.Path)
		}
		if m.Value.(sample).hidden != "h" {
			t.Errorf("%s: an unexported field was lost", m.Path)
		}
	}
	want := []string{"Name", "Count", "On", "Wait", "Addr", "Prefixes", "Opt", "Opt.Port", "Opt.Tags",
		"Items", "Items[0].Port", "Items[0].Tags", "Weights", "Port", "Tags"}
	if !slices.Equal(paths, want) {
		t.Errorf("paths\n got %q\nwant %q", paths, want)
	}
	if !reflect.DeepEqual(orig.Items, keep.Items) || len(orig.Weights) != 1 {
		t.Error("the original was changed")
	}
}
