package forge

import (
	"net/http"
	"strconv"
	"time"
)

// backoff is the wait before attempt n+1 (n counts from 0): exponential
// from lo, capped at hi, with equal jitter (half fixed, half random) so
// many nodes retrying the same forge spread out.
func backoff(n int, lo, hi time.Duration, rnd func() float64) time.Duration {
	d := hi
	if n < 32 {
		if e := lo << n; e > 0 && e < hi {
			d = e
		}
	}
	return d/2 + time.Duration(rnd()*float64(d/2))
}

// serverWait is how long the forge asked us to wait, from Retry-After
// (seconds or an HTTP date, RFC 9110 §10.2.3) or, when GitHub says the
// primary rate limit is spent (x-ratelimit-remaining: 0), until
// x-ratelimit-reset (UTC epoch seconds). ok is false when it asked nothing.
func serverWait(h http.Header, now time.Time) (time.Duration, bool) {
	if v := h.Get("Retry-After"); v != "" {
		if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
			return time.Duration(min(s, maxServerWait)) * time.Second, true
		}
		if t, err := http.ParseTime(v); err == nil {
			return clampWait(t.Sub(now)), true
		}
	}
	if h.Get("X-Ratelimit-Remaining") == "0" {
		if s, err := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64); err == nil {
			return clampWait(time.Unix(s, 0).Sub(now) + time.Second), true
		}
	}
	return 0, false
}

// maxServerWait caps a server-requested wait (seconds); GiveUpAfter
// decides whether waiting that long is still worth it.
const maxServerWait = 24 * 3600

func clampWait(d time.Duration) time.Duration {
	return min(max(d, 0), maxServerWait*time.Second)
}
