package gitsource

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gitedge/gitedge/internal/promreg"
	"github.com/prometheus/client_golang/prometheus"
)

// WebhookConfig is the push endpoint (the node config's `webhook` section). Zero values
// take the defaults given; cmd/gitedge sets only the first four.
//
// Whatever the number of clients, what requests not yet authenticated can
// hold is bounded: about MaxConns × 40 KiB (a connection's buffers, its
// goroutine's heap and headers of up to 16 KiB) plus MaxBodies × 96 KiB
// (a 32 KiB read buffer and the first 64 KiB of the body, kept for the
// parser; the rest is only hashed), about 12 MiB with the defaults. A
// request waiting for a body slot holds nothing more than its connection.
// TestWebhookFlood measures it (about 10 MiB under 300 hostile
// connections).
type WebhookConfig struct {
	// Listen is the address Run listens on, as ":9000". Required for Run.
	Listen string
	// Path is where events are accepted; default "/hook".
	Path string
	// SecretFile holds the shared secret of the forge's webhook. Required:
	// unsigned events are refused.
	SecretFile string
	// (It is read at start, which fails on a missing or empty file, and
	// again whenever it changes: a rotated secret is used from the next
	// delivery on, with no reload.)
	// Ref is the followed ref (Config.Ref()); pushes to other refs are
	// acknowledged and ignored. "" accepts pushes to any ref.
	Ref string

	// MaxBody bounds a request body; larger ones get 413. Default 2 MiB: a
	// push event of a routes repository is a few KiB; a large push (GitLab
	// lists at most 20 commits; GitHub up to thousands, with up to 5,000
	// paths per list) stays far below it. GitHub's own cap on a delivery
	// is 25 MB: raise MaxBody for a monorepo whose pushes list more.
	// Memory does not grow with it: bodies are hashed as they arrive.
	MaxBody int64
	// MaxConns bounds open connections; default 256. More wait in the
	// kernel's accept queue, first come, first served.
	MaxConns int
	// MaxConnsPerSource bounds the connections of one client address (an
	// IPv6 /64); default 32. More are closed at once.
	MaxConnsPerSource int
	// MaxBodies bounds request bodies read at once; default 16.
	MaxBodies int
	// MaxBodiesPerSource bounds the bodies one client address reads at
	// once; default 4. Behind a reverse proxy every request comes from
	// its address: raise it there.
	//
	// A request that finds no slot for it waits for one, at most
	// BodyTimeout + 1s, behind at most 4 × MaxBodies others (else 503; a
	// full queue makes room for an address waiting for fewer than the
	// greediest one) and MaxBodies others from its address (else 429).
	// Its wait cuts the body read for the longest once that has taken
	// over min(1s, BodyTimeout/2) (503 to it: a forge sends its body in
	// milliseconds), and a freed slot goes to the waiting request whose
	// address reads the fewest bodies.
	MaxBodiesPerSource int
	// HeaderTimeout bounds reading a request's headers; default 5s.
	HeaderTimeout time.Duration
	// BodyTimeout bounds reading a body once its slot is given; default
	// 5s (a forge sends its body in milliseconds, and expects an answer
	// within 10s). A body not read in time gets 408.
	BodyTimeout time.Duration
	// Deliveries is how many delivery ids are remembered, to recognise a
	// replayed delivery; default 4096.
	Deliveries int

	// The relay endpoint (relay.go), at RelayPath(Path): peers tell this
	// node of a new commit there. It is always served, with the relay
	// turned off too (a hint costs one look, and a fleet can switch node
	// by node); whether this node sends relays is gitsource/relay's
	// business.
	//
	// RelayKeyFile holds the relay key the nodes share; "" uses the
	// webhook secret (SecretFile). Re-read when it changes, as the secret.
	RelayKeyFile string
	// RelayWindow is how far a relay's time may be from this node's
	// clock; default 30s (DefaultRelayWindow).
	RelayWindow time.Duration
	// RelayNonces bounds the nonces remembered within the window;
	// default 4096 (DefaultRelayNonces).
	RelayNonces int
	// Known says whether the source already has commit (handed it over
	// or refused it): a relay naming it triggers nothing. nil: only the
	// commits relays already triggered a look for count. Git.Observed
	// fits.
	Known func(commit string) bool
}

