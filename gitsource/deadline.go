package gitsource

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
)

// errStuck is the error of a remote operation left behind at its deadline.
var errStuck = errors.New("no answer before the deadline, and the transport did not give up (a git-upload-pack stuck on its repository's disk?)")

// bounded runs op, which must honour ctx, and waits for it until ctx ends
// plus stuckGrace. go-git honours ctx while it reads from the remote, but a
// transport can still block past it: the file transport waits for its
// git-upload-pack child on close, and a child stuck in the kernel (a hung
// NFS mount) or a grandchild holding its stderr keeps that wait going.
// Then op is left running, and bounded returns a channel closed when op
// returns at last (until then nothing op uses may be touched) and errStuck.
func bounded(ctx context.Context, op func() error) (<-chan struct{}, error) {
	result := make(chan error, 1)
	done := make(chan struct{})
	go boundedOp(op, result, done)
	select {
	case err := <-result:
		return nil, err
	case <-ctx.Done():
	}
	t := time.NewTimer(stuckGrace)
	defer t.Stop()
	select {
	case err := <-result:
		return nil, err
	case <-t.C:
		return done, fmt.Errorf("%w: %w", errStuck, ctx.Err())
	}
}

func boundedOp(op func() error, result chan<- error, done chan<- struct{}) {
	result <- op()
	close(done)
}

// isNetErr tells talking-to-the-remote failures from local cache failures.
func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	var errno syscall.Errno
	switch {
	case errors.As(err, &ne) && !errors.As(err, &errno), // an errno looks like a net.Error but is local
		errors.As(err, &oe),
		errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed),
		errors.Is(err, transport.ErrRepositoryNotFound), errors.Is(err, transport.ErrEmptyRemoteRepository):
		return true
	}
	msg := err.Error()
	for _, s := range []string{"connection refused", "unexpected client error", "unexpected requesting",
		"ssh:", "handshake", "unable to authenticate", "knownhosts", "remote error", "status code"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
