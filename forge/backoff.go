package forge

import (
	"net/http"
	"strconv"
	"time"

	"github.com/gitedge/gitedge/internal/deliver"
)

// serverWait is how long the forge asked us to wait, from Retry-After
// (seconds or an HTTP date, RFC 9110 §10.2.3) or, when GitHub says the
// primary rate limit is spent (x-ratelimit-remaining: 0), until
// x-ratelimit-reset (UTC epoch seconds). ok is false when it asked nothing.
func serverWait(h http.Header, now time.Time) (time.Duration, bool) {
	if d, ok := deliver.RetryAfter(h, now, maxServerWait*time.Second); ok {
		return d, true
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