// Validate checks what a node's webhook needs (Listen and SecretFile)
// and returns every problem found, named by its node-config field.
func (c WebhookConfig) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("webhook.listen: missing: the address to listen on, as :9000"))
	}
	if c.SecretFile == "" {
		errs = append(errs, errNoSecret)
	}
	if c.Path != "" && !strings.HasPrefix(c.Path, "/") {
		errs = append(errs, fmt.Errorf("webhook.path: %q: expected an absolute path, as /hook", c.Path))
	}
	return errors.Join(errs...)
}

var errNoSecret = errors.New("webhook.secretFile: missing: unsigned webhooks are not accepted")

// Forge is the sender of a webhook, told apart by its headers.
type Forge string

const (
	ForgeGitHub  Forge = "github"  // X-GitHub-Event, X-Hub-Signature-256: sha256=HMAC
	ForgeGitea   Forge = "gitea"   // X-Gitea-Event / X-Forgejo-Event, X-Gitea-Signature: HMAC
	ForgeGitLab  Forge = "gitlab"  // X-Gitlab-Event, X-Gitlab-Token: the secret itself
	ForgeGeneric Forge = "generic" // X-Gitedge-Signature-256: sha256=HMAC
)

// Header names of the signatures and events.
const (
	HeaderGitHubEvent      = "X-GitHub-Event"
	HeaderGitHubSignature  = "X-Hub-Signature-256"
	HeaderGiteaEvent       = "X-Gitea-Event"
	HeaderGiteaSignature   = "X-Gitea-Signature"
	HeaderForgejoEvent     = "X-Forgejo-Event"
	HeaderForgejoSignature = "X-Forgejo-Signature"
	HeaderGitLabEvent      = "X-Gitlab-Event"
	HeaderGitLabToken      = "X-Gitlab-Token"
	HeaderGenericEvent     = "X-Gitedge-Event"
	HeaderGenericSignature = "X-Gitedge-Signature-256"

	// The delivery ids, the same when a delivery is sent again.
	HeaderGitHubDelivery  = "X-GitHub-Delivery"
	HeaderGiteaDelivery   = "X-Gitea-Delivery"
	HeaderForgejoDelivery = "X-Forgejo-Delivery"
	HeaderGitLabUUID      = "X-Gitlab-Event-UUID"
	HeaderIdempotencyKey  = "Idempotency-Key" // GitLab: stable across its retries
	HeaderGenericDelivery = "X-Gitedge-Delivery"
)

// Event is what a webhook request says, once parsed.
type Event struct {
	Forge Forge
	// Kind is "push" for a push (branch or tag), "ping" for a forge's
	// test delivery, else the forge's event name.
	Kind string
	// Ref is the pushed ref, e.g. refs/heads/main; may be "" for a
	// generic event, which then means "look again".
	Ref string
	// After is the pushed commit id, if the payload says.
	After string
}

// Sentinel errors of webhook handling.
var (
	ErrSignatureMissing = errors.New("webhook: signature header missing")
	ErrSignatureInvalid = errors.New("webhook: signature does not match the secret")
	ErrPayload          = errors.New("webhook: payload not understood")
)

// DetectForge tells the sender of a webhook by its headers.
func DetectForge(h http.Header) Forge {
	switch {
	case h.Get(HeaderGiteaEvent) != "", h.Get(HeaderForgejoEvent) != "",
		h.Get(HeaderGiteaSignature) != "", h.Get(HeaderForgejoSignature) != "":
		return ForgeGitea // Gitea also sends X-Hub-Signature-256, so look for it first
	case h.Get(HeaderGitHubEvent) != "", h.Get(HeaderGitHubSignature) != "":
		return ForgeGitHub
	case h.Get(HeaderGitLabEvent) != "", h.Get(HeaderGitLabToken) != "":
		return ForgeGitLab
	}
	return ForgeGeneric
}

// CheckSignature checks a request of forge f against secret in constant
// time: an HMAC-SHA256 of the body for GitHub, Gitea/Forgejo and generic,
// the token itself for GitLab.
func CheckSignature(f Forge, h http.Header, body, secret []byte) error {
	if f == ForgeGitLab {
		return checkToken(h, secret)
	}
	want, err := signatureOf(f, h)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(want, mac.Sum(nil)) {
		return ErrSignatureInvalid
	}
	return nil
}

