package haproxy

import (
	"fmt"
	"strconv"
	"time"
)

// ParseTime reads an HAProxy time: a whole number with an optional unit,
// us, ms, s, m, h or d; a plain number is milliseconds.
func ParseTime(s string) (time.Duration, error) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("bad time %q: expected a whole number with an optional unit (us, ms, s, m, h, d; none means ms)", s)
	}
	n, err := strconv.ParseInt(s[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad time %q: too large", s)
	}
	var unit time.Duration
	switch s[i:] {
	case "", "ms":
		unit = time.Millisecond
	case "us":
		unit = time.Microsecond
	case "s":
		unit = time.Second
	case "m":
		unit = time.Minute
	case "h":
		unit = time.Hour
	case "d":
		unit = 24 * time.Hour
	default:
		return 0, fmt.Errorf("bad time %q: unknown unit %q (expected us, ms, s, m, h or d; none means ms)", s, s[i:])
	}
	// HAProxy keeps times in milliseconds in a signed 32-bit int.
	if limit := int64(1<<31-1) * int64(time.Millisecond); n > limit/int64(unit) {
		return 0, fmt.Errorf("bad time %q: more than HAProxy's limit of 2147483647ms (about 24.8 days)", s)
	}
	return time.Duration(n) * unit, nil
}
