package notify_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/gitedge/gitedge/notify"
	"github.com/prometheus/client_golang/prometheus"
)

// A node notifies what a person must hear about; each sink filters,
// rate-limits and delivers on its own.
func Example() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	n, err := notify.New(notify.Config{
		Node:      "lb-0",
		StatusURL: "https://lb-0.example.org/",
		Sinks: []notify.SinkConfig{ // the node config's `notify:` list
			{Kind: notify.Alertmanager, URL: "http://alertmanager.example.org:9093", MinSeverity: notify.Warning},
			{Kind: notify.Slack, URL: "https://hooks.slack.com/services/T000/B000/XXXX", MinSeverity: notify.Critical},
		},
	}, notify.Options{Logger: log, Registerer: prometheus.NewRegistry()})
	if err != nil {
		log.Error("node config", "err", err) // located, as "notify[1].url: …"
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go n.Run(ctx) // in cmd/gitedge: one Task of the errgroup

	n.Notify(notify.ServerDown("web", "192.0.2.10:8080", "connect: connection refused", 0))
	n.Notify(notify.VRRPTransition("vi_1", "BACKUP", "MASTER"))
	n.Notify(notify.CommitRefused("0123456789abcdef0123456789abcdef01234567",
		errors.New(`routes/blog.yaml:12: Route "blog": spec.http.backend: no Backend named "web"`)))
	n.Notify(notify.ServerUp("web", "192.0.2.10:8080")) // resolves the alert
	_ = n.Snapshot()                                    // for /status
}

// Every event has a one-line summary, as chat messages show it.
func ExampleEvent_Summary() {
	e := notify.ServerDown("web", "192.0.2.10:8080", "3 checks failed: connect: connection refused", 1)
	e.Node = "lb-0"
	fmt.Println(e.Severity, e.Summary())
	e = notify.VRRPTransition("vi_1", "master", "backup")
	e.Node = "lb-1"
	fmt.Println(e.Severity, e.Summary())
	// Output:
	// warning lb-0: backend web server 192.0.2.10:8080 down: 3 checks failed: connect: connection refused; 1 healthy left
	// warning lb-1: VRRP instance vi_1: MASTER → BACKUP
}
