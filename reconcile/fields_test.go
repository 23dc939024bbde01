package reconcile

import (
	"slices"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/internal/testkit"
)

// Equality and field tables that cannot go stale: every field of the
// types a plan lists, or an Equal decides a re-apply on, is changed in
// turn, and the change must show. A field added to a type and forgotten
// in planned fields or in Equal fails here.

// everyFieldShows checks that a change of every field of item, but those
// in skip (with the reason), changes what fields lists.
func everyFieldShows[T any](t *testing.T, kind string, item T, fields func(T) []kv, skip map[string]string) {
	t.Helper()
	base := fields(item)
	for _, m := range testkit.Mutations(item) {
		if _, ok := skip[m.Path]; ok {
			continue
		}
		if slices.Equal(fields(m.Value.(T)), base) {
			t.Errorf("%s: a change of %s does not show in the plan: add it to the %s's fields", kind, m.Path, kind)
		}
	}
}

func TestPlanShowsEveryField(t *testing.T) {
	d, err := LoadDir("../examples/homelab")
	if err != nil {
		t.Fatal(err)
	}
	key := map[string]string{"Name": "the item's name is its key: a rename is a remove and an add"}
	everyFieldShows(t, "Node", d.Edge.Nodes[0], nodeFields, key)
	everyFieldShows(t, "Listener", d.Dataplane.Listeners[0], listenerFields, key)
	everyFieldShows(t, "Route", d.Dataplane.Routes[0], routeFields, key)
	b := d.Dataplane.Backends[0]
	b.HealthCheck = dataplane.HealthCheck{Type: dataplane.CheckHTTP, Path: "/healthz", Interval: 2e9, Timeout: 1e9, Rise: 2, Fall: 3}
	everyFieldShows(t, "Backend", b, backendFields, key)
	everyFieldShows(t, "VRRPInstance", d.Edge.Failover[0], instanceFields, map[string]string{
		"Name":          key["Name"],
		"Priority":      "resolved per node: the repository form keeps Priorities",
		"UnicastPeers":  "resolved per node from spec.nodes",
		"UnicastSource": "resolved per node from spec.nodes",
	})
	vm := d.Infra.VMs[0]
	vm.HA = &infra.HA{Group: "main", State: "started"}
	everyFieldShows(t, "VirtualMachine", vm, vmFields, key)
	everyFieldShows(t, "Infra", infraItem{Edge: "e", Leader: Leader{Node: "lb-0"}}, infraFields, map[string]string{"Edge": key["Name"]})
}

// TestEqualSeesEveryField: the loop skips a subsystem whose config Equal
// says is unchanged, so an Equal that forgets a field skips a reload.
func TestEqualSeesEveryField(t *testing.T) {
	d, err := LoadDir("../examples/homelab")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range testkit.Mutations(d.Dataplane) {
		if d.Dataplane.Equal(m.Value.(dataplane.Config)) {
			t.Errorf("dataplane.Config.Equal misses a change of %s", m.Path)
		}
	}
	fc, err := d.FailoverFor("lb-0")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range testkit.Mutations(fc) {
		if fc.Equal(m.Value.(failover.Config)) {
			t.Errorf("failover.Config.Equal misses a change of %s", m.Path)
		}
	}
}

// TestPlanShowsAPasswordChange: a VRRP password replaced by another shows
// in the plan (it changes what the node sends), never its value.
func TestPlanShowsAPasswordChange(t *testing.T) {
	d, err := LoadDir("../examples/homelab")
	if err != nil {
		t.Fatal(err)
	}
	a, b := *d, *d
	a.Edge.Failover = slices.Clone(d.Edge.Failover)
	b.Edge.Failover = slices.Clone(d.Edge.Failover)
	a.Edge.Failover[0].AuthPass, b.Edge.Failover[0].AuthPass = "s3cret-a", "s3cret-b"
	var out strings.Builder
	if err := Diff(&a, &b).WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "auth.password: (set) → (changed)") || strings.Contains(out.String(), "s3cret") {
		t.Errorf("plan:\n%s", out.String())
	}
}
