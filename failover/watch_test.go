package failover

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// errWatcher records the errors a link watch reports.
type errWatcher struct {
	mu   sync.Mutex
	errs []string
}

func (w *errWatcher) Link(string, bool)           {}
func (w *errWatcher) Recreated(string)            {}
func (w *errWatcher) AddrRemoved(int, netip.Addr) {}
func (w *errWatcher) Error(err error) {
	w.mu.Lock()
	w.errs = append(w.errs, err.Error())
	w.mu.Unlock()
}
func (w *errWatcher) reported() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

var _ Watcher = (*errWatcher)(nil)

// TestLinkWatchRefusedIsReportedOnce: a subscription refused for good
// (EPERM without CAP_NET_ADMIN) is retried with backoff and reported once
// with what it means, not once a second (it used to log a WARN every
// second forever); a different failure is reported again.
func TestLinkWatchRefusedIsReportedOnce(t *testing.T) {
	var (
		mu    sync.Mutex
		calls int
		gaps  []time.Duration
		last  time.Time
	)
	const refusals = 12
	done := make(chan struct{})
	once := func(ctx context.Context, _ Watcher) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if !last.IsZero() {
			gaps = append(gaps, time.Since(last))
		}
		last = time.Now()
		switch {
		case calls <= refusals:
			return syscall.EPERM
		case calls == refusals+1:
			return errors.New("netlink: message truncated")
		}
		close(done)
		<-ctx.Done()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &errWatcher{}
	stopped := make(chan struct{})
	// The cap is well above a scheduling delay under -race on a loaded
	// machine: a subscription that lasts longer than it counts as one
	// that worked (the backoff and the report start again), and with an
	// 8ms cap a refusal descheduled that long was reported a second time.
	const maxWait = 200 * time.Millisecond
	go func() { resubscribe(ctx, w, once, time.Millisecond, maxWait); close(stopped) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the watch was not resubscribed")
	}
	cancel()
	<-stopped
	got := w.reported()
	if len(got) != 2 {
		t.Fatalf("%d errors reported over %d refusals and one other failure, want 2:\n%s", len(got), refusals, strings.Join(got, "\n"))
	}
	if want := "netlink subscription failed: operation not permitted (the process lacks CAP_NET_ADMIN?): interface and address changes are not followed meanwhile; resubscribing with backoff up to 200ms"; !strings.HasPrefix(got[0], want) {
		t.Errorf("first report:\n %s\nwant it to start with\n %s", got[0], want)
	}
	if !strings.Contains(got[1], "message truncated") {
		t.Errorf("second report: %s", got[1])
	}
	// The waits grow up to the cap: the last refusals are spaced by it.
	mu.Lock()
	defer mu.Unlock()
	if g := gaps[refusals-2]; g < maxWait {
		t.Errorf("wait between the last refusals %s, want the %s cap (backoff)", g, maxWait)
	}
}
