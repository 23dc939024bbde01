package gitsource

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitedge/gitedge/internal/testkit"
)

const testSecret = "webhook-shared-secret-7f3a"

func hmacHex(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// deliverySeq numbers the deliveries forgeRequest makes, each its own.
var deliverySeq atomic.Int64

// forgeRequest shapes a delivery as each forge sends it, with a delivery
// id of its own. sig is "good", "bad" or "missing".
func forgeRequest(t testing.TB, target string, f Forge, event string, body []byte, sig string) *http.Request {
	t.Helper()
	id := fmt.Sprintf("72d3162e-cc78-11e3-81ab-%012x", deliverySeq.Add(1))
	r, err := http.NewRequest(http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	secret := []byte(testSecret)
	if sig == "bad" {
		secret = []byte("not-the-secret")
	}
	mac := hmacHex(secret, body)
	switch f {
	case ForgeGitHub:
		r.Header.Set("User-Agent", "GitHub-Hookshot/abc123")
		r.Header.Set(HeaderGitHubEvent, event)
		r.Header.Set(HeaderGitHubDelivery, id)
		if sig != "missing" {
			r.Header.Set(HeaderGitHubSignature, "sha256="+mac)
		}
	case ForgeGitea:
		r.Header.Set(HeaderGiteaEvent, event)
		r.Header.Set(HeaderGiteaDelivery, id)
		if sig != "missing" {
			r.Header.Set(HeaderGiteaSignature, mac)
			// Gitea sends the GitHub-style header too; it must not confuse.
			r.Header.Set(HeaderGitHubSignature, "sha256="+mac)
		}
	case ForgeGitLab:
		r.Header.Set(HeaderGitLabEvent, event)
		r.Header.Set("X-Gitlab-Instance", "https://gitlab.example.org")
		r.Header.Set(HeaderGitLabUUID, id)
		r.Header.Set(HeaderIdempotencyKey, id)
		if sig != "missing" {
			r.Header.Set(HeaderGitLabToken, string(secret))
		}
	case ForgeGeneric:
		r.Header.Set(HeaderGenericDelivery, id)
		if sig != "missing" {
			r.Header.Set(HeaderGenericSignature, "sha256="+mac)
		}
	}
	return r
}

func testdataPayload(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "webhook", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recorder collects the triggers a webhook sends.
type recorder struct {
	mu sync.Mutex
	ts []Trigger
}

func (r *recorder) notify(t Trigger) { r.mu.Lock(); r.ts = append(r.ts, t); r.mu.Unlock() }
func (r *recorder) count() int       { r.mu.Lock(); defer r.mu.Unlock(); return len(r.ts) }

func newTestWebhook(t testing.TB, ref string, notify func(Trigger)) (*Webhook, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := NewWebhook(WebhookConfig{SecretFile: testkit.TempFile(t, "secret", testSecret+"\n"), Ref: ref, MaxBody: 64 << 10},
		notify, Options{Registry: reg, Logger: testkit.Logger(t, slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	return w, reg
}

// pushes are a push delivery of every forge: its event header and the
// payload in testdata.
var pushes = []struct {
	forge   Forge
	event   string
	payload string
}{
	{ForgeGitHub, "push", "github-push.json"},
	{ForgeGitea, "push", "gitea-push.json"},
	{ForgeGitLab, "Push Hook", "gitlab-push.json"},
	{ForgeGeneric, "", "generic-push.json"},
}

func TestWebhookForges(t *testing.T) {
	t.Parallel()
	for _, f := range pushes {
		body := testdataPayload(t, f.payload)
		other := bytes.Replace(body, []byte(`"refs/heads/main"`), []byte(`"refs/heads/feature/x"`), 1)
		for _, tc := range []struct {
			name     string
			body     []byte
			sig      string
			code     int
			triggers int
		}{
			{"good signature", body, "good", http.StatusAccepted, 1},
			{"bad signature", body, "bad", http.StatusForbidden, 0},
			{"missing signature", body, "missing", http.StatusUnauthorized, 0},
			{"other branch", other, "good", http.StatusOK, 0},
		} {
			t.Run(string(f.forge)+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				var rec recorder
				w, reg := newTestWebhook(t, "refs/heads/main", rec.notify)
				rw := httptest.NewRecorder()
				w.ServeHTTP(rw, forgeRequest(t, "/hook", f.forge, f.event, tc.body, tc.sig))
				if rw.Code != tc.code || rec.count() != tc.triggers {
					t.Fatalf("status %d (%s), %d triggers; want %d, %d", rw.Code, strings.TrimSpace(rw.Body.String()), rec.count(), tc.code, tc.triggers)
				}
				if strings.Contains(rw.Body.String(), testSecret) {
					t.Fatal("response shows the secret")
				}
				if tc.triggers == 1 {
					got := rec.ts[0]
					if got.Kind != TriggerWebhook || !strings.Contains(got.Detail, string(f.forge)+" push refs/heads/main 1f0e2d3c4b5a") {
						t.Fatalf("trigger %+v", got)
					}
				}
				if n, err := testutilCount(reg, MetricWebhookRequests); err != nil || n != 1 {
					t.Fatalf("webhook request metric = %d, %v", n, err)
				}
			})
		}
	}
}

func testutilCount(reg *prometheus.Registry, name string) (int, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return 0, err
	}
	n := 0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				n += int(m.GetCounter().GetValue())
			}
		}
	}
	return n, nil
}

func TestWebhookRequests(t *testing.T) {
	t.Parallel()
	push := testdataPayload(t, "github-push.json")
	form := []byte("payload=" + url.QueryEscape(string(push)))
	cases := []struct {
		name     string
		req      func() *http.Request
		ref      string
		code     int
		triggers int
	}{
		{"github ping", func() *http.Request {
			return forgeRequest(t, "/hook", ForgeGitHub, "ping", testdataPayload(t, "github-ping.json"), "good")
		}, "refs/heads/main", http.StatusOK, 0},
		{"github form-encoded", func() *http.Request {
			r := forgeRequest(t, "/hook", ForgeGitHub, "push", form, "good")
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			return r
		}, "refs/heads/main", http.StatusAccepted, 1},
		{"github other event", func() *http.Request {
			return forgeRequest(t, "/hook", ForgeGitHub, "issues", []byte(`{"action":"opened"}`), "good")
		}, "refs/heads/main", http.StatusOK, 0},
		{"gitlab tag push to the followed tag", func() *http.Request {
			return forgeRequest(t, "/hook", ForgeGitLab, "Tag Push Hook", testdataPayload(t, "gitlab-tag-push.json"), "good")
		}, "refs/tags/v1.0.0", http.StatusAccepted, 1},
		{"gitlab tag push while following a branch", func() *http.Request {
			return forgeRequest(t, "/hook", ForgeGitLab, "Tag Push Hook", testdataPayload(t, "gitlab-tag-push.json"), "good")
		}, "refs/heads/main", http.StatusOK, 0},
		{"forgejo headers", func() *http.Request {
			body := testdataPayload(t, "gitea-push.json")
			r := forgeRequest(t, "/hook", ForgeGeneric, "", body, "missing")
			r.Header.Set(HeaderForgejoEvent, "push")
			r.Header.Set(HeaderForgejoSignature, hmacHex([]byte(testSecret), body))
			return r
		}, "refs/heads/main", http.StatusAccepted, 1},
		{"generic empty body", func() *http.Request {
			return forgeRequest(t, "/hook", ForgeGeneric, "", nil, "good")
		}, "refs/heads/main", http.StatusAccepted, 1},
		{"signed garbage", func() *http.Request {
			return forgeRequest(t, "/hook", ForgeGitHub, "push", []byte("{not json"), "good")
		}, "refs/heads/main", http.StatusBadRequest, 0},
		{"github push without ref", func() *http.Request {
			return forgeRequest(t, "/hook", ForgeGitHub, "push", []byte(`{"after":"abc"}`), "good")
		}, "refs/heads/main", http.StatusBadRequest, 0},
		{"get", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/hook", nil) }, "", http.StatusMethodNotAllowed, 0},
		{"too large", func() *http.Request {
			big := append(bytes.Repeat([]byte(" "), 70<<10), push...)
			return forgeRequest(t, "/hook", ForgeGitHub, "push", big, "good")
		}, "refs/heads/main", http.StatusRequestEntityTooLarge, 0},
		{"bad hex", func() *http.Request {
			r := forgeRequest(t, "/hook", ForgeGitHub, "push", push, "good")
			r.Header.Set(HeaderGitHubSignature, "sha256=zz")
			return r
		}, "refs/heads/main", http.StatusForbidden, 0},
		{"sha1 only", func() *http.Request {
			r := forgeRequest(t, "/hook", ForgeGitHub, "push", push, "missing")
			r.Header.Set("X-Hub-Signature", "sha1=0000")
			return r
		}, "refs/heads/main", http.StatusUnauthorized, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			w, _ := newTestWebhook(t, tc.ref, rec.notify)
			rw := httptest.NewRecorder()
			w.ServeHTTP(rw, tc.req())
			if rw.Code != tc.code || rec.count() != tc.triggers {
				t.Fatalf("status %d (%s), %d triggers; want %d, %d", rw.Code, strings.TrimSpace(rw.Body.String()), rec.count(), tc.code, tc.triggers)
			}
		})
	}
}

func TestWebhookConfig(t *testing.T) {
	t.Parallel()
	if _, err := NewWebhook(WebhookConfig{}, func(Trigger) {}, Options{}); err == nil {
		t.Fatal("no secret file accepted")
	}
	if _, err := NewWebhook(WebhookConfig{SecretFile: testkit.TempFile(t, "s", "\n")}, func(Trigger) {}, Options{}); err == nil {
		t.Fatal("empty secret accepted")
	}
	_, err := NewWebhook(WebhookConfig{SecretFile: filepath.Join(t.TempDir(), "none")}, func(Trigger) {}, Options{})
	if err == nil || !strings.Contains(err.Error(), "webhook.secretFile") {
		t.Fatalf("missing secret file: %v", err)
	}
}

// TestWebhookBurst serves the webhook on loopback in front of a source
// following git http-backend: 50 pushes notified at once cause at most two
// fetches, every delivery is answered 202, and the new commit arrives.
func TestWebhookBurst(t *testing.T) {
	t.Parallel()
	u, h, _ := servedUpstream(t, "one", map[string]string{"a.yaml": "one\n"})
	g, _ := newSource(t, Config{URL: h.URL})
	next(t, g)
	_, packs0 := h.counts()

	w, _ := newTestWebhook(t, g.cfg.Ref(), g.Trigger)
	hookURL := "http://" + serveWebhook(t, w) + "/hook"

	c2 := u.commit("two", map[string]string{"a.yaml": "two\n"})
	u.push("main")
	body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q}`, c2))

	got := make(chan Revision, 1)
	go func() { got <- next(t, g) }() // the loop, waiting
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for i := range 50 {
		wg.Go(func() {
			// As from a forge's pool of senders: one address each.
			resp, err := clientFrom(i).Do(forgeRequest(t, hookURL, ForgeGitHub, "push", body, "good"))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusAccepted {
			t.Fatalf("a delivery got %d", c)
		}
	}
	select {
	case rev := <-got:
		if rev.Commit != c2 || rev.Trigger.Kind != TriggerWebhook {
			t.Fatalf("got %s by %s", short(rev.Commit), rev.Trigger.Kind)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no revision 30s after the burst")
	}
	quiet(t, g, 500*time.Millisecond) // drain what the burst left pending
	if _, packs := h.counts(); packs-packs0 > 2 || packs-packs0 < 1 {
		t.Fatalf("50 webhooks caused %d fetches (upload-pack POSTs), want 1 or 2", packs-packs0)
	}
	if n := counter(t, g.queue.coalesced); n < 40 {
		t.Fatalf("only %d of 50 triggers coalesced", n)
	}
}

// clientFrom is an HTTP client whose connections come from loopback
// address 127.0.0.(i%250+2): the tests' stand-in for distinct senders.
func clientFrom(i int) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(i%250+2))}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}, Timeout: 30 * time.Second}
}

// TestWebhookSecretRotation: writing a new secret into the file is enough
// (it used to be read once, at start, so a rotated secret kept being
// refused until a restart): the new secret is accepted from the next
// delivery, the old one refused; a file emptied or removed meanwhile
// keeps the secret in use.
func TestWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	file := testkit.TempFile(t, "secret", "old-secret\n")
	var rec recorder
	w, err := NewWebhook(WebhookConfig{SecretFile: file, Ref: "refs/heads/main"}, rec.notify,
		Options{Registry: prometheus.NewRegistry(), Logger: testkit.Logger(t, slog.LevelDebug)})
	if err != nil {
		t.Fatal(err)
	}
	push := testdataPayload(t, "github-push.json")
	deliver := func(secret string) int {
		r := forgeRequest(t, "/hook", ForgeGitHub, "push", push, "good")
		r.Header.Set(HeaderGitHubSignature, "sha256="+hmacHex([]byte(secret), push))
		rw := httptest.NewRecorder()
		w.ServeHTTP(rw, r)
		return rw.Code
	}
	steps := []struct {
		name, write string // write: the file's new content; "-" removes it
		secret      string
		code        int
	}{
		{"the secret at start", "", "old-secret", http.StatusAccepted},
		{"rotated: the new secret", "new-secret\n", "new-secret", http.StatusAccepted},
		{"rotated: the old secret", "", "old-secret", http.StatusForbidden},
		{"emptied: the secret in use stays", "\n", "new-secret", http.StatusAccepted},
		{"removed: the secret in use stays", "-", "new-secret", http.StatusAccepted},
		{"written again", "third-secret", "third-secret", http.StatusAccepted},
	}
	for _, s := range steps {
		switch s.write {
		case "":
		case "-":
			if err := os.Remove(file); err != nil {
				t.Fatal(err)
			}
		default:
			// As an operator or a secrets agent does: a new file renamed
			// over the old one.
			tmp := file + ".tmp"
			if err := os.WriteFile(tmp, []byte(s.write), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, file); err != nil {
				t.Fatal(err)
			}
		}
		if code := deliver(s.secret); code != s.code {
			t.Errorf("%s: status %d, want %d", s.name, code, s.code)
		}
	}
}
