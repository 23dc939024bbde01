package notify

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gitedge/gitedge/internal/deliver"
)

// Bounds on a sink's memory.
const (
	maxLimits = 4096 // rate-limit entries (distinct events inside a window)
	maxOpen   = 4096 // open alerts (servers down)
)

// sink is one configured destination: its filter, rate limit, queue and
// delivery goroutine.
type sink struct {
	n      *Notifier
	idx    int
	cfg    SinkConfig
	url    string  // where requests go
	shown  string  // the URL for logs and the snapshot
	secret *secret // owned by the run goroutine after New
	wake   chan struct{}

	mu        sync.Mutex
	queue     []delivery        // oldest first
	limits    map[string]*limit // by Event.rateKey
	latest    map[string]string // subjectKey → rateKey of the newest event about it
	open      map[string]Event  // openKey → the server-down event sent
	nextFlush time.Time         // earliest end of a window with events held back
	resending bool              // a resend of open alerts is queued
	prunedAt  time.Time         // last pruneLocked
	hidden    []string          // secret parts of the URL, longest first, scrubbed from messages
	st        SinkStatus
}

// delivery is one request's worth of events.
type delivery struct {
	events []Event
	resend bool // Alertmanager's periodic resend of open alerts
}

// limit is the rate-limit state of one kind of event.
type limit struct {
	sentAt     time.Time
	suppressed int
	pending    *Event // the newest held back
}

func newSink(n *Notifier, idx int, cfg SinkConfig) *sink {
	s := &sink{
		n: n, idx: idx, cfg: cfg, url: cfg.URL, shown: redactURL(cfg.Kind, cfg.URL),
		wake:   make(chan struct{}, 1),
		limits: make(map[string]*limit),
		latest: make(map[string]string),
		open:   make(map[string]Event),
	}
	if cfg.Kind == Alertmanager {
		if u, err := url.Parse(cfg.URL); err == nil {
			u.Path = strings.TrimRight(u.Path, "/")
			u.RawPath = ""
			if !strings.HasSuffix(u.Path, AlertmanagerPath) {
				u.Path += AlertmanagerPath
			}
			s.url = u.String()
			s.shown = redactURL(cfg.Kind, s.url)
		}
	}
	s.st = SinkStatus{Kind: cfg.Kind, URL: s.shown, MinSeverity: cfg.MinSeverity}
	s.hidden = hiddenParts(cfg.Kind, cfg.URL, s.url)
	return s
}

// hiddenParts are the strings scrub removes from messages: the full URLs
// and, where logs show only the host, the path and query (a receiver may
// echo its path, which for Slack is the secret).
func hiddenParts(kind SinkKind, urls ...string) []string {
	var out []string
	for _, raw := range urls {
		out = append(out, raw)
		u, err := url.Parse(raw)
		if err != nil {
			continue
		}
		if u.User != nil {
			out = append(out, u.User.String())
		}
		if u.RawQuery != "" {
			out = append(out, u.RawQuery)
		}
		if kind != Alertmanager && len(u.Path) > 1 {
			out = append(out, u.EscapedPath(), u.Path)
		}
	}
	slices.SortFunc(out, func(a, b string) int { return cmp.Or(len(b)-len(a), strings.Compare(a, b)) })
	return slices.Compact(out)
}

func (s *sink) label() string { return string(s.cfg.Kind) }

