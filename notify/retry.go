package notify

import (
	"net/http"
	"strconv"
	"time"
)

// backoff is the wait before attempt n+1 (n from 0): exponential from lo,
// capped at hi, with equal jitter so many nodes spread out.
func backoff(n int, lo, hi time.Duration, rnd func() float64) time.Duration {
	d := hi
	if n < 32 {
		if e := lo << n; e > 0 && e < hi {
			d = e
		}
	}
	return d/2 + time.Duration(rnd()*float64(d/2))
}

// maxServerWait caps the wait a receiver may ask for; MaxAttempts still
// bounds the total.
const maxServerWait = 10 * time.Minute

// retryAfter is the wait a 429 or 503 asked for in Retry-After (seconds or
// an HTTP date, RFC 9110 §10.2.3); ok is false when it asked nothing.
func retryAfter(h http.Header, now time.Time) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return min(time.Duration(min(s, 1<<30))*time.Second, maxServerWait), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), maxServerWait), true
	}
	return 0, false
}