// checkToken checks GitLab's token header, which is the secret itself.
func checkToken(h http.Header, secret []byte) error {
	tok := h.Get(HeaderGitLabToken)
	if tok == "" {
		return ErrSignatureMissing
	}
	// Compare digests so neither the length nor the content leaks.
	a, b := sha256.Sum256([]byte(tok)), sha256.Sum256(secret)
	if subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return ErrSignatureInvalid
	}
	return nil
}

// signatureOf returns the HMAC-SHA256 a request of an HMAC forge claims,
// from its header alone: ErrSignatureMissing without one, and
// ErrSignatureInvalid when it cannot be one (not 64 hex digits), so that
// such a request is refused before its body is read.
func signatureOf(f Forge, h http.Header) ([]byte, error) {
	var sig string
	switch f {
	case ForgeGitHub:
		sig = h.Get(HeaderGitHubSignature)
		if sig == "" {
			return nil, ErrSignatureMissing
		}
		var ok bool
		if sig, ok = strings.CutPrefix(sig, "sha256="); !ok {
			return nil, ErrSignatureInvalid
		}
	case ForgeGitea:
		sig = cmp.Or(h.Get(HeaderGiteaSignature), h.Get(HeaderForgejoSignature))
		if sig == "" {
			return nil, ErrSignatureMissing
		}
	default:
		sig = h.Get(HeaderGenericSignature)
		if sig == "" {
			return nil, ErrSignatureMissing
		}
		var ok bool
		if sig, ok = strings.CutPrefix(sig, "sha256="); !ok {
			return nil, ErrSignatureInvalid
		}
	}
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil || len(got) != sha256.Size {
		return nil, ErrSignatureInvalid
	}
	return got, nil
}

// DeliveryID is the id the forge gives a delivery (the same when it is
// sent again), "" when the request has none.
func DeliveryID(f Forge, h http.Header) string {
	switch f {
	case ForgeGitHub:
		return h.Get(HeaderGitHubDelivery)
	case ForgeGitea:
		return cmp.Or(h.Get(HeaderGiteaDelivery), h.Get(HeaderForgejoDelivery), h.Get(HeaderGitHubDelivery))
	case ForgeGitLab:
		return cmp.Or(h.Get(HeaderIdempotencyKey), h.Get(HeaderGitLabUUID))
	}
	return h.Get(HeaderGenericDelivery)
}

// ParseEvent reads the event of forge f from its headers and body (JSON,
// or a form with the JSON in "payload", as GitHub and Gitea can send). It
// does not check the signature.
func ParseEvent(f Forge, h http.Header, body []byte) (Event, error) {
	return parseEvent(f, h, body, false)
}

// parseEvent is ParseEvent; with truncated, body is only the beginning of
// a longer one (already authenticated): the fields found there are used,
// and a push whose ref was not among them means "look again".
func parseEvent(f Forge, h http.Header, body []byte, truncated bool) (Event, error) {
	ev := Event{Forge: f}
	switch f {
	case ForgeGitHub:
		ev.Kind = h.Get(HeaderGitHubEvent)
	case ForgeGitea:
		ev.Kind = cmp.Or(h.Get(HeaderGiteaEvent), h.Get(HeaderForgejoEvent))
	case ForgeGitLab:
		switch k := h.Get(HeaderGitLabEvent); k {
		case "Push Hook", "Tag Push Hook":
			ev.Kind = "push"
		default:
			ev.Kind = k
		}
	default:
		ev.Kind = cmp.Or(h.Get(HeaderGenericEvent), "push")
	}
	if ev.Kind == "" {
		return ev, fmt.Errorf("%w: no event header for %s", ErrPayload, f)
	}
	if ev.Kind != "push" {
		return ev, nil // ping and others: nothing to read
	}
	payload, err := payloadJSON(h, body, truncated)
	if err != nil {
		return ev, err
	}
	if len(payload) == 0 && f == ForgeGeneric {
		return ev, nil // a bare "look again"
	}
	var p pushFields
	if truncated {
		p, err = pushFieldsPrefix(payload)
	} else {
		err = json.Unmarshal(payload, &p)
	}
	if err != nil {
		return ev, fmt.Errorf("%w: %s push: %v", ErrPayload, f, err)
	}
	if f == ForgeGitLab && p.ObjectKind != "push" && p.ObjectKind != "tag_push" && (!truncated || p.ObjectKind != "") {
		return ev, fmt.Errorf("%w: gitlab push hook with object_kind %q", ErrPayload, p.ObjectKind)
	}
	if p.Ref == "" && f != ForgeGeneric && !truncated {
		return ev, fmt.Errorf("%w: %s push without a ref", ErrPayload, f)
	}
	if p.Ref != "" && !strings.HasPrefix(p.Ref, "refs/") {
		return ev, fmt.Errorf("%w: ref %q is not a full ref name", ErrPayload, p.Ref)
	}
	ev.Ref, ev.After = p.Ref, p.After
	return ev, nil
}

