package gitsource

import (
	"bytes"
	"container/list"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitedge/gitedge/internal/promreg"
)

// A relay is one node telling another "commit X is on branch B": a hint
// that makes the receiver look at the remote now instead of at its next
// poll. It carries no files; the receiver's own fetch and signature
// verification decide what it applies. It is sent (package
// gitsource/relay) as a small JSON body to the peer's webhook listener at
// RelayPath(webhook.path), signed with HMAC-SHA256 over a domain tag and
// the body (RelayMAC), with a timestamp and a random nonce: the receiver
// refuses a message older or newer than its window (±30s by default: the
// nodes' clocks must agree that well, NTP does) and a nonce it has
// already seen within it, so a captured message cannot be replayed.

// HeaderRelaySignature carries "sha256=" and the hex HMAC of a relay.
const HeaderRelaySignature = "X-Gitedge-Relay-Signature"

// relayDomain separates a relay's MAC from every other use of the same
// key (a forge's webhook signs its bodies with the same secret): a signed
// push body is never a valid relay, nor the other way round.
const relayDomain = "gitedge-relay-v1\n"

// maxRelayBody bounds a relay's body; a real one is about 200 bytes.
const maxRelayBody = 4 << 10

// Relay defaults.
const (
	DefaultRelayWindow = 30 * time.Second
	DefaultRelayNonces = 4096
)

// RelayPath is where a webhook listening at webhookPath takes relays:
// the webhook's path followed by /relay ("/hook" → "/hook/relay").
func RelayPath(webhookPath string) string {
	if webhookPath == "" {
		webhookPath = "/hook"
	}
	return strings.TrimSuffix(webhookPath, "/") + "/relay"
}

// RelayMessage is what a relay says. Its JSON form is the request body.
type RelayMessage struct {
	// From names the sending node (its name in spec.nodes), for logs.
	From string `json:"from"`
	// Ref is the ref the commit is on, e.g. refs/heads/main; "" when the
	// sender follows a commit pin.
	Ref string `json:"ref,omitempty"`
	// Commit is the full commit id (40 or 64 hex digits, lower case).
	Commit string `json:"commit"`
	// Time is when the message was made, in Unix milliseconds.
	Time int64 `json:"time"`
	// Nonce is random, 32 hex digits: no two messages share one.
	Nonce string `json:"nonce"`
}

// Sentinel errors of relay parsing.
var ErrRelayMessage = errors.New("relay: message not understood")

// NewRelayMessage makes a message of from about commit on ref, dated now,
// with a fresh nonce.
func NewRelayMessage(from, ref, commit string, now time.Time) RelayMessage {
	var b [16]byte
	rand.Read(b[:])
	return RelayMessage{From: from, Ref: ref, Commit: commit, Time: now.UnixMilli(), Nonce: hex.EncodeToString(b[:])}
}

// Marshal returns the message's body.
func (m RelayMessage) Marshal() []byte {
	b, _ := json.Marshal(m) // strings and an int: cannot fail
	return b
}

