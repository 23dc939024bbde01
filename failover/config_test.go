package failover

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"
)

// fullInstance sets every field to a non-zero value.
func fullInstance() Instance {
	return Instance{Name: "VI_1", Interface: "eth0", VRID: 33, Version: 2, AdvertInterval: time.Second,
		Priority: 100, Preempt: true, PreemptDelay: time.Second, AuthPass: "pw",
		UnicastPeers: []netip.Addr{addr2}, UnicastSource: addr1, VIPs: []netip.Prefix{vip},
		TrackProxy: true, TrackInterfaces: []string{"eth1"},
		GARP: GARP{Repeat: 5, Delay: 5 * time.Second, Refresh: time.Minute}}
}

// leafPaths lists every field of t, descending into plain structs (not
// netip's), as index paths.
func leafPaths(t reflect.Type, prefix []int) [][]int {
	var out [][]int
	for i := range t.NumField() {
		p := append(slices.Clone(prefix), i)
		ft := t.Field(i).Type
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[netip.Addr]() && ft != reflect.TypeFor[netip.Prefix]() {
			out = append(out, leafPaths(ft, p)...)
			continue
		}
		out = append(out, p)
	}
	return out
}

// mutate sets v to another value of its type. A type it does not know
// fails the test: a field of a new type needs a line here.
func mutate(t *testing.T, name string, v reflect.Value) {
	t.Helper()
	switch v.Type() {
	case reflect.TypeFor[netip.Addr]():
		v.Set(reflect.ValueOf(netip.MustParseAddr("198.51.100.99")))
		return
	case reflect.TypeFor[netip.Prefix]():
		v.Set(reflect.ValueOf(netip.MustParsePrefix("198.51.100.99/24")))
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "x")
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		v.SetUint(v.Uint() + 1)
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Slice:
		// A copy, so the original's backing array stays as it was.
		c := reflect.AppendSlice(reflect.MakeSlice(v.Type(), 0, v.Len()), v)
		mutate(t, name+"[0]", c.Index(0))
		v.Set(c)
	default:
		t.Fatalf("%s: mutate does not know %v", name, v.Type())
	}
}

// Equal sees a change to any field, however deep, and names the field;
// a new field is covered without touching Equal.
func TestInstanceEqualSeesEveryField(t *testing.T) {
	base := fullInstance()
	if !base.Equal(fullInstance()) {
		t.Fatal("an instance differs from its copy")
	}
	typ := reflect.TypeFor[Instance]()
	for _, path := range leafPaths(typ, nil) {
		name := typ.Field(path[0]).Name
		changed := fullInstance()
		mutate(t, name, reflect.ValueOf(&changed).Elem().FieldByIndex(path))
		if base.Equal(changed) || changed.Equal(base) {
			t.Errorf("changing %s (path %v) left the instance Equal", name, path)
		}
		if got := changedFields(base, changed); !slices.Equal(got, []string{name}) {
			t.Errorf("changing %s: changed fields %v", name, got)
		}
		if !base.Equal(fullInstance()) {
			t.Fatalf("mutating %s changed the original", name)
		}
		a, b := Config{Instances: []Instance{base}}, Config{Instances: []Instance{changed}}
		if a.Equal(b) {
			t.Errorf("changing %s left the Config Equal", name)
		}
	}
	// Unset lists equal empty ones.
	a, b := fullInstance(), fullInstance()
	a.UnicastPeers, a.TrackInterfaces = nil, nil
	b.UnicastPeers, b.TrackInterfaces = []netip.Addr{}, []string{}
	if !a.Equal(b) {
		t.Error("nil and empty lists differ")
	}
	if (Config{}).Equal(Config{Instances: []Instance{a}}) {
		t.Error("configs of different lengths are Equal")
	}
}

// changeRules classifies every field of Instance, and nothing else.
func TestChangeRulesCoverEveryField(t *testing.T) {
	typ := reflect.TypeFor[Instance]()
	fields := map[string]bool{}
	for i := range typ.NumField() {
		f := typ.Field(i).Name
		fields[f] = true
		if changeRules[f] == nil {
			t.Errorf("Instance.%s has no change rule: say whether a running instance takes it in place or restarts", f)
		}
	}
	for f := range changeRules {
		if !fields[f] {
			t.Errorf("change rule for %s, which Instance does not have", f)
		}
	}
	// A field without a rule restarts: the safe side.
	saved := changeRules["Priority"]
	delete(changeRules, "Priority")
	defer func() { changeRules["Priority"] = saved }()
	a, b := fullInstance(), fullInstance()
	b.Priority++
	if got := restartFields(a, b); !slices.Equal(got, []string{"Priority"}) {
		t.Fatalf("unclassified change: restart fields %v", got)
	}
}
