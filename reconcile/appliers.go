package reconcile

import (
	"context"

	"github.com/gitedge/gitedge/bgp"
	"github.com/gitedge/gitedge/dataplane"
	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/infra"
)

// The subsystems as the loop sees them, declared here where they are
// consumed and satisfied directly by the subsystems' own types (the guards
// below). Every Apply shares one
// contract: it may be called any number of times with the same config and
// must cope; it diffs against what it last applied and what it observes;
// it tries every item, even after one failed, and returns the failures
// joined. An error says by its kind what the loop does next: one with a
// Transient() bool method answering false (or a validation Errors) is
// terminal and waits for a new commit; any other error is retried with
// backoff (IsTransient).

// DataplaneApplier applies the listeners, routes and backends.
type DataplaneApplier interface {
	Apply(ctx context.Context, cfg dataplane.Config) error
}

// FailoverApplier applies this node's VRRP instances (priorities and
// peers already resolved for the node).
type FailoverApplier interface {
	Apply(ctx context.Context, cfg failover.Config) error
}

// InfraApplier observes and plans the VMs on every node, and writes only
// while leads answers true. leads is asked before every write, from
// several goroutines: a node that loses mastership mid-pass stops writing.
type InfraApplier interface {
	Apply(ctx context.Context, cfg infra.Config, leads func() bool) (infra.Result, error)
}

// BGPApplier applies this node's BGP announcements (router ID and MEDs
// already resolved for the node); the zero Config means no bgp section.
type BGPApplier interface {
	Apply(ctx context.Context, cfg bgp.Config) error
}

// Interface guards: the subsystems satisfy the loop's interfaces as they
// are, with no adapter.
var (
	_ DataplaneApplier = (*dataplane.Proxy)(nil)
	_ FailoverApplier  = (*failover.Manager)(nil)
	_ InfraApplier     = (*infra.Reconciler)(nil)
	_ BGPApplier       = (*bgp.Speaker)(nil)
)

// Leadership decides whether this node applies infra changes: the one
// place that reads the Edge's infra.leader against this node (one writer,
// guarantee 4 of the docs). Its zero value leads when the Edge names no
// leader or names this node.
type Leadership struct {
	// Master reports whether this node is the master of a VRRP instance
	// now; it must be fast and safe for concurrent use. nil: never (no
	// failover runs in this process).
	Master func(instance string) bool
	// Always leads whatever the Edge says (`gitedge reconcile --once
	// --lead`, where no VRRP runs to ask).
	Always bool
}

// Leads answers whether node applies infra changes now, for the leader the
// Edge names.
func (s Leadership) Leads(node string, ld Leader) bool {
	switch {
	case s.Always:
		return true
	case ld.VRRP != "":
		return s.Master != nil && s.Master(ld.VRRP)
	case ld.Node != "":
		return ld.Node == node
	}
	return true // no leader named: a single node leads itself
}
