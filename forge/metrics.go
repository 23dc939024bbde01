package forge

import (
	"github.com/gitedge/gitedge/internal/promreg"
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
		statuses: promreg.Register("forge", reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricStatuses, Help: "Commit statuses for the forge, by forge and result.",
		}, []string{"forge", "result"})),
		queue: promreg.Register("forge", reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricQueueLength, Help: "Commits whose status waits to be posted to the forge.",
		})),
	}
}
