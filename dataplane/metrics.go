package dataplane

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, shared with tests and dashboards.
const (
	MetricConnections      = "gitedge_dataplane_connections_total"
	MetricActiveConns      = "gitedge_dataplane_connections_active"
	MetricRequests         = "gitedge_dataplane_requests_total"
	MetricListenerErrors   = "gitedge_dataplane_listener_errors_total"
	MetricListenerBytes    = "gitedge_dataplane_listener_bytes_total"
	MetricListenerFull     = "gitedge_dataplane_listener_full_total"
	MetricServerRequests   = "gitedge_dataplane_server_requests_total"
	MetricServerConns      = "gitedge_dataplane_server_connections_total"
	MetricServerActive     = "gitedge_dataplane_server_active"
	MetricServerUp         = "gitedge_dataplane_server_up"
	MetricServerErrors     = "gitedge_dataplane_server_errors_total"
	MetricServerBytes      = "gitedge_dataplane_server_bytes_total"
	MetricBackendQueued    = "gitedge_dataplane_backend_queued"
	MetricBackendErrors    = "gitedge_dataplane_backend_errors_total"
	MetricBackendRetries   = "gitedge_dataplane_backend_retries_total"
	MetricResponseSeconds  = "gitedge_dataplane_response_seconds"
	MetricReloads          = "gitedge_dataplane_reloads_total"
	MetricLastReloadOK     = "gitedge_dataplane_last_reload_successful"
	MetricLastReloadTime   = "gitedge_dataplane_last_reload_success_timestamp_seconds"
	MetricConfigGeneration = "gitedge_dataplane_config_generation"
	MetricLoops            = "gitedge_dataplane_loops_detected_total"
)

// Error kinds, the "kind" label of the error counters.
const (
	errKindBadRequest   = "bad_request"    // 400: malformed or smuggling request
	errKindHeadTimeout  = "head_timeout"   // 408: head not received in requestTimeout
	errKindHeadTooLarge = "head_too_large" // 431
	errKindNotTLS       = "not_tls"        // tls listener: not a TLS ClientHello
	errKindBadHello     = "bad_hello"      // tls listener: malformed ClientHello
	errKindInspect      = "inspect_timeout"
	errKindProxyRefused = "proxy_refused" // acceptProxy: untrusted source or no/bad header
	errKindNoRoute      = "no_route"      // no route and no default backend
	errKindClient       = "client"        // client went away or timed out mid-exchange

	errKindConnect     = "connect"      // server: connect failed
	errKindTimeout     = "timeout"      // server: no response within idleTimeout (504)
	errKindResponse    = "bad_response" // server: malformed or cut response (502)
	errKindNoServer    = "no_server"    // backend: every server down (503)
	errKindQueue       = "queue_timeout"
	errKindQueueFull   = "queue_full"     // backend: maxQueue already waiting (503)
	errKindConnectFail = "connect_failed" // backend: every retry failed (503)
)

// Retry kinds, the "kind" label of the retries counter (HAProxy's wretr
// and wredis, and the resend of a request on a closed pooled connection).
const (
	retryKindRetry      = "retry"      // a connect tried again on the same server
	retryKindRedispatch = "redispatch" // a connect tried again on another server
	retryKindResend     = "resend"     // a request sent again on a new connection
)

var listenerErrKinds = []string{errKindBadRequest, errKindHeadTimeout, errKindHeadTooLarge, errKindNotTLS,
	errKindBadHello, errKindInspect, errKindProxyRefused, errKindNoRoute, errKindClient}

