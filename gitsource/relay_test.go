package gitsource

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gitedge/gitedge/internal/testkit"
)

const (
	commitA = "1f0e2d3c4b5a69788796a5b4c3d2e1f00112233a"
	commitB = "2a0e2d3c4b5a69788796a5b4c3d2e1f00112233b"
)

// relayReq is one relay a case sends: a message, the key it is signed
// with (nil: no signature header) and how its body is changed after
// signing.
type relayReq struct {
	msg    RelayMessage
	key    []byte
	method string
	body   []byte // sent instead of msg's body when set
	code   int
	result string
}

func relayMsg(commit string, age time.Duration) RelayMessage {
	return NewRelayMessage("lb-0", "refs/heads/main", commit, time.Now().Add(-age))
}

func sendRelay(t testing.TB, addr string, rq relayReq) (int, string) {
	t.Helper()
	body := rq.body
	if body == nil {
		body = rq.msg.Marshal()
	}
	req, err := http.NewRequest(cmpStr(rq.method, http.MethodPost), "http://"+addr+RelayPath("/hook"), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if rq.key != nil {
		req.Header.Set(HeaderRelaySignature, SignRelay(rq.key, body))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func cmpStr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestRelayEndpoint: each case sends its relays in order to a fresh
// webhook; every answer has its status and result (counted in
// MetricRelaysReceived), and only accepted ones trigger a look, named
// as a relay.
func TestRelayEndpoint(t *testing.T) {
	t.Parallel()
	key := []byte(testSecret)
	relayKey := []byte("a-relay-key-apart-from-the-secret")
	valid := relayMsg(commitA, 0)
	unknownField := []byte(`{"from":"lb-0","commit":"` + commitA + `","time":1,"nonce":"00112233445566778899aabbccddeeff","files":"x"}`)
	ok := func(m RelayMessage) relayReq {
		return relayReq{msg: m, key: key, code: http.StatusAccepted, result: RelayAccepted}
	}
	cases := []struct {
		name     string
		relayKey bool            // webhook.relay.keyFile set to relayKey
		known    map[string]bool // commits the source already has
		reqs     []relayReq
		triggers int
	}{
		{name: "valid triggers a look", reqs: []relayReq{ok(valid)}, triggers: 1},
		{name: "forged signature", reqs: []relayReq{{msg: valid, key: []byte("guessed"), code: http.StatusForbidden, result: RelayRefusedSignature}}},
		{name: "no signature", reqs: []relayReq{{msg: valid, code: http.StatusUnauthorized, result: RelayRefusedSignature}}},
		{name: "webhook secret when a relay key is set", relayKey: true,
			reqs: []relayReq{{msg: valid, key: key, code: http.StatusForbidden, result: RelayRefusedSignature}}},
		{name: "relay key", relayKey: true,
			reqs: []relayReq{{msg: valid, key: relayKey, code: http.StatusAccepted, result: RelayAccepted}}, triggers: 1},
		{name: "stale timestamp", reqs: []relayReq{{msg: relayMsg(commitA, 5*time.Minute), key: key, code: http.StatusForbidden, result: RelayRefusedStale}}},
		{name: "timestamp from the future", reqs: []relayReq{{msg: relayMsg(commitA, -5*time.Minute), key: key, code: http.StatusForbidden, result: RelayRefusedStale}}},
		{name: "replayed nonce", reqs: []relayReq{ok(valid), {msg: valid, key: key, code: http.StatusConflict, result: RelayRefusedReplay}}, triggers: 1},
		{name: "replayed nonce for another commit", reqs: []relayReq{ok(valid),
			{msg: RelayMessage{From: "lb-0", Ref: valid.Ref, Commit: commitB, Time: valid.Time, Nonce: valid.Nonce}, key: key, code: http.StatusConflict, result: RelayRefusedReplay}}, triggers: 1},
		{name: "duplicate commit", reqs: []relayReq{ok(valid), {msg: relayMsg(commitA, 0), key: key, code: http.StatusOK, result: RelayDuplicate}}, triggers: 1},
		{name: "two commits", reqs: []relayReq{ok(valid), ok(relayMsg(commitB, 0))}, triggers: 2},
		{name: "commit the source has", known: map[string]bool{commitA: true},
			reqs: []relayReq{{msg: valid, key: key, code: http.StatusOK, result: RelayDuplicate}}},
		{name: "other branch", reqs: []relayReq{{msg: RelayMessage{From: "lb-0", Ref: "refs/heads/dev", Commit: commitA, Time: valid.Time, Nonce: valid.Nonce},
			key: key, code: http.StatusOK, result: RelayIgnored}}},
		{name: "unknown field", reqs: []relayReq{{body: unknownField, key: key, code: http.StatusBadRequest, result: RelayRefusedMalformed}}},
		{name: "not POST", reqs: []relayReq{{msg: valid, key: key, method: http.MethodGet, code: http.StatusMethodNotAllowed, result: RelayRefusedMalformed}}},
		{name: "too large", reqs: []relayReq{{body: bytes.Repeat([]byte(" "), maxRelayBody+1), key: key, code: http.StatusRequestEntityTooLarge, result: RelayRefusedMalformed}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			cfg := WebhookConfig{Path: "/hook", Ref: "refs/heads/main"}
			if tc.relayKey {
				cfg.RelayKeyFile = testkit.TempFile(t, "relay.key", string(relayKey)+"\n")
			}
			cfg.Known = func(c string) bool { return tc.known[c] }
			w, reg := guardWebhook(t, cfg, rec.notify, nil)
			addr := serveWebhook(t, w)
			want := map[string]int{}
			for i, rq := range tc.reqs {
				code, msg := sendRelay(t, addr, rq)
				if code != rq.code {
					t.Fatalf("relay %d: status %d (%s), want %d", i, code, msg, rq.code)
				}
				if strings.Contains(msg, testSecret) || strings.Contains(msg, string(relayKey)) {
					t.Fatalf("relay %d: the answer shows a key: %s", i, msg)
				}
				want[rq.result]++
			}
			for result, n := range want {
				if got := testkit.MetricValue(t, reg, MetricRelaysReceived, map[string]string{"result": result}); int(got) != n {
					t.Errorf("%s{result=%q} = %v, want %d", MetricRelaysReceived, result, got, n)
				}
			}
			if rec.count() != tc.triggers {
				t.Fatalf("%d triggers, want %d: %+v", rec.count(), tc.triggers, rec.ts)
			}
			for _, tr := range rec.ts {
				// A relay's look is a relay's: the node never passes it on.
				if tr.Kind != TriggerRelay || tr.Commit == "" || !strings.Contains(tr.Detail, "relay from lb-0") {
					t.Errorf("trigger %+v, want a relay naming its commit and sender", tr)
				}
			}
			// The webhook itself is untouched by the relay endpoint.
			if n := testkit.MetricValue(t, reg, MetricWebhookRequests, nil); n != 0 {
				t.Errorf("%v webhook requests counted for relays", n)
			}
		})
	}
}

// TestRelayPushBodyIsNoRelay: a forge's signed push body, signed the
// forge's way with the same secret, is refused at the relay path (the
// relay MAC has its own domain).
func TestRelayPushBodyIsNoRelay(t *testing.T) {
	t.Parallel()
	var rec recorder
	w, reg := guardWebhook(t, WebhookConfig{Path: "/hook"}, rec.notify, nil)
	addr := serveWebhook(t, w)
	body := relayMsg(commitA, 0).Marshal()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/hook/relay", bytes.NewReader(body))
	req.Header.Set(HeaderRelaySignature, "sha256="+hmacHex([]byte(testSecret), body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || rec.count() != 0 {
		t.Fatalf("status %d, %d triggers; want 403 and none", resp.StatusCode, rec.count())
	}
	if n := testkit.MetricValue(t, reg, MetricRelaysReceived, map[string]string{"result": RelayRefusedSignature}); n != 1 {
		t.Fatalf("refused-signature = %v, want 1", n)
	}
}

// TestNonceCacheBounded: a full cache forgets its oldest nonce and
// refuses, from then on, every message not newer than it: a forgotten
// nonce cannot be replayed.
func TestNonceCacheBounded(t *testing.T) {
	t.Parallel()
	c := newNonceCache(3)
	now := time.Now()
	at := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	steps := []struct {
		nonce string
		at    int64
		want  nonceResult
	}{
		{"n1", at(-3 * time.Second), nonceFresh},
		{"n2", at(-2 * time.Second), nonceFresh},
		{"n3", at(-1 * time.Second), nonceFresh},
		{"n2", at(-2 * time.Second), nonceReplayed},
		{"n4", at(0), nonceFresh}, // n1 forgotten: the floor is its time
		{"n1", at(-3 * time.Second), nonceStale},
		{"n5", at(-4 * time.Second), nonceStale}, // older than the floor
		{"n6", at(-time.Minute), nonceStale},     // outside the window
		{"n7", at(time.Minute), nonceStale},
	}
	for i, s := range steps {
		if got := c.check(s.nonce, s.at, now, 30*time.Second); got != s.want {
			t.Fatalf("step %d (%s): %v, want %v", i, s.nonce, got, s.want)
		}
	}
	if c.order.Len() > 3 || len(c.seen) > 3 {
		t.Fatalf("cache holds %d/%d nonces, bound 3", c.order.Len(), len(c.seen))
	}
	// Entries past the window go at the next check.
	c.check("n8", now.Add(2*time.Minute).UnixMilli(), now.Add(2*time.Minute), 30*time.Second)
	if c.order.Len() != 1 {
		t.Fatalf("%d nonces kept past the window, want 1", c.order.Len())
	}
}

// TestNonceCacheFutureFirst: a message dated ahead of now (within the
// window) that arrives first and is forgotten first must not lift the
// floor above now, which would refuse every relay from a peer whose clock
// is right.
func TestNonceCacheFutureFirst(t *testing.T) {
	t.Parallel()
	c := newNonceCache(2)
	now := time.Now()
	at := func(d time.Duration) int64 { return now.Add(d).UnixMilli() }
	for i, s := range []struct {
		nonce string
		at    int64
		want  nonceResult
	}{
		{"ahead", at(20 * time.Second), nonceFresh},
		{"n1", at(-2 * time.Second), nonceFresh},
		{"n2", at(-1 * time.Second), nonceFresh}, // forgets n1, the oldest by time
		{"n3", at(0), nonceFresh},                // forgets n2
		{"n1", at(-2 * time.Second), nonceStale}, // forgotten: not replayable
		{"ahead", at(20 * time.Second), nonceReplayed},
	} {
		if got := c.check(s.nonce, s.at, now, 30*time.Second); got != s.want {
			t.Fatalf("step %d (%s): %v, want %v", i, s.nonce, got, s.want)
		}
	}
}

// TestRelayFetches: against a real remote, a relay of a new commit makes
// the source fetch it (the revision names the relay); a relay of the
// commit it now has fetches nothing (not even a ref listing); a relay
// naming a commit the remote does not have changes nothing: the look
// finds the head unchanged.
func TestRelayFetches(t *testing.T) {
	t.Parallel()
	u, c1 := upstreamOne(t)
	g, reg := newSource(t, Config{URL: u.bare})
	if rev := next(t, g); rev.Commit != c1 {
		t.Fatalf("first revision %s, want %s", rev.Commit, c1)
	}
	w, wreg := guardWebhook(t, WebhookConfig{Path: "/hook", Ref: "refs/heads/main", Known: g.Observed}, g.Trigger, nil)
	addr := serveWebhook(t, w)
	key := []byte(testSecret)

	c2 := u.commit("two", map[string]string{"a.yaml": "two\n"})
	u.push("main")
	if code, msg := sendRelay(t, addr, relayReq{msg: relayMsg(c2, 0), key: key}); code != http.StatusAccepted {
		t.Fatalf("relay of %s: %d %s", short(c2), code, msg)
	}
	rev := next(t, g)
	if rev.Commit != c2 || rev.Trigger.Kind != TriggerRelay || rev.Trigger.Commit != c2 {
		t.Fatalf("revision %s by %s %q, want %s by the relay", short(rev.Commit), rev.Trigger.Kind, rev.Trigger.Detail, short(c2))
	}
	refAds := testkit.MetricValue(t, reg, MetricRefAdvertisements, nil)
	fetches := testkit.MetricValue(t, reg, MetricFetches, nil)

	// The commit it has: answered as a duplicate, nothing looked at.
	if code, _ := sendRelay(t, addr, relayReq{msg: relayMsg(c2, 0), key: key}); code != http.StatusOK {
		t.Fatalf("relay of the commit the source has: %d, want 200", code)
	}
	if n := testkit.MetricValue(t, wreg, MetricRelaysReceived, map[string]string{"result": RelayDuplicate}); n != 1 {
		t.Fatalf("duplicates = %v, want 1", n)
	}

	// A commit the remote does not have: one look, the head unchanged,
	// nothing handed over.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var got Revision
	var err error
	wg.Go(func() { got, err = g.Next(ctx) })
	if code, _ := sendRelay(t, addr, relayReq{msg: relayMsg(strings.Repeat("ab", 20), 0), key: key}); code != http.StatusAccepted {
		t.Fatalf("relay of a commit the remote lacks: %d, want 202 (a hint: the look decides)", code)
	}
	testkit.WaitFor(t, "the look the relay triggered", func() bool {
		return testkit.MetricValue(t, reg, MetricFetchSkipped, nil) >= 1
	})
	cancel()
	wg.Wait()
	if err == nil {
		t.Fatalf("a relay naming a missing commit handed over %s", short(got.Commit))
	}
	if n := testkit.MetricValue(t, reg, MetricRefAdvertisements, nil); n != refAds+1 {
		t.Fatalf("ref listings %v → %v, want one more (the missing commit's look only)", refAds, n)
	}
	if n := testkit.MetricValue(t, reg, MetricFetches, nil); n != fetches {
		t.Fatalf("fetches %v → %v, want none after the relay-triggered one", fetches, n)
	}
}

// TestRelayAfterWebhook: a relay of the commit a push webhook already
// named (both nodes got the forge's webhook) is a duplicate: the webhook's
// look covers it.
func TestRelayAfterWebhook(t *testing.T) {
	t.Parallel()
	var rec recorder
	w, reg := guardWebhook(t, WebhookConfig{Path: "/hook", Ref: "refs/heads/main"}, rec.notify, nil)
	addr := serveWebhook(t, w)
	resp, err := http.DefaultClient.Do(forgeRequest(t, "http://"+addr+"/hook", ForgeGitHub, "push", testdataPayload(t, "github-push.json"), "good"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("push: %d", resp.StatusCode)
	}
	code, msg := sendRelay(t, addr, relayReq{msg: relayMsg("1f0e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c", 0), key: []byte(testSecret)})
	if code != http.StatusOK || rec.count() != 1 {
		t.Fatalf("relay after the webhook: %d %s, %d triggers; want 200 duplicate and the webhook's trigger only", code, msg, rec.count())
	}
	if n := testkit.MetricValue(t, reg, MetricRelaysReceived, map[string]string{"result": RelayDuplicate}); n != 1 {
		t.Fatalf("duplicates = %v, want 1", n)
	}
}

func TestRelayPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{"": "/hook/relay", "/hook": "/hook/relay", "/": "/relay", "/a/b/": "/a/b/relay"} {
		if got := RelayPath(in); got != want {
			t.Errorf("RelayPath(%q) = %q, want %q", in, got, want)
		}
	}
}
