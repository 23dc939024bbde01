package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitedge/gitedge/reconcile"
)

func TestAdminServerAndStatusCommand(t *testing.T) {
	reg := prometheus.NewRegistry()
	loop := &reconcile.Loop{Node: "lb-0", Metrics: reconcile.NewMetrics(reg)}
	if _, err := loop.Pass(context.Background(), reconcile.Revision{Commit: "0123456789abcdef", Files: os.DirFS("../../examples/homelab"), Author: "ops", Message: "add blog"}, nil); err != nil {
		t.Fatal(err)
	}
	a := &adminServer{status: loop.Status, vrrp: func() any { return map[string]string{"VI_1": "MASTER"} }, registry: reg, logger: slog.New(slog.DiscardHandler)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.serve(ctx, addr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	get := func(path string) string {
		t.Helper()
		for range 100 {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				continue // not listening yet
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 {
				t.Fatalf("%s: %s", path, resp.Status)
			}
			return string(b)
		}
		t.Fatalf("%s: admin server never answered", path)
		return ""
	}
	if body := get("/healthz"); body != "ok\n" {
		t.Errorf("/healthz = %q", body)
	}
	if body := get("/metrics"); !strings.Contains(body, reconcile.MetricLiveCommit+`{commit="0123456789abcdef"} 1`) {
		t.Errorf("/metrics lacks the live commit:\n%s", body)
	}
	if body := get("/"); !strings.Contains(body, "node lb-0") || !strings.Contains(body, "0123456789abcdef") || !strings.Contains(body, "MASTER") {
		t.Errorf("status page:\n%s", body)
	}
	code, out, errOut := gitedge(t, "status", "--admin", addr)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"node:         lb-0", "live commit:  0123456789abcdef", `"add blog" by ops`, "last attempt: applied", "plan: 15 to add", `"VI_1": "MASTER"`} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = gitedge(t, "status", "--admin", addr, "--output", "json")
	if code != 0 || !strings.Contains(out, `"commit": "0123456789abcdef"`) {
		t.Errorf("status json: %d %s", code, out)
	}
	if code, _, errOut := gitedge(t, "status", "--admin", "127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "is gitedge running?") {
		t.Errorf("status of nothing: %d %s", code, errOut)
	}
}
