package forge_test

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/gitedge/gitedge/forge"
	"github.com/prometheus/client_golang/prometheus"
)

// A node reports every commit it considers: pending when fetched, then
// success, failure (refused) or error (apply failed).
func Example() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := forge.Config{
		Kind:       forge.Gitea,
		API:        "https://git.example.org/api/v1",
		Repository: "infra/edge",
		TokenFile:  "/etc/gitedge/forge.token",
		StatusURL:  "https://lb-0.example.org/",
		Node:       "lb-0", // from the node config's `node:`
	}
	fr, err := forge.New(cfg, forge.Options{Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		// A located error, as "forge.repository: …"; the node refuses to
		// start with a bad config.
		log.Error("node config", "err", err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go fr.Run(ctx) // in cmd/gitedge: one Task of the errgroup

	commit := "0123456789abcdef0123456789abcdef01234567"
	fr.Report(commit, forge.Pending, "")
	if err := errors.Join(errors.New(`routes/blog.yaml:12: Route "blog": spec.http.backend: no Backend named "web"`)); err != nil {
		fr.Report(commit, forge.Failure, forge.Summarize(err))
	}
	_ = fr.Snapshot() // for /status
}
