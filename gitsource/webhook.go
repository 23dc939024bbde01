package gitsource

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WebhookConfig is the push endpoint (SPEC §2 `webhook`).
type WebhookConfig struct {
	// Listen is the address Run listens on, as ":9000". Required for Run.
	Listen string
	// Path is where events are accepted; default "/hook".
	Path string
	// SecretFile holds the shared secret of the forge's webhook. Required:
	// unsigned events are refused.
	SecretFile string
	// Ref is the followed ref (Config.Ref()); pushes to other refs are
	// acknowledged and ignored. "" accepts pushes to any ref.
	Ref string
	// MaxBody bounds a request body; default 5 MiB. Larger requests get
	// 413.
	MaxBody int64
}

// Equal reports whether two configs are the same.
func (c WebhookConfig) Equal(o WebhookConfig) bool { return c == o }

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
	var sig string
	switch f {
	case ForgeGitHub:
		sig = h.Get(HeaderGitHubSignature)
		if sig == "" {
			return ErrSignatureMissing
		}
		var ok bool
		if sig, ok = strings.CutPrefix(sig, "sha256="); !ok {
			return ErrSignatureInvalid
		}
	case ForgeGitea:
		sig = cmp.Or(h.Get(HeaderGiteaSignature), h.Get(HeaderForgejoSignature))
		if sig == "" {
			return ErrSignatureMissing
		}
	default:
		sig = h.Get(HeaderGenericSignature)
		if sig == "" {
			return ErrSignatureMissing
		}
		var ok bool
		if sig, ok = strings.CutPrefix(sig, "sha256="); !ok {
			return ErrSignatureInvalid
		}
	}
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return ErrSignatureInvalid
	}
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrSignatureInvalid
	}
	return nil
}

// ParseEvent reads the event of forge f from its headers and body (JSON,
// or a form with the JSON in "payload", as GitHub and Gitea can send). It
// does not check the signature.
func ParseEvent(f Forge, h http.Header, body []byte) (Event, error) {
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
	payload, err := payloadJSON(h, body)
	if err != nil {
		return ev, err
	}
	if len(payload) == 0 && f == ForgeGeneric {
		return ev, nil // a bare "look again"
	}
	var p struct {
		Ref        string `json:"ref"`
		After      string `json:"after"`
		ObjectKind string `json:"object_kind"`
	}
	if err := json.Unmarshal(payload, &p); err != nil {
		return ev, fmt.Errorf("%w: %s push: %v", ErrPayload, f, err)
	}
	if f == ForgeGitLab && p.ObjectKind != "push" && p.ObjectKind != "tag_push" {
		return ev, fmt.Errorf("%w: gitlab push hook with object_kind %q", ErrPayload, p.ObjectKind)
	}
	if p.Ref == "" && f != ForgeGeneric {
		return ev, fmt.Errorf("%w: %s push without a ref", ErrPayload, f)
	}
	if p.Ref != "" && !strings.HasPrefix(p.Ref, "refs/") {
		return ev, fmt.Errorf("%w: ref %q is not a full ref name", ErrPayload, p.Ref)
	}
	ev.Ref, ev.After = p.Ref, p.After
	return ev, nil
}

func payloadJSON(h http.Header, body []byte) ([]byte, error) {
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	if ct != "application/x-www-form-urlencoded" {
		return body, nil
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

// Webhook is the push endpoint: an http.Handler that checks the forge's
// signature, ignores pushes to other refs and pokes the trigger queue. It
// answers 202 at once; the fetch happens in the source's Next, never in
// the request.
type Webhook struct {
	cfg    WebhookConfig
	secret []byte
	notify func(Trigger)
	log    *slog.Logger
	reqs   *prometheus.CounterVec
}

var _ http.Handler = (*Webhook)(nil)

// NewWebhook reads the secret and returns the endpoint; notify receives a
// Trigger per accepted push (use a Queue's Poke or Git.Trigger) and must not
// block. opts.Queue is not used.
func NewWebhook(cfg WebhookConfig, notify func(Trigger), opts Options) (*Webhook, error) {
	cfg.Path = cmp.Or(cfg.Path, "/hook")
	cfg.MaxBody = cmp.Or(cfg.MaxBody, 5<<20)
	if cfg.SecretFile == "" {
		return nil, errors.New("webhook.secretFile: missing: unsigned webhooks are not accepted")
	}
	if notify == nil {
		return nil, errors.New("webhook: nothing to notify")
	}
	secret, err := readSecret(cfg.SecretFile)
	if err != nil {
		return nil, fmt.Errorf("webhook.secretFile: %w", err)
	}
	w := &Webhook{cfg: cfg, secret: []byte(secret), notify: notify, log: opts.Logger,
		reqs: register(opts.Registry, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricWebhookRequests, Help: "Webhook requests, by forge and result.",
		}, []string{"forge", "result"}))}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	return w, nil
}

// ServeHTTP handles one webhook delivery.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	forge := DetectForge(r.Header)
	reply := func(code int, result, msg string) {
		w.reqs.WithLabelValues(string(forge), result).Inc()
		if code >= 400 {
			w.log.Warn("webhook refused", "forge", string(forge), "status", code, "reason", msg, "remote", r.RemoteAddr)
		}
		rw.Header().Set("Content-Type", "text/plain; charset=utf-8")
		rw.WriteHeader(code)
		fmt.Fprintln(rw, msg)
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		reply(http.StatusMethodNotAllowed, "method", "only POST is accepted")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, w.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			reply(http.StatusRequestEntityTooLarge, "too-large", fmt.Sprintf("body over %d bytes", w.cfg.MaxBody))
			return
		}
		reply(http.StatusBadRequest, "bad-request", "reading the body failed")
		return
	}
	if err := CheckSignature(forge, r.Header, body, w.secret); err != nil {
		if errors.Is(err, ErrSignatureMissing) {
			reply(http.StatusUnauthorized, "unsigned", fmt.Sprintf("%s event without its signature header", forge))
			return
		}
		reply(http.StatusForbidden, "bad-signature", fmt.Sprintf("%s signature does not match the configured secret", forge))
		return
	}
	ev, err := ParseEvent(forge, r.Header, body)
	if err != nil {
		reply(http.StatusBadRequest, "bad-request", err.Error())
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
	w.notify(Trigger{Kind: TriggerWebhook, Detail: detail, At: time.Now()})
	w.log.Info("webhook accepted", "forge", string(forge), "ref", ev.Ref, "after", short(ev.After))
	reply(http.StatusAccepted, "accepted", "accepted")
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

// Serve serves the endpoint at cfg.Path on ln until ctx ends, then shuts
// down gracefully. It returns nil on cancellation and closes ln.
func (w *Webhook) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle(w.cfg.Path, w)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
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
	err := srv.Serve(ln)
	close(done)
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