func (s *sink) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// offer filters, rate-limits and queues e. It never blocks on I/O.
func (s *sink) offer(e Event, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	least := s.cfg.MinSeverity.rank()
	switch e.Kind {
	case KindServerUp:
		// A sink told that the server was down is told it is up, whatever
		// its minimum severity.
		if p, ok := s.open[e.openKey()]; ok {
			delete(s.open, e.openKey())
			e.problem = &p
		} else if e.Severity.rank() < least {
			return
		}
	case KindServerDown:
		if e.Severity.rank() < least {
			return
		}
		if _, ok := s.open[e.openKey()]; ok || len(s.open) < maxOpen {
			s.open[e.openKey()] = e
		}
	default:
		if e.Severity.rank() < least {
			return
		}
	}

	if len(s.limits) >= maxLimits && now.Sub(s.prunedAt) >= time.Second {
		s.pruneLocked(now)
	}
	rk := e.rateKey()
	if sk := e.subjectKey(); len(s.latest) < maxLimits {
		s.latest[sk] = rk
	} else if _, ok := s.latest[sk]; ok {
		s.latest[sk] = rk
	}
	l := s.limits[rk]
	if l != nil && now.Sub(l.sentAt) < s.n.cfg.Window {
		l.suppressed++
		held := e
		l.pending = &held
		s.st.Suppressed++
		s.n.m.events.WithLabelValues(s.label(), ResultSuppressed).Inc()
		if end := l.sentAt.Add(s.n.cfg.Window); s.nextFlush.IsZero() || end.Before(s.nextFlush) {
			s.nextFlush = end
			s.poke()
		}
		return
	}
	if l != nil {
		e.Repeats = l.suppressed // held back in a window that ended before its flush ran
	}
	if l != nil || len(s.limits) < maxLimits {
		s.limits[rk] = &limit{sentAt: now}
	}
	s.enqueueLocked(delivery{events: []Event{e}})
}

// pruneLocked forgets rate-limit entries whose window ended with nothing
// held back, and subjects no entry refers to. It runs when the table is
// full, at most once a second: a flood of distinct events costs one scan
// a second, and events past the bound are sent without rate limiting.
func (s *sink) pruneLocked(now time.Time) {
	s.prunedAt = now
	for rk, l := range s.limits {
		if l.suppressed == 0 && now.Sub(l.sentAt) >= s.n.cfg.Window {
			delete(s.limits, rk)
		}
	}
	for sk, rk := range s.latest {
		if _, ok := s.limits[rk]; !ok {
			delete(s.latest, sk)
		}
	}
}

// flushLocked sends, for every window that has ended, the newest event
// held back in it with the count held back, unless a newer event about
// the same subject came since (then that one tells the current state).
func (s *sink) flushLocked(now time.Time) {
	var next time.Time
	for rk, l := range s.limits {
		end := l.sentAt.Add(s.n.cfg.Window)
		if l.suppressed == 0 {
			continue
		}
		if now.Before(end) {
			if next.IsZero() || end.Before(next) {
				next = end
			}
			continue
		}
		e := *l.pending
		e.Repeats = l.suppressed
		if s.latest[e.subjectKey()] != rk {
			delete(s.limits, rk)
			continue
		}
		s.limits[rk] = &limit{sentAt: now}
		s.enqueueLocked(delivery{events: []Event{e}})
	}
	s.nextFlush = next
}

// enqueueLocked queues d, dropping the oldest delivery when full.
func (s *sink) enqueueLocked(d delivery) {
	if len(s.queue) >= s.n.cfg.QueueSize {
		old := s.queue[0]
		s.queue = slices.Delete(s.queue, 0, 1)
		if old.resend {
			s.resending = false
		}
		s.n.m.queue.WithLabelValues(s.label()).Dec()
		s.st.Dropped += uint64(len(old.events))
		s.n.m.events.WithLabelValues(s.label(), ResultDropped).Add(float64(len(old.events)))
		if d := s.st.Dropped; d&(d-1) == 0 || len(old.events) > 1 { // 1st, 2nd, 4th, 8th…: a flood logs a few lines
			s.n.log.Warn("notification dropped: queue full", "sink", s.idx, "kind", s.label(), "url", s.shown,
				"event", string(old.events[0].Kind), "queueSize", s.n.cfg.QueueSize, "droppedSinceStart", d)
		}
	}
	s.queue = append(s.queue, d)
	s.n.m.queue.WithLabelValues(s.label()).Inc()
	s.poke()
}