type metrics struct {
	conns        *prometheus.CounterVec
	active       *prometheus.GaugeVec
	requests     *prometheus.CounterVec
	lErrors      *prometheus.CounterVec
	lBytes       *prometheus.CounterVec
	lFull        *prometheus.CounterVec
	sRequests    *prometheus.CounterVec
	sConns       *prometheus.CounterVec
	sActive      *prometheus.GaugeVec
	sUp          *prometheus.GaugeVec
	sErrors      *prometheus.CounterVec
	sBytes       *prometheus.CounterVec
	bQueued      *prometheus.GaugeVec
	bErrors      *prometheus.CounterVec
	bRetries     *prometheus.CounterVec
	respSeconds  *prometheus.HistogramVec
	reloads      *prometheus.CounterVec
	lastReloadOK prometheus.Gauge
	lastReloadAt prometheus.Gauge
	generation   prometheus.Gauge
	loops        *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		conns:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricConnections, Help: "Client connections accepted, per listener."}, []string{"listener"}),
		active:       prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricActiveConns, Help: "Client connections open, per listener."}, []string{"listener"}),
		requests:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricRequests, Help: "HTTP requests answered, per listener and status class; TLS connections routed, class \"tls\"."}, []string{"listener", "class"}),
		lErrors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricListenerErrors, Help: "Client-side errors, per listener and kind."}, []string{"listener", "kind"}),
		lBytes:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricListenerBytes, Help: "Bytes from (in) and to (out) clients, per listener."}, []string{"listener", "direction"}),
		lFull:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricListenerFull, Help: "Times a listener reached its maxConn and stopped accepting until a connection ended, per listener."}, []string{"listener"}),
		sRequests:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricServerRequests, Help: "Requests (HTTP) or tunnels (TLS) sent to a server."}, []string{"backend", "server"}),
		sConns:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricServerConns, Help: "Connections opened to a server (pooled reuse not counted)."}, []string{"backend", "server"}),
		sActive:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricServerActive, Help: "Requests or tunnels in flight on a server (what maxConn caps)."}, []string{"backend", "server"}),
		sUp:          prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricServerUp, Help: "1 when a server is up (health checks), 0 when down."}, []string{"backend", "server"}),
		sErrors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricServerErrors, Help: "Server-side errors, per server and kind."}, []string{"backend", "server", "kind"}),
		sBytes:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricServerBytes, Help: "Bytes to (out) and from (in) a server."}, []string{"backend", "server", "direction"}),
		bQueued:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricBackendQueued, Help: "Requests waiting for a free server slot."}, []string{"backend"}),
		bErrors:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricBackendErrors, Help: "Requests a backend could not serve, per kind."}, []string{"backend", "kind"}),
		bRetries:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricBackendRetries, Help: "Connects tried again after one failed, on the same server (retry) or another (redispatch), and requests sent again after their pooled connection proved closed (resend), per backend."}, []string{"backend", "kind"}),
		respSeconds:  prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: MetricResponseSeconds, Help: "Time from a request's head to its response's head (HTTP) or to the server connect (TLS), per backend.", Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"backend"}),
		reloads:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricReloads, Help: "Config applications, per result."}, []string{"result"}),
		lastReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLastReloadOK, Help: "1 when the last config application succeeded."}),
		lastReloadAt: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLastReloadTime, Help: "Unix time of the last successful config application."}),
		generation:   prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricConfigGeneration, Help: "Number of configs applied since start."}),
		loops:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricLoops, Help: "Requests or connections refused because a backend leads back to this proxy, per kind (hop_mark, self_server, self_connection)."}, []string{"kind"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.conns, m.active, m.requests, m.lErrors, m.lBytes, m.lFull, m.sRequests, m.sConns,
			m.sActive, m.sUp, m.sErrors, m.sBytes, m.bQueued, m.bErrors, m.bRetries, m.respSeconds, m.reloads, m.lastReloadOK,
			m.lastReloadAt, m.generation, m.loops} {
			reg.MustRegister(c)
		}
	}
	return m
}

// listenerMetrics are one listener's children, bound once so a request
// touches only atomics.
type listenerMetrics struct {
	conns, bytesIn, bytesOut prometheus.Counter
	full                     prometheus.Counter
	active                   prometheus.Gauge
	class                    [7]prometheus.Counter // 1xx..5xx by status/100, [0] tls
	errs                     map[string]prometheus.Counter
}

