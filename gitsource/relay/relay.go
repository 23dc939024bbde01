package relay

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/gitedge/gitedge/internal/deliver"
	"github.com/gitedge/gitedge/internal/promreg"
)

// MetricSent counts relays, one per commit and peer, by how the delivery
// ended (the Sent* results).
const MetricSent = "gitedge_gitsource_relays_sent_total"

// Results of a delivery, the values of MetricSent's result label.
const (
	SentAcknowledged = "acknowledged" // the peer answered 2xx
	SentRefused      = "refused"      // the peer refused it (4xx): a key or clock to fix
	SentSkipped      = "skipped"      // nothing relays there (connection refused, 404): no gitedge
	SentFailed       = "failed"       // no answer within Timeout: the peer catches up by polling
	SentSuperseded   = "superseded"   // a newer commit replaced it before it was acknowledged
)

// Defaults.
const (
	DefaultTimeout = 30 * time.Second
	// absentTries is how many times a peer that refuses the connection
	// or answers 404 is tried before it is skipped for that commit.
	absentTries = 3
	// attemptTimeout bounds one request.
	attemptTimeout = 5 * time.Second
)

// Config is the sending side of the relay (the node config's
// webhook.relay). The zero Config sends nothing (no Port, no Peers).
type Config struct {
	// Node is this node's name: the sender named in each message, and
	// the peer left out of the nodes list.
	Node string
	// KeyFile holds the key the messages are signed with: the node
	// config's webhook.relay.keyFile, else webhook.secretFile. It is read
	// at each delivery, so a rotated key is used at once.
	KeyFile string
	// Port is the port of the peers' webhook listeners; default this
	// node's own (fleets share one node config shape).
	Port int
	// Path is the peers' relay path, gitsource.RelayPath(webhook.path).
	Path string
	// Peers maps a node name to the URL of its relay endpoint
	// (https://lb-1.example:9443/hook/relay), ahead of the address in
	// the nodes list.
	Peers map[string]string
	// Timeout bounds how long one commit is retried to one peer; default
	// 30s. A peer down longer catches up by polling when it returns.
	Timeout time.Duration
}

// Peer is one node of the live commit's nodes list.
type Peer struct {
	Name    string
	Address netip.Addr
}

// Options are what a Relayer needs besides its Config.
type Options struct {
	// Peers returns the live commit's nodes list; it is asked at each
	// Announce. Required.
	Peers func() []Peer
	// Logger: nil discards. Registerer: nil keeps the metrics unregistered.
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Client sends the relays; nil: a client of its own, no proxy, short
	// timeouts, connections kept for the next commit.
	Client *http.Client
}

// PeerStatus is what /status shows of one peer.
type PeerStatus struct {
	Name string `json:"name"`
	URL  string `json:"url"`
	// Commit is the last commit the peer was told about, SentAt when
	// the last attempt at it was made.
	Commit string    `json:"commit,omitempty"`
	SentAt time.Time `json:"sentAt,omitzero"`
	// Acknowledged: the peer answered Commit with a 2xx.
	Acknowledged bool `json:"acknowledged"`
	// Result is how the last delivery ended (a Sent* result), "sending"
	// while it runs.
	Result    string `json:"result,omitempty"`
	LastError string `json:"lastError,omitempty"`
}

// Relayer tells the other nodes of the live commit's nodes list of a new
// commit. Announce never blocks: each peer has at most one delivery
// running and one commit waiting (the latest). Safe for concurrent use.
type Relayer struct {
	opts   Options
	log    *slog.Logger
	client *http.Client
	sent   *prometheus.CounterVec
	rnd    func() float64

	mu      sync.Mutex
	cfg     Config
	stopped bool
	last    string // the commit last announced
	peers   map[string]*peer
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
}

type peer struct {
	name string
	// guarded by Relayer.mu
	url     string
	pending *job
	running bool
	wake    chan struct{}
	status  PeerStatus
	state   string // "", "ok", "absent", "failing": logged on change only
}

type job struct{ ref, commit string }