func (s *sink) popLocked() (delivery, bool) {
	if len(s.queue) == 0 {
		return delivery{}, false
	}
	d := s.queue[0]
	s.queue = slices.Delete(s.queue, 0, 1)
	s.n.m.queue.WithLabelValues(s.label()).Dec()
	if d.resend {
		s.resending = false
	}
	return d, true
}

// resendLocked queues the open alerts again (Alertmanager only).
func (s *sink) resendLocked() {
	if len(s.open) == 0 || s.resending {
		return
	}
	events := make([]Event, 0, len(s.open))
	for _, e := range s.open {
		e.Repeats = 0
		events = append(events, e)
	}
	slices.SortFunc(events, func(a, b Event) int {
		return cmp.Or(a.Time.Compare(b.Time), strings.Compare(a.openKey(), b.openKey()))
	})
	s.resending = true
	s.enqueueLocked(delivery{events: events, resend: true})
}

// run delivers the sink's queue until ctx ends.
func (s *sink) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var resend <-chan time.Time
	if s.cfg.Kind == Alertmanager {
		t := time.NewTicker(s.n.cfg.ResendInterval)
		defer t.Stop()
		resend = t.C
	}
	for {
		now := time.Now()
		s.mu.Lock()
		if !s.nextFlush.IsZero() && !now.Before(s.nextFlush) {
			s.flushLocked(now)
		}
		d, ok := s.popLocked()
		next := s.nextFlush
		s.mu.Unlock()
		if ok {
			s.deliver(ctx, d)
			if ctx.Err() != nil {
				return
			}
			continue
		}
		var flush <-chan time.Time
		if !next.IsZero() {
			timer.Reset(next.Sub(now))
			flush = timer.C
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-s.wake:
		case <-flush:
		case <-resend:
			s.mu.Lock()
			s.resendLocked()
			s.mu.Unlock()
		}
		timer.Stop()
	}
}

