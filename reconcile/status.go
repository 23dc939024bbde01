package reconcile

import (
	"log/slog"
	"maps"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Status is what the loop reports of a node: the commit it runs, the last
// attempt and why it failed, and a condition per step. It is the core of
// the node's status (cmd/gitedge adds what the subsystems report live).
type Status struct {
	Node string `json:"node"`
	// Live is the commit the node serves: null until a first commit
	// applied (the "live" condition then says why).
	Live        *CommitInfo `json:"live"`
	LastAttempt *Attempt    `json:"lastAttempt,omitempty"`
	// LastResync is the last pass over the live commit made without a new
	// revision (resync, poke): it re-checks the subsystems and never hides
	// why the last new revision failed.
	LastResync *Attempt             `json:"lastResync,omitempty"`
	Conditions map[string]Condition `json:"conditions"`
	// Secrets says where each secret of the live commit comes from,
	// never its value.
	Secrets []SecretUse `json:"secrets,omitempty"`
}

// CommitInfo describes a commit.
type CommitInfo struct {
	Commit    string    `json:"commit"`
	Signer    string    `json:"signer,omitempty"`
	Author    string    `json:"author,omitempty"`
	Message   string    `json:"message,omitempty"`
	AppliedAt time.Time `json:"appliedAt"`
	// Restored is set while the live commit is the one recorded before a
	// restart, applied before any fetch; the first fetched revision that
	// applies clears it.
	Restored bool `json:"restored,omitempty"`
}

// Attempt is the last pass.
type Attempt struct {
	Commit   string    `json:"commit,omitempty"`
	Trigger  string    `json:"trigger,omitempty"`
	Started  time.Time `json:"started"`
	Duration Duration  `json:"duration"`
	Result   Result    `json:"result"`
	Error    string    `json:"error,omitempty"`
	Plan     string    `json:"plan,omitempty"` // "2 to add, 1 to change, 0 to remove"
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// ("1.25s"), not as nanoseconds.
type Duration time.Duration

func (d Duration) String() string               { return time.Duration(d).String() }
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// CondStatus is the state of one condition.
type CondStatus string

const (
	CondReady  CondStatus = "Ready"
	CondFailed CondStatus = "Failed" // retried on the next pass
	// CondProgressing: handed to a worker (infra), not finished yet.
	CondProgressing CondStatus = "Progressing"
	CondStalled     CondStatus = "Stalled" // needs a new commit (invalid, untrusted)
)

// Condition is the state of one step: source, config, infra, dataplane,
// failover; "state" is the last applied record, "live" whether the node
// serves a commit at all.
type Condition struct {
	Status  CondStatus `json:"status"`
	Message string     `json:"message,omitempty"`
	Since   time.Time  `json:"since"`
}

// Status returns a copy of the node's status.
func (l *Loop) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.status
	s.Node = l.Node
	s.Conditions = maps.Clone(l.status.Conditions)
	if s.Live != nil {
		c := *s.Live
		s.Live = &c
	}
	if s.LastAttempt != nil {
		a := *s.LastAttempt
		s.LastAttempt = &a
	}
	if s.LastResync != nil {
		a := *s.LastResync
		s.LastResync = &a
	}
	return s
}

func (l *Loop) setCondition(name string, st CondStatus, msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.setConditionLocked(name, st, msg)
}

func (l *Loop) setConditionLocked(name string, st CondStatus, msg string) {
	if l.status.Conditions == nil {
		l.status.Conditions = map[string]Condition{}
	}
	old, ok := l.status.Conditions[name]
	since := time.Now()
	if ok && old.Status == st {
		since = old.Since
	}
	l.status.Conditions[name] = Condition{Status: st, Message: msg, Since: since}
}

// report records a pass in status, metrics and the log; it runs on every
// exit path of Pass.
func (l *Loop) report(rev Revision, start time.Time, res Result, err error, plan Plan, log *slog.Logger) {
	d := time.Since(start)
	a, c, r := plan.Counts()
	att := &Attempt{Commit: rev.Commit, Trigger: rev.Trigger, Started: start, Duration: Duration(d), Result: res}
	if res != ResultInvalid && res != ResultFetchErr {
		att.Plan = planSummary(a, c, r)
	}
	if err != nil {
		att.Error = err.Error()
	}
	ok := res == ResultApplied || res == ResultUnchanged
	l.mu.Lock()
	// A pass over the live commit again (resync, poke, or the retry of
	// one) is reported apart: it must not hide why the newest head failed.
	resync := rev.Trigger == TriggerResync || rev.Trigger == TriggerPoke ||
		(rev.Trigger == TriggerRetry && l.status.Live != nil && l.status.Live.Commit == rev.Commit)
	if resync {
		l.status.LastResync = att
	} else {
		l.status.LastAttempt = att
	}
	switch {
	case resync:
		// The live commit again: the source and config conditions still
		// describe the newest head, which may have been refused.
	case ok && rev.Trigger == TriggerRestart:
		// The record: nothing fetched yet, so nothing said of the source.
		l.status.Live = &CommitInfo{Commit: rev.Commit, Signer: rev.Signer, Author: rev.Author, Message: rev.Message, AppliedAt: time.Now(), Restored: true}
	case ok:
		l.status.Live = &CommitInfo{Commit: rev.Commit, Signer: rev.Signer, Author: rev.Author, Message: rev.Message, AppliedAt: time.Now()}
		l.setConditionLocked("source", CondReady, "")
		l.setConditionLocked("config", CondReady, "")
	case res == ResultFetchErr:
		l.setConditionLocked("source", CondFailed, att.Error)
	case res == ResultInvalid:
		// Last known good: nothing changes until a new head.
		step := "config"
		if rev.Files == nil {
			step = "source"
		}
		l.setConditionLocked(step, CondStalled, att.Error)
	}
	switch live := l.status.Live; {
	case live != nil:
		l.setConditionLocked("live", CondReady, "serving commit "+short(live.Commit))
	case res == ResultFetchErr || (res == ResultFailed && IsTransient(err)):
		l.setConditionLocked("live", CondFailed, "no commit applied yet: "+firstLineOf(att.Error)+" (retrying)")
	case res == ResultFailed:
		// Terminal (a missing capability): the loop does not retry it.
		l.setConditionLocked("live", CondStalled, "no commit applied yet: "+firstLineOf(att.Error)+
			" (not retried by itself: fix the cause, then systemctl reload gitedge to try it again (a missing capability needs a restart), or push a new commit)")
	case res == ResultInvalid:
		l.setConditionLocked("live", CondStalled, "no commit applied yet: commit "+short(rev.Commit)+" was refused (see config); waiting for a new commit")
	}
	live := l.status.Live
	l.mu.Unlock()

	if m := l.Metrics; m != nil {
		m.passes.WithLabelValues(string(res)).Inc()
		m.duration.Observe(d.Seconds())
		switch res {
		case ResultApplied, ResultUnchanged:
			m.lastSuccess.Set(1)
			m.lastSuccessTime.SetToCurrentTime()
			m.live.Reset()
			m.live.WithLabelValues(live.Commit).Set(1)
		case ResultInvalid, ResultFailed, ResultFetchErr:
			m.lastSuccess.Set(0)
		}
	}
	attrs := []any{"result", res, "duration", d.Round(time.Millisecond)}
	if !plan.Empty() {
		attrs = append(attrs, "plan", att.Plan)
	}
	switch {
	case err != nil:
		log.Warn("reconcile pass failed", append(attrs, "error", err)...)
	case res == ResultApplied:
		log.Info("reconcile pass applied", attrs...)
	default:
		log.Debug("reconcile pass", attrs...)
	}
}

func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func planSummary(a, c, r int) string {
	return itoa(a) + " to add, " + itoa(c) + " to change, " + itoa(r) + " to remove"
}

// Metric names, shared with tests.
const (
	MetricPasses          = "gitedge_reconcile_passes_total"
	MetricDuration        = "gitedge_reconcile_duration_seconds"
	MetricLastSuccess     = "gitedge_reconcile_last_success"
	MetricLastSuccessTime = "gitedge_reconcile_last_success_timestamp_seconds"
	MetricLiveCommit      = "gitedge_live_commit_info"
	MetricStateErrors     = "gitedge_state_record_errors_total"
)

// Metrics are the loop's Prometheus metrics.
type Metrics struct {
	passes          *prometheus.CounterVec
	duration        prometheus.Histogram
	lastSuccess     prometheus.Gauge
	lastSuccessTime prometheus.Gauge
	live            *prometheus.GaugeVec
	stateErrors     *prometheus.CounterVec
}

// NewMetrics registers the loop's metrics into reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricPasses,
			Help: "Reconcile passes by result (applied, unchanged, planned, invalid, failed, fetch-error)."}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: MetricDuration,
			Help: "Duration of reconcile passes.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLastSuccess,
			Help: "1 if the last reconcile pass converged, 0 if it failed."}),
		lastSuccessTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: MetricLastSuccessTime,
			Help: "Unix time of the last pass that converged."}),
		live: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: MetricLiveCommit,
			Help: "The commit this node runs (value 1)."}, []string{"commit"}),
		stateErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: MetricStateErrors,
			Help: "Failures to load (at start) or save the last applied record, by op."}, []string{"op"}),
	}
	reg.MustRegister(m.passes, m.duration, m.lastSuccess, m.lastSuccessTime, m.live, m.stateErrors)
	return m
}