// ParseRelay reads a relay's body strictly: a JSON object with exactly
// the fields of RelayMessage (unknown ones refused), a sender name, a
// full commit id, a ref under refs/ (or none), a positive time and a
// nonce of 16 to 64 hex digits. It does not check the signature.
func ParseRelay(body []byte) (RelayMessage, error) {
	var m RelayMessage
	if len(body) > maxRelayBody {
		return m, fmt.Errorf("%w: body over %d bytes", ErrRelayMessage, maxRelayBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return RelayMessage{}, fmt.Errorf("%w: %v", ErrRelayMessage, err)
	}
	if dec.More() {
		return RelayMessage{}, fmt.Errorf("%w: more than one JSON value", ErrRelayMessage)
	}
	if _, err := dec.Token(); err != io.EOF {
		return RelayMessage{}, fmt.Errorf("%w: trailing data after the JSON object", ErrRelayMessage)
	}
	var problems []string
	if m.From == "" || len(m.From) > 253 || strings.ContainsFunc(m.From, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		problems = append(problems, "from: expected the sender's node name")
	}
	if !isCommitID(m.Commit) {
		problems = append(problems, "commit: expected a full commit id (40 or 64 lower-case hex digits)")
	}
	if m.Ref != "" && (!strings.HasPrefix(m.Ref, "refs/") || len(m.Ref) > 1024 || strings.ContainsFunc(m.Ref, func(r rune) bool { return r <= ' ' || r == 0x7f })) {
		problems = append(problems, "ref: expected a full ref name, as refs/heads/main")
	}
	if m.Time <= 0 {
		problems = append(problems, "time: expected Unix milliseconds")
	}
	if n := len(m.Nonce); n < 16 || n > 64 || !isLowerHex(m.Nonce) {
		problems = append(problems, "nonce: expected 16 to 64 lower-case hex digits")
	}
	if len(problems) > 0 {
		return RelayMessage{}, fmt.Errorf("%w: %s", ErrRelayMessage, strings.Join(problems, "; "))
	}
	return m, nil
}

func isCommitID(s string) bool {
	return (len(s) == 40 || len(s) == 64) && isLowerHex(s) && strings.Trim(s, "0") != ""
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// RelayMAC is the HMAC-SHA256 of a relay body under key, as sent in
// HeaderRelaySignature after "sha256=".
func RelayMAC(key, body []byte) []byte {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(relayDomain))
	mac.Write(body)
	return mac.Sum(nil)
}

// SignRelay returns the HeaderRelaySignature value of body under key.
func SignRelay(key, body []byte) string {
	return "sha256=" + hex.EncodeToString(RelayMAC(key, body))
}

// Results of a received relay, the values of MetricRelaysReceived's
// result label.
const (
	RelayAccepted         = "accepted"          // a look was triggered
	RelayDuplicate        = "duplicate"         // the commit is known or already looked for
	RelayIgnored          = "ignored"           // another ref than the one followed
	RelayRefusedSignature = "refused-signature" // no signature, or not the relay key's
	RelayRefusedStale     = "refused-stale"     // its time is outside the window
	RelayRefusedReplay    = "refused-replay"    // its nonce was seen within the window
	RelayRefusedMalformed = "refused-malformed" // not POST, too large, not a relay message
)

// relayReceiver is the relay endpoint of a Webhook.
type relayReceiver struct {
	key         *secretFile
	window      time.Duration
	bodyTimeout time.Duration
	ref         string
	known       func(string) bool
	notify      func(Trigger)
	log         *slog.Logger
	refusals    *refusalLog
	received    *prometheus.CounterVec
	nonces      *nonceCache
	recent      *deliveries // commits a relay already triggered a look for
	now         func() time.Time
}

func newRelayReceiver(cfg WebhookConfig, secret *secretFile, notify func(Trigger), log *slog.Logger, refusals *refusalLog, reg prometheus.Registerer) (*relayReceiver, error) {
	key := secret
	if cfg.RelayKeyFile != "" {
		var err error
		if key, err = openSecretFile(cfg.RelayKeyFile); err != nil {
			return nil, fmt.Errorf("webhook.relay.keyFile: %w", err)
		}
	}
	return &relayReceiver{
		key: key, window: cfg.RelayWindow, bodyTimeout: cfg.BodyTimeout, ref: cfg.Ref, known: cfg.Known, notify: notify, log: log, refusals: refusals,
		received: promreg.Register("gitsource", reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRelaysReceived, Help: "Relays received from peers, by result.",
		}, []string{"result"})),
		nonces: newNonceCache(cfg.RelayNonces),
		recent: newDeliveries(256),
		now:    time.Now,
	}, nil
}

