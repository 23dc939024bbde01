package forge

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, shared with tests and dashboards.
const (
	// MetricStatuses counts commit statuses by forge and result.
	MetricStatuses = "gitedge_forge_statuses_total"
	// MetricQueueLength is the number of commits whose status waits to be
	// posted.
	MetricQueueLength = "gitedge_forge_status_queue_length"
)

// Results, the values of MetricStatuses' result label.
const (
	ResultPosted    = "posted"    // the forge accepted the status
	ResultNoop      = "noop"      // the forge already had it (GitLab's repeated running)
	ResultRetry     = "retry"     // one attempt failed and will be retried (5xx, 429, timeout, network)
	ResultFailed    = "failed"    // given up: refused (4xx) or retried past GiveUpAfter
	ResultDropped   = "dropped"   // evicted from a full queue before it was posted
	ResultCoalesced = "coalesced" // replaced by a newer state of the same commit before it was posted
)

type metrics struct {
	statuses *prometheus.CounterVec
	queue    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		statuses: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricStatuses, Help: "Commit statuses for the forge, by forge and result.",
		}, []string{"forge", "result"})),
		queue: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricQueueLength, Help: "Commits whose status waits to be posted to the forge.",
		})),
	}
}

// register registers c, or returns the collector already registered under
// the same description, so two Reporters can share one registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic("forge: registering metrics: " + err.Error())
	}
	return c
}
