package gitsource

import (
	"context"
	"io"

	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	"github.com/go-git/go-git/v5/plumbing/transport/file"
)

// go-git's file transport (file:// URLs and plain paths) runs
// git-upload-pack as a child process. When a fetch stops reading the pack
// part-way (the cache's disk is full, a corrupt object), go-git closes the
// session by waiting for the child without reading the rest of its output:
// the child stays blocked writing into the full pipe and the wait never
// returns, whatever the fetch's context says (go-git v5.19.3, reproduced
// with a full state directory). The fetch's deadline only reaches the
// child through go-git's context-aware reader, which kills it when a read
// fails.
//
// So the file transport is wrapped: closing a pack response first drains
// what the child still sends, through that same reader. The child then
// exits, or the deadline passes, the read fails and go-git kills the
// child. It is installed once, before any goroutine can look the protocol
// up (go-git's protocol table is a plain map).
func init() {
	client.InstallProtocol("file", fileTransport{file.DefaultClient})
}

type fileTransport struct{ transport.Transport }

func (t fileTransport) NewUploadPackSession(ep *transport.Endpoint, auth transport.AuthMethod) (transport.UploadPackSession, error) {
	s, err := t.Transport.NewUploadPackSession(ep, auth)
	if err != nil {
		return nil, err
	}
	return drainingSession{s}, nil
}

type drainingSession struct{ transport.UploadPackSession }

func (s drainingSession) UploadPack(ctx context.Context, req *packp.UploadPackRequest) (*packp.UploadPackResponse, error) {
	res, err := s.UploadPackSession.UploadPack(ctx, req)
	if err != nil || res == nil {
		return res, err
	}
	out := packp.NewUploadPackResponseWithPackfile(req, drainOnClose{res})
	out.ShallowUpdate, out.ServerResponse = res.ShallowUpdate, res.ServerResponse
	return out, nil
}

// drainOnClose reads what is left of a pack before closing it, so the
// child that sends it can exit (or, past the deadline, is killed).
type drainOnClose struct{ r io.ReadCloser }

func (d drainOnClose) Read(p []byte) (int, error) { return d.r.Read(p) }

func (d drainOnClose) Close() error {
	_, _ = io.Copy(io.Discard, d.r)
	return d.r.Close()
}