func (m *metrics) listener(name string) *listenerMetrics {
	lm := &listenerMetrics{
		conns:    m.conns.WithLabelValues(name),
		active:   m.active.WithLabelValues(name),
		bytesIn:  m.lBytes.WithLabelValues(name, "in"),
		bytesOut: m.lBytes.WithLabelValues(name, "out"),
		full:     m.lFull.WithLabelValues(name),
		errs:     map[string]prometheus.Counter{},
	}
	lm.class[0] = m.requests.WithLabelValues(name, "tls")
	for i, c := range []string{"1xx", "2xx", "3xx", "4xx", "5xx"} {
		lm.class[i+1] = m.requests.WithLabelValues(name, c)
	}
	for _, k := range listenerErrKinds {
		lm.errs[k] = m.lErrors.WithLabelValues(name, k)
	}
	return lm
}

func (m *metrics) dropListener(name string) {
	m.conns.DeleteLabelValues(name)
	m.active.DeleteLabelValues(name)
	m.lBytes.DeleteLabelValues(name, "in")
	m.lBytes.DeleteLabelValues(name, "out")
	m.lFull.DeleteLabelValues(name)
	m.requests.DeletePartialMatch(prometheus.Labels{"listener": name})
	m.lErrors.DeletePartialMatch(prometheus.Labels{"listener": name})
}

type backendMetrics struct {
	queued                    prometheus.Gauge
	resp                      prometheus.Observer
	errs                      map[string]prometheus.Counter
	retry, redispatch, resend prometheus.Counter
}

func (m *metrics) backend(name string) *backendMetrics {
	bm := &backendMetrics{
		queued: m.bQueued.WithLabelValues(name),
		resp:   m.respSeconds.WithLabelValues(name),
		errs:   map[string]prometheus.Counter{},

		retry:      m.bRetries.WithLabelValues(name, retryKindRetry),
		redispatch: m.bRetries.WithLabelValues(name, retryKindRedispatch),
		resend:     m.bRetries.WithLabelValues(name, retryKindResend),
	}
	for _, k := range []string{errKindNoServer, errKindQueue, errKindQueueFull, errKindConnectFail} {
		bm.errs[k] = m.bErrors.WithLabelValues(name, k)
	}
	return bm
}

func (m *metrics) dropBackend(name string) {
	m.bQueued.DeleteLabelValues(name)
	m.respSeconds.DeleteLabelValues(name)
	m.bErrors.DeletePartialMatch(prometheus.Labels{"backend": name})
	m.bRetries.DeletePartialMatch(prometheus.Labels{"backend": name})
}

type serverMetrics struct {
	requests, conns, bytesIn, bytesOut prometheus.Counter
	active, up                         prometheus.Gauge
	errs                               map[string]prometheus.Counter
}

func (m *metrics) server(backend, name string) *serverMetrics {
	sm := &serverMetrics{
		requests: m.sRequests.WithLabelValues(backend, name),
		conns:    m.sConns.WithLabelValues(backend, name),
		bytesIn:  m.sBytes.WithLabelValues(backend, name, "in"),
		bytesOut: m.sBytes.WithLabelValues(backend, name, "out"),
		active:   m.sActive.WithLabelValues(backend, name),
		up:       m.sUp.WithLabelValues(backend, name),
		errs:     map[string]prometheus.Counter{},
	}
	for _, k := range []string{errKindConnect, errKindTimeout, errKindResponse} {
		sm.errs[k] = m.sErrors.WithLabelValues(backend, name, k)
	}
	return sm
}

func (m *metrics) dropServer(backend, name string) {
	l := prometheus.Labels{"backend": backend, "server": name}
	for _, v := range []*prometheus.CounterVec{m.sRequests, m.sConns, m.sErrors, m.sBytes} {
		v.DeletePartialMatch(l)
	}
	m.sActive.DeletePartialMatch(l)
	m.sUp.DeletePartialMatch(l)
}