// pushFields are the fields of a push payload the webhook uses.
type pushFields struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	ObjectKind string `json:"object_kind"`
}

// pushFieldsPrefix reads pushFields from the beginning of a JSON object
// cut off anywhere: the fields met before the cut count. Every forge puts
// them first.
func pushFieldsPrefix(payload []byte) (pushFields, error) {
	var p pushFields
	dec := json.NewDecoder(bytes.NewReader(payload))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return p, errors.New("not a JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return p, nil // cut off
		}
		var field *string
		switch tok {
		case "ref":
			field = &p.Ref
		case "after":
			field = &p.After
		case "object_kind":
			field = &p.ObjectKind
		}
		var v json.RawMessage // another field's value, skipped
		if err := dec.Decode(&v); err != nil {
			return p, nil // cut off
		}
		if field != nil && string(v) != "null" {
			if err := json.Unmarshal(v, field); err != nil {
				return p, fmt.Errorf("%q: %v", tok, err)
			}
		}
	}
	return p, nil
}

func payloadJSON(h http.Header, body []byte, truncated bool) ([]byte, error) {
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return body, nil
	}
	if truncated {
		return formPayloadPrefix(body)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, fmt.Errorf("%w: form body: %v", ErrPayload, err)
	}
	p := form.Get("payload")
	if p == "" {
		return nil, fmt.Errorf("%w: form body without a payload field", ErrPayload)
	}
	return []byte(p), nil
}

// formPayloadPrefix decodes the beginning of the "payload" field of a form
// body cut off anywhere (an escape cut in two is dropped).
func formPayloadPrefix(body []byte) ([]byte, error) {
	for field := range strings.SplitSeq(string(body), "&") {
		v, ok := strings.CutPrefix(field, "payload=")
		if !ok {
			continue
		}
		if i := strings.LastIndexByte(v, '%'); i >= 0 && i > len(v)-3 {
			v = v[:i]
		}
		p, err := url.QueryUnescape(v)
		if err != nil {
			return nil, fmt.Errorf("%w: form body: %v", ErrPayload, err)
		}
		return []byte(p), nil
	}
	return nil, fmt.Errorf("%w: form body without a payload field in its first %d KiB", ErrPayload, keepBytes>>10)
}

// keepBytes is how much of a body is kept for the parser; the rest is
// only hashed. The fields used come first in every forge's payload.
const keepBytes = 64 << 10

// readBufs holds the buffers bodies are read through.
var readBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Webhook is the push endpoint: an http.Handler that checks the forge's
// signature, ignores pushes to other refs and replayed deliveries, and
// pokes the trigger queue. It answers at once; the fetch happens in the
// source's Next, never in the request. How it bounds what unauthenticated
// requests hold is told at WebhookConfig and in admission.go.
type Webhook struct {
	cfg      WebhookConfig
	secret   *secretFile
	notify   func(Trigger)
	log      *slog.Logger
	reqs     *prometheus.CounterVec
	refused  *prometheus.CounterVec
	inflight prometheus.Gauge
	admit    *admission
	seen     *deliveries
	refusals *refusalLog
	relay    *relayReceiver
}

var _ http.Handler = (*Webhook)(nil)

// refusalLogInterval is how often refused requests are summed up in the
// log.
const refusalLogInterval = 10 * time.Second

