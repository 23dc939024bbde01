package infra

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"
)

// waitUnlocked polls status/current until the clone lock is gone (as the
// bpg provider does after a clone task).
func (r *Reconciler) waitUnlocked(ctx context.Context, ref VMRef) error {
	return r.poll(ctx, ref, "clone", func(s VMStatus) bool { return s.Lock == "" })
}

func (r *Reconciler) poll(ctx context.Context, ref VMRef, op string, ok func(VMStatus) bool) error {
	deadline := time.Now().Add(r.opts.TaskTimeout)
	for {
		st, err := r.api.Status(ctx, ref.Node, ref.VMID)
		if err == nil && ok(st) {
			return nil
		}
		if err != nil && classifyKind(err) == Terminal {
			return classify(op, ref, err)
		}
		if time.Now().After(deadline) {
			return &Error{Kind: Transient, Reason: ReasonTimeout, Op: op, Name: ref.Name, VMID: ref.VMID, Node: ref.Node,
				Err: fmt.Errorf("VM did not reach the expected state within %s (last: %+v, %v)", r.opts.TaskTimeout, st, err)}
		}
		if !r.sleep(ctx, r.opts.PollInterval) {
			return ctx.Err()
		}
	}
}

// wait polls a task until it stops, tolerating transient poll failures
// (a busy node may not know a fresh UPID yet), and turns a failed exit
// status into an error. WARNINGS counts as success. (go-proxmox's
// Task.Wait returns nil for a failed task, flags WARNINGS as failed and
// sleeps without watching the context, so gitedge polls Task itself.)
func (r *Reconciler) wait(ctx context.Context, ref VMRef, op, upid string) error {
	deadline := time.Now().Add(r.opts.TaskTimeout)
	for first := true; ; first = false {
		if !first && !r.sleep(ctx, r.opts.PollInterval) {
			return ctx.Err()
		}
		st, err := r.api.Task(ctx, upid)
		switch {
		case err != nil && classifyKind(err) == Terminal && !strings.Contains(err.Error(), "no such task"):
			return classify(op, ref, err)
		case err == nil && !st.Running:
			if st.Succeeded() {
				return nil
			}
			e := classify(op, ref, errors.New(st.ExitStatus))
			if e.Reason == ReasonAPI {
				e.Reason = ReasonTaskFailed
			}
			e.Err = fmt.Errorf("task %s failed: %s", upid, st.ExitStatus)
			return e
		}
		if time.Now().After(deadline) {
			return &Error{Kind: Transient, Reason: ReasonTimeout, Op: op, Name: ref.Name, VMID: ref.VMID, Node: ref.Node,
				Err: fmt.Errorf("task %s still running after %s", upid, r.opts.TaskTimeout)}
		}
	}
}

// retry runs f, retrying refusals that did no work: a lock or a lock
// timeout (PVE answers both before doing anything), a 502/503/504 or an
// unreachable node (595/596). Reads (idempotent) also retry any other 5xx,
// timeouts and network errors; writes do not, since the request may have
// done its work.
func (r *Reconciler) retry(ctx context.Context, ref VMRef, op string, idempotent bool, f func() error) error {
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil {
			return nil
		}
		reason := reasonOf(err)
		msg := err.Error()
		gateway := reason == ReasonAPI && (strings.HasPrefix(msg, "502") || strings.HasPrefix(msg, "503") || strings.HasPrefix(msg, "504") ||
			strings.Contains(msg, "unexpected end of JSON input")) // a 595/596 has an empty body
		retryable := reason == ReasonLocked || gateway || (idempotent && (reason == ReasonAPI || reason == ReasonTimeout))
		if !retryable || attempt >= r.opts.Retries || ctx.Err() != nil {
			return classify(op, ref, err)
		}
		r.log.Debug("proxmox call failed; retrying", "op", op, "vmid", ref.VMID, "attempt", attempt+1, "err", err)
		if !r.sleep(ctx, r.backoff(attempt)) {
			return classify(op, ref, err)
		}
	}
}

func (r *Reconciler) backoff(attempt int) time.Duration {
	d := r.opts.Backoff << min(attempt, 6)
	return d/2 + rand.N(d/2+1)
}

func (r *Reconciler) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// parallel runs f(0..n-1) with at most limit at once and waits for all.
func (r *Reconciler) parallel(ctx context.Context, limit, n int, f func(int)) {
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}
