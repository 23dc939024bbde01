package gitsource

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestQueueLatestWins(t *testing.T) {
	q := NewQueue(nil)
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { q.Poke(Trigger{Kind: TriggerWebhook}) })
	}
	wg.Wait()
	q.Poke(Trigger{Kind: TriggerPoll, Detail: "last"})
	if got := <-q.C(); got.Kind != TriggerPoll || got.Detail != "last" || got.At.IsZero() {
		t.Fatalf("pending trigger %+v, want the last one", got)
	}
	select {
	case extra := <-q.C():
		t.Fatalf("second pending trigger %+v", extra)
	default:
	}
	if n := counter(t, q.coalesced); n != 100 {
		t.Fatalf("coalesced = %d, want 100", n)
	}
}

// TestPoller runs the schedule on a fake clock.
func TestPoller(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		p, err := NewPoller("@every 1m", "lb-0", rec.notify)
		if err != nil {
			t.Fatal(err)
		}
		if p.Offset() <= 0 || p.Offset() >= 6*time.Second {
			t.Fatalf("offset %s, want within a tenth of the interval", p.Offset())
		}
		q, _ := NewPoller("@every 1m", "lb-1", func(Trigger) {})
		if q.Offset() == p.Offset() {
			t.Fatal("two nodes share an offset")
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- p.Run(ctx) }()
		time.Sleep(3*time.Minute + 30*time.Second)
		synctest.Wait()
		if n := rec.count(); n != 3 {
			t.Fatalf("%d polls in 3m30s, want 3", n)
		}
		if rec.ts[0].Kind != TriggerPoll || rec.ts[0].Detail != "@every 1m" {
			t.Fatalf("trigger %+v", rec.ts[0])
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
	if _, err := NewPoller("every minute", "n", func(Trigger) {}); err == nil {
		t.Fatal("bad spec accepted")
	}
}

// TestPollerCron: a five-field spec fires at its wall-clock times, offset.
func TestPollerCron(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		p, err := NewPoller("*/5 * * * *", "lb-0", rec.notify)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go p.Run(ctx)
		time.Sleep(20*time.Minute + time.Minute)
		synctest.Wait()
		if n := rec.count(); n < 4 || n > 5 {
			t.Fatalf("%d polls in 21m of */5, want 4 or 5", n)
		}
		for _, tr := range rec.ts {
			if off := time.Duration(tr.At.Unix()%300) * time.Second; off != p.Offset().Truncate(time.Second) {
				t.Fatalf("fired at %s, %s past the 5-minute mark; want the offset %s", tr.At, off, p.Offset())
			}
		}
	})
}