// NewWebhook reads the secret and returns the endpoint; notify receives a
// Trigger per accepted push (use a Queue's Poke or Git.Trigger) and must not
// block.
func NewWebhook(cfg WebhookConfig, notify func(Trigger), opts Options) (*Webhook, error) {
	cfg.Path = cmp.Or(cfg.Path, "/hook")
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 2<<20)
	cfg.MaxConns = cmp.Or(cfg.MaxConns, 256)
	cfg.MaxConnsPerSource = cmp.Or(cfg.MaxConnsPerSource, 32)
	cfg.MaxBodies = cmp.Or(cfg.MaxBodies, 16)
	cfg.MaxBodiesPerSource = cmp.Or(cfg.MaxBodiesPerSource, 4)
	cfg.HeaderTimeout = cmp.Or(cfg.HeaderTimeout, 5*time.Second)
	cfg.BodyTimeout = cmp.Or(cfg.BodyTimeout, 5*time.Second)
	cfg.Deliveries = cmp.Or(cfg.Deliveries, 4096)
	cfg.RelayWindow = cmp.Or(cfg.RelayWindow, DefaultRelayWindow)
	cfg.RelayNonces = cmp.Or(cfg.RelayNonces, DefaultRelayNonces)
	if cfg.SecretFile == "" {
		return nil, errNoSecret
	}
	if notify == nil {
		return nil, errors.New("webhook: nothing to notify")
	}
	secret, err := openSecretFile(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("webhook.secretFile: %w", err)
	}
	w := &Webhook{cfg: cfg, secret: secret, notify: notify, log: opts.Logger,
		reqs: promreg.Register("gitsource", opts.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricWebhookRequests, Help: "Webhook requests, by forge and result.",
		}, []string{"forge", "result"})),
		refused: promreg.Register("gitsource", opts.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricWebhookRefused, Help: "Webhook requests and connections refused, by reason.",
		}, []string{"reason"})),
		inflight: promreg.Register("gitsource", opts.Registry, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricWebhookBodies, Help: "Webhook request bodies being read.",
		})),
		seen: newDeliveries(cfg.Deliveries),
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.log = w.log.With("subsystem", "gitsource")
	// A slot is held at most BodyTimeout: a request waiting a little
	// longer is sure to see one freed.
	w.admit = newAdmission(cfg.MaxBodies, cfg.MaxBodiesPerSource, cfg.BodyTimeout+time.Second,
		min(time.Second, cfg.BodyTimeout/2), w.inflight.Add)
	w.refusals = newRefusalLog(w.log, refusalLogInterval)
	if w.relay, err = newRelayReceiver(cfg, secret, notify, w.log, w.refusals, opts.Registry); err != nil {
		return nil, err
	}
	return w, nil
}

// Refusal reasons of the webhook, besides admission's, as metric labels
// (PascalCase, as every reason).
const (
	refusedMethod       = "Method"
	refusedTooLarge     = "TooLarge"
	refusedUnsigned     = "Unsigned"
	refusedBadSignature = "BadSignature"
	refusedTimeout      = "Timeout"
	refusedBadRequest   = "BadRequest"
	refusedConnections  = "Connections" // over MaxConnsPerSource, closed at accept
	refusedPath         = "Path"        // not the webhook's path
)

