package gitsource

import (
	"context"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/robfig/cron/v3"
)

// Poller pokes a queue on a cron schedule, offset per node so that nodes
// sharing a schedule ("*/5 * * * *") do not all hit the remote at the same
// second.
type Poller struct {
	spec   string
	sched  cron.Schedule
	offset time.Duration
	notify func(Trigger)
}

// maxPollJitter caps the per-node offset.
const maxPollJitter = 30 * time.Second

// NewPoller parses spec (robfig/cron standard fields or a descriptor such
// as "@every 1m") and derives this node's offset from its name: a stable
// fraction of a tenth of the interval, at most 30s.
func NewPoller(spec, node string, notify func(Trigger)) (*Poller, error) {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("source.poll: %q: %w", spec, err)
	}
	p := &Poller{spec: spec, sched: sched, notify: notify}
	now := time.Now()
	first := sched.Next(now)
	interval := sched.Next(first).Sub(first)
	if span := min(interval/10, maxPollJitter); span > 0 && node != "" {
		h := fnv.New64a()
		h.Write([]byte(node))
		p.offset = time.Duration(h.Sum64() % uint64(span))
	}
	return p, nil
}

// Offset is this node's delay after each scheduled time.
func (p *Poller) Offset() time.Duration { return p.offset }

// Run pokes at every scheduled time plus the offset until ctx ends; it
// returns nil on cancellation.
func (p *Poller) Run(ctx context.Context) error {
	nominal := time.Now()
	for {
		nominal = p.sched.Next(nominal)
		t := time.NewTimer(time.Until(nominal.Add(p.offset)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case now := <-t.C:
			p.notify(Trigger{Kind: TriggerPoll, Detail: p.spec, At: now})
		}
		// A sleeping machine can skip scheduled times: do not fire for
		// every one missed.
		if now := time.Now(); nominal.Before(now.Add(-p.offset)) {
			nominal = now.Add(-p.offset)
		}
	}
}
