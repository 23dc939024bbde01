package notify

import (
	"errors"

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
		events: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricEvents, Help: "Notification events by sink kind and result.",
		}, []string{"sink", "result"})),
		queue: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: MetricQueueLength, Help: "Notification deliveries waiting, by sink kind.",
		}, []string{"sink"})),
	}
}

// register registers c, or returns the collector already registered under
// the same description.
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
		panic("notify: registering metrics: " + err.Error())
	}
	return c
}