// New returns a Relayer; Run must run for it to stop cleanly.
func New(cfg Config, o Options) (*Relayer, error) {
	if o.Peers == nil {
		return nil, errors.New("relay: no nodes list (Options.Peers)")
	}
	r := &Relayer{opts: o, log: o.Logger, client: o.Client, rnd: rand.Float64, peers: map[string]*peer{},
		sent: promreg.Register("relay", o.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricSent, Help: "Relays sent to peers, one per commit and peer, by result.",
		}, []string{"result"})),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.log = r.log.With("subsystem", "relay")
	if r.client == nil {
		r.client = &http.Client{Transport: &http.Transport{
			Proxy:                 nil, // node to node, never through the environment's proxy
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			TLSHandshakeTimeout:   2 * time.Second,
			ResponseHeaderTimeout: 3 * time.Second,
			MaxIdleConnsPerHost:   1,
			IdleConnTimeout:       90 * time.Second,
		}}
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if err := r.Configure(cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// Configure replaces the config (a reload); deliveries running finish
// with the URL they started with.
func (r *Relayer) Configure(cfg Config) error {
	cfg.Timeout = cmp.Or(cfg.Timeout, DefaultTimeout)
	if cfg.Path == "" {
		cfg.Path = gitsource.RelayPath("")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cfg = cfg
	return nil
}

// Run waits for ctx to end, then stops the deliveries and waits for
// them. It returns nil.
func (r *Relayer) Run(ctx context.Context) error {
	<-ctx.Done()
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// Relays says whether a look started by a trigger of kind k that found
// a new commit tells the peers: a push webhook, a poll, an operator's
// SIGHUP do; a relay never does (no storms), nor the first look after
// start (every node starting would tell every other) or a retry.
func Relays(k gitsource.TriggerKind) bool {
	switch k {
	case gitsource.TriggerWebhook, gitsource.TriggerPoll, gitsource.TriggerManual:
		return true
	}
	return false
}

// Announce tells every peer of the live nodes list but this node that
// commit is on ref, in the background; a commit already announced is
// not announced again. It never blocks.
func (r *Relayer) Announce(ref, commit string) {
	if !validCommit(commit) {
		return
	}
	nodes := r.opts.Peers()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || commit == r.last {
		return
	}
	r.last = commit
	keep := map[string]*peer{}
	for _, n := range nodes {
		if n.Name == r.cfg.Node || n.Name == "" {
			continue
		}
		u := r.urlFor(n)
		if u == "" {
			continue
		}
		p := r.peers[n.Name]
		if p == nil {
			p = &peer{name: n.Name, wake: make(chan struct{}, 1)}
		}
		keep[n.Name] = p
		p.url = u
		p.pending = &job{ref: ref, commit: commit}
		if p.running {
			select {
			case p.wake <- struct{}{}:
			default:
			}
			continue
		}
		p.running = true
		r.wg.Go(func() { r.deliverLoop(p) })
	}
	// Peers gone from the list are forgotten once idle.
	for name, p := range r.peers {
		if keep[name] == nil && p.running {
			keep[name] = p
		}
	}
	r.peers = keep
}

func validCommit(c string) bool {
	if len(c) != 40 && len(c) != 64 || strings.Trim(c, "0") == "" {
		return false
	}
	for i := 0; i < len(c); i++ {
		if (c[i] < '0' || c[i] > '9') && (c[i] < 'a' || c[i] > 'f') {
			return false
		}
	}
	return true
}

// urlFor is the URL of n's relay endpoint; "" when there is none to use.
func (r *Relayer) urlFor(n Peer) string {
	if u, ok := r.cfg.Peers[n.Name]; ok {
		return u
	}
	if r.cfg.Port == 0 || !n.Address.IsValid() {
		return ""
	}
	u := url.URL{Scheme: "http", Host: net.JoinHostPort(n.Address.Unmap().String(), strconv.Itoa(r.cfg.Port)), Path: r.cfg.Path}
	return u.String()
}

// Status lists the peers told about a commit, by name.
func (r *Relayer) Status() []PeerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]PeerStatus, 0, len(r.peers))
	for _, p := range r.peers {
		out = append(out, p.status)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// deliverLoop delivers p's pending commits until none is left.
func (r *Relayer) deliverLoop(p *peer) {
	for {
		r.mu.Lock()
		j, u, cfg := p.pending, p.url, r.cfg
		p.pending = nil
		select {
		case <-p.wake: // about j itself
		default:
		}
		if j == nil || r.stopped {
			p.running = false
			r.mu.Unlock()
			return
		}
		p.status = PeerStatus{Name: p.name, URL: u, Commit: j.commit, SentAt: time.Now(), Result: "sending"}
		r.mu.Unlock()
		r.deliver(p, u, cfg, *j)
	}
}

// outcome is what one attempt found.
type outcome int

const (
	acked   outcome = iota
	refused         // 4xx but 404/429: no retry
	absent          // connection refused or 404: retried absentTries times
	retry           // anything else
)

// deliver tells p of j, retrying with jittered backoff until it is
// acknowledged, refused, found absent, Timeout passes or a newer commit
// waits.
func (r *Relayer) deliver(p *peer, u string, cfg Config, j job) {
	deadline := time.Now().Add(cfg.Timeout)
	absentSeen := 0
	for attempt := 0; ; attempt++ {
		out, err := r.send(u, cfg, j)
		result := ""
		switch out {
		case acked:
			result = SentAcknowledged
		case refused:
			result = SentRefused
		case absent:
			if absentSeen++; absentSeen >= absentTries {
				result = SentSkipped
			}
		}
		wait := deliver.Backoff(attempt, 100*time.Millisecond, 5*time.Second, r.rnd)
		if result == "" && time.Now().Add(wait).After(deadline) {
			result = SentFailed
		}
		if result != "" {
			r.finish(p, j, result, err)
			return
		}
		r.mu.Lock()
		p.status.LastError = errText(err)
		r.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-r.ctx.Done():
			t.Stop()
			return
		case <-p.wake:
			t.Stop()
			r.finish(p, j, SentSuperseded, err)
			return
		case <-t.C:
		}
	}
}

// finish records how a delivery ended, and logs a change of the peer's
// state (once, never per commit: no storm of warnings for a peer down).
func (r *Relayer) finish(p *peer, j job, result string, err error) {
	r.sent.WithLabelValues(result).Inc()
	r.mu.Lock()
	defer r.mu.Unlock()
	p.status.Result = result
	p.status.Acknowledged = result == SentAcknowledged
	p.status.LastError = errText(err)
	state := map[string]string{SentAcknowledged: "ok", SentSkipped: "absent", SentRefused: "failing", SentFailed: "failing"}[result]
	attrs := []any{"peer", p.name, "url", p.status.URL, "commit", short(j.commit), "result", result}
	if err != nil {
		attrs = append(attrs, "error", err)
	}
	switch {
	case state == "" || state == p.state:
		r.log.Debug("relay delivered", attrs...)
		return
	case state == "ok" && p.state != "":
		r.log.Info("relay to peer works again", attrs...)
	case state == "ok":
		r.log.Debug("relay delivered", attrs...)
	case state == "absent":
		r.log.Info("peer has no relay endpoint (no gitedge there?); skipped until it answers", attrs...)
	default:
		r.log.Warn("relay to peer failing; it catches up at its next poll", attrs...)
	}
	p.state = state
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return deliver.Cut(err.Error(), 300)
}

// send makes one attempt.
func (r *Relayer) send(u string, cfg Config, j job) (outcome, error) {
	key, err := gitsource.ReadRelayKey(cfg.KeyFile)
	if err != nil {
		return refused, fmt.Errorf("relay key: %w", err)
	}
	body := gitsource.NewRelayMessage(cfg.Node, j.ref, j.commit, time.Now()).Marshal()
	ctx, cancel := context.WithTimeout(r.ctx, attemptTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return refused, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gitedge-relay")
	req.Header.Set(gitsource.HeaderRelaySignature, gitsource.SignRelay(key, body))
	resp, err := r.client.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return absent, errors.New("connection refused")
		}
		return retry, err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	switch c := resp.StatusCode; {
	case c/100 == 2:
		return acked, nil
	case c == http.StatusNotFound:
		return absent, errors.New("404: no relay endpoint at this URL")
	case c == http.StatusTooManyRequests || c/100 == 5:
		return retry, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	default:
		return refused, fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
}

func short(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