// ServeHTTP handles one webhook delivery.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	forge := DetectForge(r.Header)
	src := sourceKey(r.RemoteAddr)
	reply := func(code int, result, msg string) {
		w.reqs.WithLabelValues(string(forge), result).Inc()
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(code)
		fmt.Fprintln(rw, msg)
	}
	refuse := func(code int, reason, msg string) {
		w.refused.WithLabelValues(reason).Inc()
		w.refusals.add(reason, src, "forge", string(forge), "status", code, "detail", msg)
		dropBody(rw)
		if code == http.StatusServiceUnavailable || code == http.StatusTooManyRequests {
			rw.Header().Set("Retry-After", strconv.Itoa(int(w.cfg.BodyTimeout.Seconds())+1))
		}
		reply(code, "refused", msg) // the reason counts in MetricWebhookRefused
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		refuse(http.StatusMethodNotAllowed, refusedMethod, "only POST is accepted")
		return
	}
	secret := w.secret.get(w.log)
	// Check what the headers alone can tell before reading any body.
	var want []byte
	var err error
	if forge == ForgeGitLab {
		err = checkToken(r.Header, secret)
	} else {
		want, err = signatureOf(forge, r.Header)
	}
	switch {
	case errors.Is(err, ErrSignatureMissing):
		refuse(http.StatusUnauthorized, refusedUnsigned, fmt.Sprintf("%s event without its signature header", forge))
		return
	case err != nil:
		refuse(http.StatusForbidden, refusedBadSignature, fmt.Sprintf("%s signature does not match the configured secret", forge))
		return
	case r.ContentLength > w.cfg.MaxBody:
		refuse(http.StatusRequestEntityTooLarge, refusedTooLarge, fmt.Sprintf("body over %d bytes", w.cfg.MaxBody))
		return
	}
	rc := http.NewResponseController(rw)
	var mac hash.Hash
	var sl *slot
	if forge != ForgeGitLab {
		// Not authenticated until the whole body is hashed: take a slot.
		// (A GitLab request is, by its token: it waits behind no one.)
		var busy string
		sl, busy = w.admit.acquire(src)
		if busy != "" {
			code, msg := http.StatusServiceUnavailable, "busy: too many deliveries at once; try again"
			if busy == refusedSourceBusy {
				code, msg = http.StatusTooManyRequests, "too many deliveries at once from your address; try again"
			}
			refuse(code, busy, msg)
			return
		}
		defer sl.release()
		sl.setCut(func() { _ = rc.SetReadDeadline(time.Now()) })
		mac = hmac.New(sha256.New, secret)
	}
	_ = rc.SetReadDeadline(time.Now().Add(w.cfg.BodyTimeout)) // httptest cannot: fine
	body, truncated, err := w.readBody(r.Body, mac)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			refuse(http.StatusRequestEntityTooLarge, refusedTooLarge, fmt.Sprintf("body over %d bytes", w.cfg.MaxBody))
		case errors.Is(err, os.ErrDeadlineExceeded) && sl != nil && sl.wasPreempted():
			refuse(http.StatusServiceUnavailable, refusedPreempted, "body too slow: its slot went to a waiting delivery")
		case errors.Is(err, os.ErrDeadlineExceeded):
			refuse(http.StatusRequestTimeout, refusedTimeout, fmt.Sprintf("body not received within %s", w.cfg.BodyTimeout))
		default:
			refuse(http.StatusBadRequest, refusedBadRequest, "reading the body failed")
		}
		return
	}
	if mac != nil && !hmac.Equal(want, mac.Sum(nil)) {
		refuse(http.StatusForbidden, refusedBadSignature, fmt.Sprintf("%s signature does not match the configured secret", forge))
		return
	}
	// Authenticated from here on.
	ev, err := parseEvent(forge, r.Header, body, truncated)
	if err != nil {
		w.reqs.WithLabelValues(string(forge), refusedBadRequest).Inc()
		w.log.Warn("webhook payload not understood", "forge", string(forge), "err", err)
		reply(http.StatusBadRequest, refusedBadRequest, err.Error())
		return
	}
	if id := DeliveryID(forge, r.Header); id != "" && w.seen.add(string(forge)+"\x00"+id) {
		w.log.Debug("webhook delivery already seen", "forge", string(forge), "delivery", id)
		reply(http.StatusOK, "duplicate", "duplicate delivery "+id+": already handled")
		return
	}
	switch {
	case ev.Kind == "ping":
		reply(http.StatusOK, "ping", "pong")
		return
	case ev.Kind != "push":
		reply(http.StatusOK, "ignored", fmt.Sprintf("ignored: %s event %q", forge, ev.Kind))
		return
	case w.cfg.Ref != "" && ev.Ref != "" && ev.Ref != w.cfg.Ref:
		reply(http.StatusOK, "ignored", fmt.Sprintf("ignored: push to %s; following %s", ev.Ref, w.cfg.Ref))
		return
	}
	detail := strings.TrimSpace(fmt.Sprintf("%s push %s %s", forge, ev.Ref, short(ev.After)))
	if isCommitID(ev.After) {
		w.relay.recent.add(ev.After) // a peer's relay of it has nothing new to say
	}
	w.notify(Trigger{Kind: TriggerWebhook, Detail: detail, At: time.Now(), Ref: ev.Ref, Commit: ev.After})
	w.log.Info("webhook accepted", "forge", string(forge), "ref", ev.Ref, "after", short(ev.After), "delivery", DeliveryID(forge, r.Header))
	reply(http.StatusAccepted, "accepted", "accepted")
}

// dropBody makes sure whatever is left of a refused request's body is
// not read: the connection closes after the answer. (net/http would
// otherwise read up to 256 KiB of it, at the sender's pace, to reuse the
// connection; "Connection: close" alone does not stop that.)
func dropBody(rw http.ResponseWriter) {
	rw.Header().Set("Connection", "close")
	_ = http.NewResponseController(rw).SetReadDeadline(time.Now())
}

