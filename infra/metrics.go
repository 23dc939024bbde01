package infra

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, shared with tests.
const (
	MetricPasses        = "gitedge_infra_passes_total"
	MetricPassDuration  = "gitedge_infra_pass_duration_seconds"
	MetricActions       = "gitedge_infra_actions_total"
	MetricErrors        = "gitedge_infra_errors_total"
	MetricManagedVMs    = "gitedge_infra_managed_vms"
	MetricConflicts     = "gitedge_infra_conflicts"
	MetricDrift         = "gitedge_infra_drift_fields_total"
	MetricPendingReboot = "gitedge_infra_pending_reboot_vms"
	MetricLastSuccess   = "gitedge_infra_last_success_timestamp_seconds"
)

type metrics struct {
	passes      *prometheus.CounterVec
	duration    prometheus.Histogram
	actions     *prometheus.CounterVec
	errors      *prometheus.CounterVec
	managed     prometheus.Gauge
	conflicts   prometheus.Gauge
	drift       prometheus.Counter
	pending     prometheus.Gauge
	lastSuccess prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		passes:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricPasses, Help: "Infra reconcile passes by result (ok, error, planned: not the leader)."}, []string{"result"}),
		duration:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricPassDuration, Help: "Duration of infra passes.", Buckets: prometheus.ExponentialBuckets(0.05, 2, 12)}),
		actions:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricActions, Help: "VM actions by operation and result."}, []string{"op", "result"}),
		errors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricErrors, Help: "Infra errors by kind and reason."}, []string{"kind", "reason"}),
		managed:     prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricManagedVMs, Help: "VMs tagged gitedge seen in the last pass."}),
		conflicts:   prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricConflicts, Help: "Declared VMs blocked by a VM gitedge does not own."}),
		drift:       prometheus.NewCounter(prometheus.CounterOpts{Name: MetricDrift, Help: "Config keys found changed by hand and set back."}),
		pending:     prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricPendingReboot, Help: "Running managed VMs with changes waiting for a restart."}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLastSuccess, Help: "Unix time of the last infra pass without errors."}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.passes, m.duration, m.actions, m.errors, m.managed, m.conflicts, m.drift, m.pending, m.lastSuccess} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) setPlan(p Plan, obs *Observed) {
	n := 0
	for _, o := range obs.VMs {
		if o.Config != nil && hasTag(splitTags(o.Config.Values["tags"]), Tag) {
			n++
		}
	}
	m.managed.Set(float64(n))
	m.conflicts.Set(float64(len(p.Conflicts)))
	m.pending.Set(float64(len(p.PendingReboot)))
}

func (m *metrics) action(op Op, err error) {
	res := "ok"
	if err != nil {
		res = "error"
	}
	m.actions.WithLabelValues(string(op), res).Inc()
}

func (m *metrics) observePass(res Result, err error) {
	m.duration.Observe(res.Duration.Seconds())
	if res.Leader {
		m.drift.Add(float64(len(res.Plan.Drift())))
	}
	walk(err, func(e *Error) { m.errors.WithLabelValues(e.Kind.String(), e.Reason).Inc() })
	if err != nil && !hasInfraError(err) {
		m.errors.WithLabelValues(classifyKind(err).String(), reasonOf(err)).Inc()
	}
	switch {
	case err != nil:
		m.passes.WithLabelValues("error").Inc()
	case !res.Leader:
		m.passes.WithLabelValues("planned").Inc()
		m.lastSuccess.SetToCurrentTime()
	default:
		m.passes.WithLabelValues("ok").Inc()
		m.lastSuccess.SetToCurrentTime()
	}
}
