package failover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// Backoff of the netlink link watch's resubscriptions.
const (
	watchMinWait = time.Second
	watchMaxWait = time.Minute
)

// resubscribe runs once until ctx ends, and again after each failure,
// waiting from minWait doubling up to maxWait (back to minWait after a
// subscription that lasted longer than maxWait). A failure is reported to
// w when it differs from the previous one: a watch refused for good (no
// CAP_NET_ADMIN) says so once, not every second.
func resubscribe(ctx context.Context, w Watcher, once func(context.Context, Watcher) error, minWait, maxWait time.Duration) {
	wait := minWait
	last := ""
	for {
		start := time.Now()
		err := once(ctx, w)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > maxWait {
			wait, last = minWait, ""
		}
		if err == nil {
			err = errors.New("ended")
		}
		if msg := err.Error(); msg != last {
			last = msg
			hint := ""
			if errors.Is(err, os.ErrPermission) {
				hint = " (the process lacks CAP_NET_ADMIN?): interface and address changes are not followed meanwhile"
			}
			w.Error(fmt.Errorf("netlink subscription failed: %w%s; resubscribing with backoff up to %s, this error is not logged again while it repeats",
				err, hint, maxWait))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(wait*2, maxWait)
	}
}
