package gitsource

import (
	"github.com/gitedge/gitedge/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, shared with tests and dashboards.
const (
	MetricRefAdvertisements = "gitedge_gitsource_ref_advertisements_total"
	MetricFetches           = "gitedge_gitsource_fetches_total"
	MetricFetchSkipped      = "gitedge_gitsource_fetch_skipped_total"
	MetricFetchDuration     = "gitedge_gitsource_fetch_duration_seconds"
	MetricReclones          = "gitedge_gitsource_reclones_total"
	MetricRevisions         = "gitedge_gitsource_revisions_total"
	MetricErrors            = "gitedge_gitsource_errors_total"
	MetricTriggers          = "gitedge_gitsource_triggers_total"
	MetricTriggersCoalesced = "gitedge_gitsource_triggers_coalesced_total"
	MetricWebhookRequests   = "gitedge_gitsource_webhook_requests_total"
	MetricWebhookRefused    = "gitedge_gitsource_webhook_refused_total"
	MetricWebhookBodies     = "gitedge_gitsource_webhook_bodies_in_flight"
	MetricRelaysReceived    = "gitedge_gitsource_relays_received_total"
)

type sourceMetrics struct {
	refAds    *prometheus.CounterVec // result: ok|error
	fetches   *prometheus.CounterVec // result: ok|error|uptodate
	skipped   prometheus.Counter
	fetchTime prometheus.Histogram
	reclones  prometheus.Counter
	revisions prometheus.Counter
	errors    *prometheus.CounterVec // step, reason
}

func newSourceMetrics(reg prometheus.Registerer) *sourceMetrics {
	return &sourceMetrics{
		refAds: promreg.Register("gitsource", reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRefAdvertisements, Help: "Ref listings of the remote (one ref advertisement each), by result.",
		}, []string{"result"})),
		fetches: promreg.Register("gitsource", reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricFetches, Help: "Fetches (pack negotiations) from the remote, by result.",
		}, []string{"result"})),
		skipped: promreg.Register("gitsource", reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricFetchSkipped, Help: "Looks that found the head unchanged and fetched nothing.",
		})),
		fetchTime: promreg.Register("gitsource", reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: MetricFetchDuration, Help: "Duration of fetches from the remote.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120},
		})),
		reclones: promreg.Register("gitsource", reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricReclones, Help: "Times the local cache was thrown away and fetched again.",
		})),
		revisions: promreg.Register("gitsource", reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: MetricRevisions, Help: "Revisions handed over to the loader.",
		})),
		errors: promreg.Register("gitsource", reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricErrors, Help: "Failed looks, by step and reason.",
		}, []string{"step", "reason"})),
	}
}
