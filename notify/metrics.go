package notify

import (
	"github.com/gitedge/gitedge/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, shared with tests and dashboards.
const (
	// MetricEvents counts events by sink kind and result.
	MetricEvents = "gitedge_notify_events_total"
	// MetricQueueLength is the number of deliveries waiting, by sink kind.
	MetricQueueLength = "gitedge_notify_queue_length"
)

// Results, the values of MetricEvents' result label.
const (
	ResultSent       = "sent"       // the receiver accepted it (Alertmanager resends included)
	ResultFailed     = "failed"     // given up: refused (4xx) or out of attempts
	ResultDropped    = "dropped"    // evicted from a full queue
	ResultSuppressed = "suppressed" // a repeat inside the rate-limit window
)

type metrics struct {
	events *prometheus.CounterVec
	queue  *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	return &metrics{
		events: promreg.Register("notify", reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEvents, Help: "Notification events by sink kind and result.",
		}, []string{"sink", "result"})),
		queue: promreg.Register("notify", reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricQueueLength, Help: "Notification deliveries waiting, by sink kind.",
		}, []string{"sink"})),
	}
}
