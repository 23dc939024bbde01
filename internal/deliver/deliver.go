// Package deliver holds what the packages that post to other services
// (forge's commit statuses, notify's notifications) share: one-line error
// summaries cut to a service's limit, jittered exponential backoff, and
// the wait a server asks for in Retry-After.
package deliver

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Summarize makes one message of an error: the first error only (the one
// a reviewer fixes first), prefixed with the count when there are several,
// as "3 errors, first: routes/blog.yaml:12: Route \"blog\":
// spec.http.backend: no Backend named \"web\"". An error that unwraps to a
// list (errors.Join, reconcile.Errors), even behind fmt.Errorf's %w, is
// walked depth-first to its first leaf; any other error gives its text.
// The count comes first so a cut never loses it.
func Summarize(err error) string {
	if err == nil {
		return ""
	}
	n, first, isList := firstLeaf(err)
	switch {
	case n > 1:
		return fmt.Sprintf("%d errors, first: %s", n, first.Error())
	case isList:
		return first.Error()
	}
	return err.Error()
}

// firstLeaf returns how many leaf errors err has, the first one, and
// whether a list was found. It looks through single wraps
// (fmt.Errorf("…: %w", list)) for a list; without one, err is its own
// single leaf.
func firstLeaf(err error) (int, error, bool) {
	switch x := err.(type) {
	case interface{ Unwrap() []error }:
		var first error
		n := 0
		for _, e := range x.Unwrap() {
			if e == nil {
				continue
			}
			c, f, _ := firstLeaf(e)
			if first == nil {
				first = f
			}
			n += c
		}
		if first != nil {
			return n, first, true
		}
	case interface{ Unwrap() error }:
		if inner := x.Unwrap(); inner != nil {
			if n, f, ok := firstLeaf(inner); ok {
				return n, f, true
			}
		}
	}
	return 1, err, false
}

// Cut makes s one line (every run of white space, newlines included,
// becomes one space), replaces invalid UTF-8, and shortens it to at most
// limit characters (code points, as forges and chat services count them), ending with
// "…" when something was cut. It never splits a character.
func Cut(s string, limit int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	b.Grow(min(len(s), 4*limit))
	n := 0
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			space = n > 0
			continue
		}
		if space {
			b.WriteByte(' ')
			n++
			space = false
		}
		b.WriteRune(r)
		n++
		if n > limit+1 {
			break // enough to know it must be cut
		}
	}
	out := b.String()
	if n <= limit {
		return out
	}
	// Keep limit-1 characters and the ellipsis.
	keep := 0
	for i := range out {
		if keep == limit-1 {
			return strings.TrimRight(out[:i], " ") + "…"
		}
		keep++
	}
	return out
}

// Backoff is the wait before attempt n+1 (n counts from 0): exponential
// from lo, capped at hi, with equal jitter (half fixed, half random from
// rnd, a number in [0, 1)) so many nodes retrying the same service spread
// out.
func Backoff(n int, lo, hi time.Duration, rnd func() float64) time.Duration {
	d := hi
	if n < 32 {
		if e := lo << n; e > 0 && e < hi {
			d = e
		}
	}
	return d/2 + time.Duration(rnd()*float64(d/2))
}

// RetryAfter is the wait a server asked for in Retry-After (seconds or an
// HTTP date, RFC 9110 §10.2.3), at most limit; ok is false when it asked
// nothing.
func RetryAfter(h http.Header, now time.Time, limit time.Duration) (d time.Duration, ok bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return min(time.Duration(min(s, int64(limit/time.Second)))*time.Second, limit), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 0), limit), true
	}
	return 0, false
}
