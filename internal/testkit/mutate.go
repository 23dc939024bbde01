package testkit

import (
	"encoding"
	"fmt"
	"reflect"
)

// Mutation is a copy of a value with one leaf field changed, and the path
// of that field ("Backends[0].HealthCheck.Interval").
type Mutation struct {
	Path  string
	Value any
}

// Mutations returns, for every exported leaf field reachable in v (a
// struct, or a pointer to one), a deep copy of v with that field changed:
// strings, numbers and booleans get another value, a nil pointer is
// allocated, a slice gets one more element (and, for a slice of structs,
// the fields of its first element are each changed in turn), a map one
// more entry, and a struct with no exported fields (netip.Addr,
// netip.Prefix) another value it parses from text. It is for tests that
// must fail when a field is added that an Equal method, a diff or a field
// table forgets: every field is changed by construction.
func Mutations(v any) []Mutation {
	root := reflect.ValueOf(v)
	var out []Mutation
	var walk func(path string, steps []step, cur reflect.Value)
	walk = func(path string, steps []step, cur reflect.Value) {
		t := cur.Type()
		switch {
		case t.Kind() == reflect.Pointer:
			// nil → allocated is a change; then every field below.
			out = append(out, mutation(root, path, steps, changeLeaf))
			next := cur
			if cur.IsNil() {
				next = reflect.New(t.Elem())
			}
			walk(path, append(steps, step{kind: stepElem}), next.Elem())
		case t.Kind() == reflect.Struct && hasExported(t):
			for i := range t.NumField() {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				p := f.Name
				if path != "" {
					p = path + "." + f.Name
				}
				if f.Anonymous {
					p = path
				}
				walk(p, append(steps, step{kind: stepField, i: i}), cur.Field(i))
			}
		case t.Kind() == reflect.Slice && deref(t.Elem()).Kind() == reflect.Struct && hasExported(deref(t.Elem())):
			out = append(out, mutation(root, path, steps, changeLeaf)) // one element more
			first := reflect.New(t.Elem()).Elem()
			if cur.Len() > 0 {
				first = cur.Index(0)
			}
			walk(path+"[0]", append(steps, step{kind: stepIndex}), first)
		default:
			out = append(out, mutation(root, path, steps, changeLeaf))
		}
	}
	start := root
	if start.Kind() == reflect.Pointer {
		start = start.Elem()
	}
	walk("", nil, start)
	return out
}

type stepKind int

const (
	stepField stepKind = iota
	stepElem           // through a pointer, allocated when nil
	stepIndex          // element 0 of a slice, appended when empty
)

type step struct {
	kind stepKind
	i    int
}

// mutation copies root deeply, follows steps and changes what it reaches.
func mutation(root reflect.Value, path string, steps []step, change func(reflect.Value)) Mutation {
	c := deepCopy(root)
	cur := c
	if cur.Kind() == reflect.Pointer {
		cur = cur.Elem()
	}
	for _, s := range steps {
		switch s.kind {
		case stepField:
			cur = cur.Field(s.i)
		case stepElem:
			if cur.IsNil() {
				cur.Set(reflect.New(cur.Type().Elem()))
			}
			cur = cur.Elem()
		case stepIndex:
			if cur.Len() == 0 {
				cur.Set(reflect.Append(cur, reflect.New(cur.Type().Elem()).Elem()))
			}
			cur = cur.Index(0)
		}
	}
	change(cur)
	return Mutation{Path: path, Value: c.Interface()}
}

// changeLeaf gives v another value of its type.
func changeLeaf(v reflect.Value) {
	if changeByText(v) {
		return
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(v.String() + "-changed")
	case reflect.Bool:
		v.SetBool(!v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(v.Int() + 1)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(v.Uint() + 1)
	case reflect.Float32, reflect.Float64:
		v.SetFloat(v.Float() + 1)
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		} else {
			v.Set(reflect.Zero(v.Type()))
		}
	case reflect.Slice:
		e := reflect.New(v.Type().Elem()).Elem()
		if v.Len() > 0 {
			e.Set(deepCopy(v.Index(v.Len() - 1)))
		}
		changeLeaf(e)
		v.Set(reflect.Append(v, e))
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				changeLeaf(v.Field(i))
				return
			}
		}
		panic(fmt.Sprintf("testkit.Mutations: cannot change a %s", v.Type()))
	case reflect.Map:
		if v.IsNil() {
			v.Set(reflect.MakeMap(v.Type()))
		}
		k := reflect.New(v.Type().Key()).Elem()
		for v.MapIndex(k).IsValid() {
			changeLeaf(k)
		}
		e := reflect.New(v.Type().Elem()).Elem()
		changeLeaf(e)
		v.SetMapIndex(k, e)
	default:
		panic(fmt.Sprintf("testkit.Mutations: cannot change a %s", v.Type()))
	}
}

// textCandidates are values a struct without exported fields may parse
// from: addresses, prefixes and address-ports of the documentation ranges.
var textCandidates = []string{"192.0.2.99", "2001:db8::99", "192.0.2.0/25", "2001:db8::/48", "192.0.2.99:99", "[2001:db8::99]:99"}

// changeByText changes a struct without exported fields through its text
// form; false when v is not such a value.
func changeByText(v reflect.Value) bool {
	if v.Kind() != reflect.Struct || hasExported(v.Type()) {
		return false
	}
	u, ok := v.Addr().Interface().(encoding.TextUnmarshaler)
	if !ok {
		return false
	}
	old := fmt.Sprint(v.Interface())
	for _, c := range textCandidates {
		n := reflect.New(v.Type())
		if n.Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(c)) == nil && fmt.Sprint(n.Elem().Interface()) != old {
			_ = u.UnmarshalText([]byte(c))
			return true
		}
	}
	panic(fmt.Sprintf("testkit.Mutations: no other value for a %s", v.Type()))
}

// deepCopy copies v so that changing the copy never changes v.
func deepCopy(v reflect.Value) reflect.Value {
	c := reflect.New(v.Type()).Elem()
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			p := reflect.New(v.Type().Elem())
			p.Elem().Set(deepCopy(v.Elem()))
			c.Set(p)
		}
	case reflect.Struct:
		c.Set(v)
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				c.Field(i).Set(deepCopy(v.Field(i)))
			}
		}
	case reflect.Slice:
		if !v.IsNil() {
			s := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
			for i := range v.Len() {
				s.Index(i).Set(deepCopy(v.Index(i)))
			}
			c.Set(s)
		}
	case reflect.Map:
		if !v.IsNil() {
			m := reflect.MakeMapWithSize(v.Type(), v.Len())
			for it := v.MapRange(); it.Next(); {
				m.SetMapIndex(it.Key(), deepCopy(it.Value()))
			}
			c.Set(m)
		}
	default:
		c.Set(v)
	}
	return c
}

func hasExported(t reflect.Type) bool {
	for i := range t.NumField() {
		if t.Field(i).IsExported() {
			return true
		}
	}
	return false
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}
