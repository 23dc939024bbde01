package gitsource

import (
	"time"

	"github.com/gitedge/gitedge/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Queue is the trigger queue: one slot, and a new trigger replaces a
// pending one. A burst of any size therefore leaves at most one look
// waiting behind the one running. Poke never blocks; it is safe for
// concurrent use.
type Queue struct {
	ch        chan Trigger
	triggers  *prometheus.CounterVec
	coalesced prometheus.Counter
}

// NewQueue returns an empty queue; reg may be nil.
func NewQueue(reg prometheus.Registerer) *Queue {
	return &Queue{
		ch: make(chan Trigger, 1),
		triggers: promreg.Register("gitsource", reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricTriggers, Help: "Triggers received, by kind.",
		}, []string{"kind"})),
		coalesced: promreg.Register("gitsource", reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricTriggersCoalesced, Help: "Triggers that replaced a pending one (bursts coalesced).",
		})),
	}
}

// Poke enqueues t, replacing any trigger still pending (latest wins).
func (q *Queue) Poke(t Trigger) {
	if t.At.IsZero() {
		t.At = time.Now()
	}
	q.triggers.WithLabelValues(string(t.Kind)).Inc()
	for {
		select {
		case q.ch <- t:
			return
		default:
		}
		select {
		case <-q.ch:
			q.coalesced.Inc()
		default:
		}
	}
}

// C is the channel a consumer receives pending triggers from.
func (q *Queue) C() <-chan Trigger { return q.ch }
