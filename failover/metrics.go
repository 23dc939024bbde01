package failover

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, shared with tests and dashboards.
const (
	MetricState         = "gitedge_vrrp_state"
	MetricTransitions   = "gitedge_vrrp_transitions_total"
	MetricAdvertsSent   = "gitedge_vrrp_adverts_sent_total"
	MetricAdvertsRecv   = "gitedge_vrrp_adverts_received_total"
	MetricDrops         = "gitedge_vrrp_drops_total"
	MetricAnnouncements = "gitedge_vrrp_announcements_total"
)

// Metrics are the failover Prometheus series, registered into a registry
// the caller owns.
type Metrics struct {
	state         *prometheus.GaugeVec
	transitions   *prometheus.CounterVec
	sent, recv    *prometheus.CounterVec
	drops         *prometheus.CounterVec
	announcements *prometheus.CounterVec
}

// NewMetrics creates the series and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricState,
			Help: "VRRP state per instance: 0 init, 1 backup, 2 master, 3 fault."}, []string{"instance"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricTransitions,
			Help: "VRRP state transitions by instance and new state."}, []string{"instance", "to"}),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAdvertsSent,
			Help: "VRRP advertisements sent."}, []string{"instance"}),
		recv: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAdvertsRecv,
			Help: "VRRP advertisements received and accepted."}, []string{"instance"}),
		drops: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricDrops,
			Help: "Received VRRP packets discarded, by reason."}, []string{"instance", "reason"}),
		announcements: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricAnnouncements,
			Help: "Bursts of gratuitous ARP / unsolicited NA sent."}, []string{"instance"}),
	}
	for _, c := range []prometheus.Collector{m.state, m.transitions, m.sent, m.recv, m.drops, m.announcements} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// instanceMetrics are one instance's series; a nil value records nothing.
type instanceMetrics struct {
	m    *Metrics
	name string
}

func (m *Metrics) forInstance(name string) *instanceMetrics {
	if m == nil {
		return nil
	}
	return &instanceMetrics{m: m, name: name}
}

func (im *instanceMetrics) setState(s State) {
	if im != nil {
		im.m.state.WithLabelValues(im.name).Set(float64(s))
	}
}

func (im *instanceMetrics) transition(to State) {
	if im != nil {
		im.setState(to)
		im.m.transitions.WithLabelValues(im.name, to.String()).Inc()
	}
}

func (im *instanceMetrics) sent() {
	if im != nil {
		im.m.sent.WithLabelValues(im.name).Inc()
	}
}

func (im *instanceMetrics) received() {
	if im != nil {
		im.m.recv.WithLabelValues(im.name).Inc()
	}
}

func (im *instanceMetrics) dropped(reason string) {
	if im != nil {
		im.m.drops.WithLabelValues(im.name, reason).Inc()
	}
}

func (im *instanceMetrics) announced() {
	if im != nil {
		im.m.announcements.WithLabelValues(im.name).Inc()
	}
}

// forget deletes a removed instance's series.
func (im *instanceMetrics) forget() {
	if im == nil {
		return
	}
	l := prometheus.Labels{"instance": im.name}
	im.m.state.DeletePartialMatch(l)
	im.m.transitions.DeletePartialMatch(l)
	im.m.sent.DeletePartialMatch(l)
	im.m.recv.DeletePartialMatch(l)
	im.m.drops.DeletePartialMatch(l)
	im.m.announcements.DeletePartialMatch(l)
}