// deliver sends one delivery, retrying while it may succeed later.
func (s *sink) deliver(ctx context.Context, d delivery) {
	body, err := s.encode(d.events)
	if err != nil {
		s.failed(d, 0, fmt.Errorf("encoding: %v", err))
		return
	}
	for attempt := 1; ; attempt++ {
		code, wait, retry, err := s.post(ctx, d, body)
		if ctx.Err() != nil {
			return // the node is stopping
		}
		if err == nil {
			s.sent(d)
			return
		}
		if !retry || attempt >= s.n.cfg.MaxAttempts {
			if retry {
				err = fmt.Errorf("%w; giving up after %d attempts", err, attempt)
			}
			s.failed(d, code, err)
			return
		}
		if wait == 0 {
			wait = deliver.Backoff(attempt-1, s.n.cfg.RetryMin, s.n.cfg.RetryMax, s.n.jitter)
		}
		s.setError(err)
		level := slog.LevelDebug
		if attempt == 1 {
			level = slog.LevelWarn
		}
		s.n.log.Log(ctx, level, "notification not delivered; retrying", "sink", s.idx, "kind", s.label(), "url", s.shown,
			"event", string(d.events[0].Kind), "attempt", attempt, "retryIn", wait.Round(time.Millisecond), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (s *sink) encode(events []Event) ([]byte, error) {
	switch s.cfg.Kind {
	case Slack:
		return encodeSlack(events[0], s.n.cfg.StatusURL)
	case Alertmanager:
		return encodeAlertmanager(events, s.n.cfg.StatusURL)
	default:
		return encodeWebhook(events[0], s.n.cfg.StatusURL)
	}
}

// post sends body once. err is nil on a 2xx; retry says whether another
// attempt may succeed; wait is what the receiver asked for.
func (s *sink) post(ctx context.Context, d delivery, body []byte) (code int, wait time.Duration, retry bool, err error) {
	s.reloadSecret()
	ctx, cancel := context.WithTimeout(ctx, s.n.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return 0, 0, false, errors.New(s.scrub(err.Error()))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gitedge-notify")
	switch s.cfg.Kind {
	case Webhook:
		req.Header.Set(HeaderEvent, string(d.events[0].Kind))
		if s.secret != nil {
			req.Header.Set(HeaderSignature, sign(s.secret.v, body))
		}
	case Alertmanager:
		if s.secret != nil {
			req.Header.Set("Authorization", "Bearer "+string(s.secret.v))
		}
	}
	resp, err := s.n.client.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // *url.Error repeats the URL, which may be a secret
		}
		msg := err.Error()
		if errors.Is(err, context.DeadlineExceeded) {
			msg = fmt.Sprintf("no answer within %s", s.n.cfg.Timeout)
		}
		return 0, 0, true, errors.New(s.scrub(msg))
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	code = resp.StatusCode
	if code >= 200 && code < 300 {
		return code, 0, false, nil
	}
	msg := "answered " + resp.Status
	if t := deliver.Cut(string(text), 200); t != "" {
		msg += ": " + t
	}
	wait, _ = deliver.RetryAfter(resp.Header, time.Now(), maxServerWait)
	switch {
	case code >= 300 && code < 400:
		msg += "; redirects are not followed: set the final URL"
	case code == http.StatusRequestTimeout, code == http.StatusTooEarly, code == http.StatusTooManyRequests, code >= 500:
		retry = true
	}
	return code, wait, retry, errors.New(s.scrub(msg))
}

// reloadSecret re-reads the secret file, so a rotated secret is used
// without a restart; an unreadable file keeps the previous secret.
func (s *sink) reloadSecret() {
	if s.cfg.SecretFile == "" {
		return
	}
	sec, err := readSecret(s.cfg.SecretFile)
	if err != nil {
		s.n.log.Warn("notification secret not re-read; keeping the previous one", "sink", s.idx, "err", err)
		return
	}
	s.secret = sec
}

// scrub removes the URL's secret parts and the secret from a message.
func (s *sink) scrub(msg string) string {
	for _, h := range s.hidden {
		msg = strings.ReplaceAll(msg, h, "…")
	}
	if s.secret != nil && len(s.secret.v) > 0 {
		msg = strings.ReplaceAll(msg, string(s.secret.v), redacted)
	}
	return msg
}

// sent and failed update the snapshot and the metric, then log: whoever
// sees the log line sees the rest.
func (s *sink) sent(d delivery) {
	n := len(d.events)
	s.mu.Lock()
	s.st.Sent += uint64(n)
	s.st.LastSentAt = time.Now()
	// The receiver takes notifications again: an earlier failure is
	// history (the log, Failed and the metric keep it), not a problem.
	s.st.LastError, s.st.LastErrorAt = "", time.Time{}
	s.mu.Unlock()
	s.n.m.events.WithLabelValues(s.label(), ResultSent).Add(float64(n))
	s.n.log.Debug("notification delivered", "sink", s.idx, "kind", s.label(), "event", string(d.events[0].Kind), "events", n, "resend", d.resend)
}

func (s *sink) failed(d delivery, code int, err error) {
	n := len(d.events)
	s.mu.Lock()
	s.st.Failed += uint64(n)
	s.mu.Unlock()
	s.setError(err)
	s.n.m.events.WithLabelValues(s.label(), ResultFailed).Add(float64(n))
	s.n.log.Warn("notification given up", "sink", s.idx, "kind", s.label(), "url", s.shown,
		"event", string(d.events[0].Kind), "summary", d.events[0].Summary(), "code", code, "err", err)
}

func (s *sink) setError(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.st.LastError = err.Error()
	s.st.LastErrorAt = time.Now()
}

func (s *sink) status() SinkStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.QueueLength = len(s.queue)
	st.OpenAlerts = len(s.open)
	return st
}

// maxServerWait caps the wait a receiver may ask for; MaxAttempts still
// bounds the total.
const maxServerWait = 10 * time.Minute
