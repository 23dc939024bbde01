package bgp

import (
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, shared with tests and dashboards.
const (
	// MetricSessionState is each session's state: 0 idle, 1 connect,
	// 2 active, 3 openSent, 4 openConfirm, 5 established.
	MetricSessionState = "gitedge_bgp_session_state"
	// MetricSessionTransitions counts session state changes by new state.
	MetricSessionTransitions = "gitedge_bgp_session_transitions_total"
	// MetricPrefixAnnounced is 1 while a configured prefix is announced.
	MetricPrefixAnnounced = "gitedge_bgp_prefix_announced"
	// MetricRouteUpdates counts announcements and withdrawals by prefix.
	MetricRouteUpdates = "gitedge_bgp_route_updates_total"
)

// metrics are the bgp Prometheus series; a nil *metrics records nothing.
type metrics struct {
	// known are the prefixes with a series, touched only by the
	// Speaker's goroutine.
	known       map[string]bool
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	prefixes    *prometheus.GaugeVec
	updates     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		known: map[string]bool{},
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricSessionState,
			Help: "BGP session state per peer: 0 idle, 1 connect, 2 active, 3 openSent, 4 openConfirm, 5 established."}, []string{"peer"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricSessionTransitions,
			Help: "BGP session state changes by peer and new state."}, []string{"peer", "to"}),
		prefixes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricPrefixAnnounced,
			Help: "1 while this node announces the prefix, 0 while it is withdrawn."}, []string{"prefix"}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRouteUpdates,
			Help: "Routes announced and withdrawn by this node, by prefix and action."}, []string{"prefix", "action"}),
	}
	for _, c := range []prometheus.Collector{m.state, m.transitions, m.prefixes, m.updates} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *metrics) sessionState(peer netip.Addr, s SessionState) {
	if m == nil {
		return
	}
	m.state.WithLabelValues(peer.String()).Set(float64(s))
	m.transitions.WithLabelValues(peer.String(), s.String()).Inc()
}

// initPeer starts a new session's series.
func (m *metrics) initPeer(peer netip.Addr) {
	if m != nil {
		m.state.WithLabelValues(peer.String()).Set(float64(StateIdle))
	}
}

func (m *metrics) forgetPeer(peer netip.Addr) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"peer": peer.String()}
	m.state.DeletePartialMatch(l)
	m.transitions.DeletePartialMatch(l)
}

func (m *metrics) routeUpdate(p netip.Prefix, action string) {
	if m == nil {
		return
	}
	m.updates.WithLabelValues(p.String(), action).Inc()
}

// announced sets the gauge of every configured prefix and drops the
// series of prefixes no longer configured.
func (m *metrics) announced(configured []Route, now map[netip.Prefix]Route) {
	if m == nil {
		return
	}
	keep := map[string]bool{}
	for _, r := range configured {
		v := 0.0
		if _, ok := now[r.Prefix]; ok {
			v = 1
		}
		keep[r.Prefix.String()] = true
		m.prefixes.WithLabelValues(r.Prefix.String()).Set(v)
	}
	for p := range m.known {
		if !keep[p] {
			m.prefixes.DeleteLabelValues(p)
			m.updates.DeletePartialMatch(prometheus.Labels{"prefix": p})
		}
	}
	m.known = keep
}