// readBody reads a body of at most MaxBody bytes through mac (when not
// nil) and returns its first keepBytes, and whether there was more.
func (w *Webhook) readBody(body io.Reader, mac hash.Hash) (kept []byte, truncated bool, err error) {
	bp := readBufs.Get().(*[]byte)
	defer readBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		k, err := body.Read(buf)
		if k > 0 {
			if n += int64(k); n > w.cfg.MaxBody {
				return nil, false, &http.MaxBytesError{Limit: w.cfg.MaxBody}
			}
			if mac != nil {
				mac.Write(buf[:k])
			}
			room := keepBytes - len(kept)
			if k > room {
				truncated = true
			}
			if room > 0 {
				kept = append(kept, buf[:min(k, room)]...)
			}
		}
		if err == io.EOF {
			return kept, truncated, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// Run listens on cfg.Listen and serves until ctx ends.
func (w *Webhook) Run(ctx context.Context) error {
	if w.cfg.Listen == "" {
		return errors.New("webhook.listen: missing")
	}
	ln, err := net.Listen("tcp", w.cfg.Listen)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	return w.Serve(ctx, ln)
}

// Relay is the relay endpoint alone (served by Serve at
// RelayPath(cfg.Path)), for a caller that mounts it elsewhere.
func (w *Webhook) Relay() http.Handler { return w.relay }

// Serve serves the endpoint at cfg.Path, and the relay endpoint at
// RelayPath(cfg.Path), on ln until ctx ends, then shuts
// down gracefully. It returns nil on cancellation and closes ln.
func (w *Webhook) Serve(ctx context.Context, ln net.Listener) error {
	// Another path gets 404 and loses its connection, so that no body
	// is read there either.
	relayPath := RelayPath(w.cfg.Path)
	handler := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == relayPath {
			w.relay.ServeHTTP(rw, r)
			return
		}
		if r.URL.Path != w.cfg.Path {
			w.refused.WithLabelValues(refusedPath).Inc()
			w.refusals.add(refusedPath, sourceKey(r.RemoteAddr), "path", r.URL.Path)
			dropBody(rw)
			http.NotFound(rw, r)
			return
		}
		w.ServeHTTP(rw, r)
	})
	limited := newConnLimiter(ln, w.cfg.MaxConns, w.cfg.MaxConnsPerSource, func(src string) {
		w.refused.WithLabelValues(refusedConnections).Inc()
		w.refusals.add(refusedConnections, src, "limit", w.cfg.MaxConnsPerSource)
	})
	// A request may wait for a body slot, then read its body: each at
	// most BodyTimeout; ReadTimeout and WriteTimeout only back that up.
	inHandler := 2*w.cfg.BodyTimeout + 5*time.Second
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: w.cfg.HeaderTimeout,
		ReadTimeout:       w.cfg.HeaderTimeout + inHandler,
		WriteTimeout:      inHandler,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(w.log.Handler(), slog.LevelWarn),
	}
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx) //nolint:errcheck // best effort; Serve returns
	})
	w.log.Info("webhook listening", "addr", ln.Addr().String(), "path", w.cfg.Path)
	err := srv.Serve(limited)
	close(done)
	wg.Wait()
	w.refusals.flush()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// secretFile is the webhook's secret, read again whenever its file
// changes (another inode, size or modification time): rotating the secret
// is writing the file, no reload needed. A file that cannot be read or is
// empty keeps the secret in use, said once per change in the log.
type secretFile struct {
	path string

	mu     sync.Mutex
	secret []byte
	stat   os.FileInfo // of the file the secret was read from (or last failed at)
}

func openSecretFile(path string) (*secretFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("credential file: %w", err)
	}
	s, err := readSecret(path)
	if err != nil {
		return nil, err
	}
	return &secretFile{path: path, secret: []byte(s), stat: st}, nil
}

// get returns the secret, re-read first when the file changed.
func (f *secretFile) get(log *slog.Logger) []byte {
	st, err := os.Stat(f.path)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || sameStat(st, f.stat) {
		return f.secret
	}
	f.stat = st
	s, err := readSecret(f.path)
	if err != nil {
		log.Error("webhook.secretFile changed but cannot be used; keeping the secret in use", "file", f.path, "error", err)
		return f.secret
	}
	f.secret = []byte(s)
	log.Info("webhook secret re-read: its file changed", "file", f.path)
	return f.secret
}

func sameStat(a, b os.FileInfo) bool {
	return os.SameFile(a, b) && a.Size() == b.Size() && a.ModTime().Equal(b.ModTime())
}