// ServeHTTP handles one relay.
func (rr *relayReceiver) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	src := sourceKey(r.RemoteAddr)
	reply := func(code int, result, msg string) {
		rr.received.WithLabelValues(result).Inc()
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(code)
		fmt.Fprintln(rw, msg)
	}
	refuse := func(code int, result, msg string, attrs ...any) {
		rr.refusals.add("relay "+result, src, append([]any{"status", code, "detail", msg}, attrs...)...)
		dropBody(rw)
		reply(code, result, msg)
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, RelayRefusedMalformed, "only POST is accepted")
		return
	}
	sig := r.Header.Get(HeaderRelaySignature)
	if sig == "" {
		refuse(http.StatusUnauthorized, RelayRefusedSignature, "relay without its "+HeaderRelaySignature+" header")
		return
	}
	want, err := hex.DecodeString(strings.TrimPrefix(sig, "sha256="))
	if err != nil || !strings.HasPrefix(sig, "sha256=") || len(want) != sha256.Size {
		refuse(http.StatusForbidden, RelayRefusedSignature, "relay signature is not sha256=<64 hex digits>")
		return
	}
	if r.ContentLength > maxRelayBody {
		refuse(http.StatusRequestEntityTooLarge, RelayRefusedMalformed, fmt.Sprintf("body over %d bytes", maxRelayBody))
		return
	}
	_ = http.NewResponseController(rw).SetReadDeadline(time.Now().Add(rr.bodyTimeout)) // httptest cannot: fine
	body, err := io.ReadAll(io.LimitReader(r.Body, maxRelayBody+1))
	if err != nil {
		refuse(http.StatusBadRequest, RelayRefusedMalformed, "reading the body failed")
		return
	}
	if len(body) > maxRelayBody {
		refuse(http.StatusRequestEntityTooLarge, RelayRefusedMalformed, fmt.Sprintf("body over %d bytes", maxRelayBody))
		return
	}
	if !hmac.Equal(want, RelayMAC(rr.key.get(rr.log), body)) {
		refuse(http.StatusForbidden, RelayRefusedSignature, "relay signature does not match the relay key (webhook.relay.keyFile, else webhook.secretFile): the nodes must share it")
		return
	}
	// Authenticated from here on.
	m, err := ParseRelay(body)
	if err != nil {
		refuse(http.StatusBadRequest, RelayRefusedMalformed, err.Error())
		return
	}
	now := rr.now()
	switch rr.nonces.check(m.Nonce, m.Time, now, rr.window) {
	case nonceStale:
		skew := now.Sub(time.UnixMilli(m.Time)).Round(time.Millisecond)
		refuse(http.StatusForbidden, RelayRefusedStale, fmt.Sprintf("relay dated %s from now, outside ±%s: check the nodes' clocks (NTP)", skew, rr.window), "from", m.From)
		return
	case nonceReplayed:
		refuse(http.StatusConflict, RelayRefusedReplay, "relay nonce already seen: a replayed message", "from", m.From)
		return
	}
	switch {
	case rr.ref != "" && m.Ref != "" && m.Ref != rr.ref:
		reply(http.StatusOK, RelayIgnored, fmt.Sprintf("ignored: %s is on %s; following %s", short(m.Commit), m.Ref, rr.ref))
		return
	case rr.known != nil && rr.known(m.Commit), rr.recent.add(m.Commit):
		rr.log.Debug("relay of a known commit: nothing to fetch", "from", m.From, "commit", short(m.Commit))
		reply(http.StatusOK, RelayDuplicate, "duplicate: "+short(m.Commit)+" already known")
		return
	}
	rr.notify(Trigger{Kind: TriggerRelay, Detail: strings.TrimSpace(fmt.Sprintf("relay from %s: %s %s", m.From, m.Ref, short(m.Commit))),
		At: now, Ref: m.Ref, Commit: m.Commit})
	rr.log.Info("relay accepted", "from", m.From, "ref", m.Ref, "commit", short(m.Commit))
	reply(http.StatusAccepted, RelayAccepted, "accepted")
}

// nonceCache remembers the nonces of the relays accepted within the
// window, at most max of them. When full, the one with the oldest time is
// forgotten and its time becomes a floor: a message not newer than it is
// refused as stale, so a forgotten nonce can never be replayed. Oldest by
// the message's time, not by arrival: forgetting a message dated ahead
// (a peer's clock, within the window) first would raise the floor above
// now and refuse every relay. Only authenticated messages reach it. Safe
// for concurrent use.
type nonceCache struct {
	mu    sync.Mutex
	max   int
	order *list.List // of nonceEntry, by time
	seen  map[string]struct{}
	floor int64 // Unix ms; messages at or before it are stale
}

type nonceEntry struct {
	nonce string
	at    int64 // the message's time, Unix ms
}

type nonceResult int

const (
	nonceFresh nonceResult = iota
	nonceStale
	nonceReplayed
)

func newNonceCache(max int) *nonceCache {
	return &nonceCache{max: max, order: list.New(), seen: map[string]struct{}{}}
}

// check records nonce of a message dated at (Unix ms) and says whether it
// is fresh, outside the window around now, or seen already.
func (c *nonceCache) check(nonce string, at int64, now time.Time, window time.Duration) nonceResult {
	c.mu.Lock()
	defer c.mu.Unlock()
	lo, hi := now.Add(-window).UnixMilli(), now.Add(window).UnixMilli()
	// Entries older than the window can never match a fresh message.
	for e := c.order.Front(); e != nil && e.Value.(nonceEntry).at < lo; e = c.order.Front() {
		delete(c.seen, e.Value.(nonceEntry).nonce)
		c.order.Remove(e)
	}
	if at < lo || at > hi || at <= c.floor {
		return nonceStale
	}
	if _, ok := c.seen[nonce]; ok {
		return nonceReplayed
	}
	for c.order.Len() >= c.max {
		e := c.order.Front()
		old := e.Value.(nonceEntry)
		delete(c.seen, old.nonce)
		c.order.Remove(e)
		c.floor = max(c.floor, old.at)
	}
	c.seen[nonce] = struct{}{}
	// Messages come in nearly in time order: find the place from the back.
	e := c.order.Back()
	for e != nil && e.Value.(nonceEntry).at > at {
		e = e.Prev()
	}
	if e == nil {
		c.order.PushFront(nonceEntry{nonce, at})
	} else {
		c.order.InsertAfter(nonceEntry{nonce, at}, e)
	}
	return nonceFresh
}

// ReadRelayKey reads a relay key (or the webhook secret) as the relay
// endpoint does: the file's content without its trailing newline; an
// empty file is an error.
func ReadRelayKey(file string) ([]byte, error) {
	s, err := readSecret(file)
	return []byte(s), err
}
