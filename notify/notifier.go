package notify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitedge/gitedge/internal/deliver"
	"github.com/gitedge/gitedge/internal/secretmode"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the Notifier's collaborators.
type Options struct {
	// Logger gets a line for every notification given up or dropped
	// (Warn) and every failed attempt (first Warn, later Debug). URLs are
	// redacted and secrets never logged. Nil discards.
	Logger *slog.Logger
	// Registerer gets the metrics (MetricEvents, MetricQueueLength). Nil
	// registers nothing.
	Registerer prometheus.Registerer
	// Client sends the requests. Nil uses http.DefaultTransport. Either way
	// a copy that never follows redirects is used.
	Client *http.Client
	// Jitter returns a number in [0, 1) that spreads retries. Nil uses
	// math/rand/v2; tests fix it.
	Jitter func() float64
}

// Notifier sends events to the configured sinks. Notify never blocks:
// each sink filters by severity, rate-limits repeats and queues; Run
// delivers, one goroutine per sink. It is a Task: Run until the node
// stops.
type Notifier struct {
	cfg     Config
	log     *slog.Logger
	client  *http.Client
	m       *metrics
	jitter  func() float64
	sinks   []*sink
	started atomic.Bool
}

// New checks cfg and reads the sinks' secret files. Events notified before
// Run wait in the queues.
func New(cfg Config, opts Options) (*Notifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	n := &Notifier{cfg: cfg, log: opts.Logger, m: newMetrics(opts.Registerer), jitter: opts.Jitter}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.log = n.log.With("subsystem", "notify")
	if n.jitter == nil {
		n.jitter = rand.Float64
	}
	var c http.Client
	if opts.Client != nil {
		c = *opts.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	n.client = &c
	var errs []error
	for i, sc := range cfg.Sinks {
		s := newSink(n, i, sc)
		if sc.SecretFile != "" {
			sec, err := readSecret(sc.SecretFile)
			if err != nil {
				errs = append(errs, fmt.Errorf("notify[%d].secretFile %s", i, err))
			}
			s.secret = sec
		}
		n.sinks = append(n.sinks, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return n, nil
}

// String names the Notifier in errors and task lists; it holds no secret.
func (n *Notifier) String() string {
	if n == nil {
		return "notify (none)"
	}
	kinds := make([]string, len(n.sinks))
	for i, s := range n.sinks {
		kinds[i] = string(s.cfg.Kind)
	}
	return "notify [" + strings.Join(kinds, " ") + "]"
}

// Notify hands e to every sink and returns at once; a nil Notifier does
// nothing. Node and Time are filled when empty.
//
// Call it when something happened, never for a pass that changed nothing:
// the rate limit (Config.Window) is a guard against floods, not a filter
// for no-ops. Each sink then drops e below its minSeverity (except a
// server up after a down it was sent), counts and holds back a repeat
// inside the window (the last one goes out when the window ends, with the
// number held back), and queues the rest (dropping the oldest when full).
func (n *Notifier) Notify(e Event) {
	if n == nil || len(n.sinks) == 0 {
		return
	}
	if !e.Kind.valid() || e.Severity.rank() == 0 {
		n.log.Error("notification not sent: bad kind or severity (a bug in the caller)", "kind", string(e.Kind), "severity", string(e.Severity))
		return
	}
	if e.Node == "" {
		e.Node = n.cfg.Node
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Message = deliver.Cut(e.Message, maxMessage)
	e.Repeats = 0
	e.problem = nil
	for _, s := range n.sinks {
		s.offer(e, time.Now())
	}
}

// maxMessage bounds an event's message, in characters.
const maxMessage = 2000

// Run delivers until ctx ends, then returns nil; what is still queued is
// abandoned. Delivery never returns an error: failures are logged,
// counted and shown in Snapshot. Run may be called once.
func (n *Notifier) Run(ctx context.Context) error {
	if n == nil {
		return nil
	}
	if !n.started.CompareAndSwap(false, true) {
		return fmt.Errorf("%s: Run called twice", n)
	}
	var wg sync.WaitGroup
	for _, s := range n.sinks {
		wg.Go(func() { s.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Snapshot is the Notifier's state for the node's /status.
type Snapshot struct {
	Sinks []SinkStatus `json:"sinks"`
}

// SinkStatus is one sink's state. Counts are since start.
type SinkStatus struct {
	Kind SinkKind `json:"kind"`
	// URL is redacted: no credentials, query or fragment, and only the
	// host for slack and webhook.
	URL         string    `json:"url"`
	MinSeverity Severity  `json:"minSeverity"`
	QueueLength int       `json:"queueLength"`
	Sent        uint64    `json:"sent"`
	Failed      uint64    `json:"failed"`
	Dropped     uint64    `json:"dropped"`
	Suppressed  uint64    `json:"suppressed"`
	OpenAlerts  int       `json:"openAlerts"` // servers down, not yet up
	LastSentAt  time.Time `json:"lastSentAt,omitzero"`
	// LastError is the last failed attempt and LastErrorAt when it
	// failed; both are cleared when a later notification is delivered, so
	// a LastError means the sink is failing now.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
}

// Snapshot returns the current state; a nil Notifier gives the zero value.
func (n *Notifier) Snapshot() Snapshot {
	if n == nil {
		return Snapshot{}
	}
	s := Snapshot{Sinks: make([]SinkStatus, 0, len(n.sinks))}
	for _, k := range n.sinks {
		s.Sinks = append(s.Sinks, k.status())
	}
	return s
}

// secret is a key or token from a file. Every way of printing it prints
// "[redacted]".
type secret struct{ v []byte }

const redacted = "[redacted]"

func (secret) String() string               { return redacted }
func (secret) GoString() string             { return redacted }
func (secret) LogValue() slog.Value         { return slog.StringValue(redacted) }
func (secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }
func (secret) Format(f fmt.State, _ rune)   { _, _ = f.Write([]byte(redacted)) }

// readSecret reads a secret file, dropping surrounding white space. A
// file every user may read is refused, as ssh refuses such a private key
// and the node refuses such a secret file (package secrets). Errors name
// the file's problem, never its content.
func readSecret(path string) (*secret, error) {
	if err := secretmode.Stat(path); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return nil, fmt.Errorf("%s: empty", path)
	}
	return &secret{v: []byte(v)}, nil
}
