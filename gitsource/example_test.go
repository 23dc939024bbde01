package gitsource_test

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/gitedge/gitedge/gitsource"
	"github.com/prometheus/client_golang/prometheus"
)

// A node follows its routes repository: the poller and the webhook feed
// the source's queue, and the loop takes one revision at a time.
func Example() {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	reg := prometheus.NewRegistry()
	cfg := gitsource.Config{
		URL:         "https://git.example.org/infra/edge.git",
		Path:        "edge",
		Auth:        gitsource.Auth{TokenFile: "/etc/gitedge/token"},
		KeyringFile: "/etc/gitedge/trusted.asc",
		StateDir:    "/var/lib/gitedge",
		Node:        "lb-0",
	}
	src, err := gitsource.New(cfg, gitsource.Options{Logger: log, Registry: reg})
	if err != nil {
		log.Error("source", "err", err)
		return
	}
	poller, _ := gitsource.NewPoller("@every 1m", cfg.Node, src.Trigger)
	hook, err := gitsource.NewWebhook(gitsource.WebhookConfig{Listen: ":9000", SecretFile: "/etc/gitedge/webhook.secret", Ref: cfg.Ref()},
		src.Trigger, gitsource.Options{Logger: log, Registry: reg})
	if err != nil {
		log.Error("webhook", "err", err)
		return
	}
	go poller.Run(ctx)
	go hook.Run(ctx)
	for {
		rev, err := src.Next(ctx)
		var e *gitsource.Error
		switch {
		case ctx.Err() != nil:
			return
		case errors.As(err, &e):
			// Keep serving the last good commit; the source retries by
			// itself when e.Transient(), and skips e.Commit otherwise.
			log.Warn("source", "step", e.Step, "reason", e.Reason, "transient", e.Transient())
			continue
		}
		_ = rev.Files // hand to the loader: reconcile.Load(rev.Files)
	}
}
