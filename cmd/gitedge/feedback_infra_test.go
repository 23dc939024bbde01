package main

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/notify"
	"github.com/gitedge/gitedge/reconcile"
)

// oneRevision serves one revision, then waits.
type oneRevision struct{ rev chan reconcile.Revision }

func (s oneRevision) Next(ctx context.Context) (reconcile.Revision, error) {
	select {
	case r := <-s.rev:
		return r, nil
	case <-ctx.Done():
		return reconcile.Revision{}, ctx.Err()
	}
}

// TestDriftCorrectedIsNotified: the loop, the real infra reconciler
// against the Proxmox simulator and the real notifier, joined by
// feedback as a node joins them. A VM edited by hand is set back by the
// next resync, and a webhook hears "drift corrected" with what was set
// back; the passes that find nothing to correct send nothing.
func TestDriftCorrectedIsNotified(t *testing.T) {
	const id, secret = "gitedge@pve!edge", "5e3c1b2a-drift"
	pve := testkit.StartPvesim(t, pvesim.Options{Tokens: map[string]string{id: secret}})
	api, err := infra.NewAPI(infra.ClientConfig{URL: pve.URL, TokenID: id, TokenSecret: secret, CAFile: pve.CAFile, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rec, err := infra.New(infra.Options{API: api, PollInterval: 5 * time.Millisecond, Backoff: 5 * time.Millisecond, TaskTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	hook := testkit.NewReceiver()
	srv := httptest.NewServer(hook)
	t.Cleanup(srv.Close)
	nt, err := notify.New(notify.Config{Node: "lb-0", Sinks: []notify.SinkConfig{{Kind: notify.Webhook, URL: srv.URL, MinSeverity: notify.Info}}}, notify.Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, body := range routeFiles(testkit.QuietPort(t), "192.0.2.10:80", "192.0.2.11:80", "one") {
		testkit.WriteFile(t, filepath.Join(dir, name), body)
	}
	testkit.WriteFile(t, filepath.Join(dir, "vms.yaml"), "apiVersion: gitedge/v1\nkind: VirtualMachine\nmetadata: {name: vm-a}\n"+
		"spec: {vmid: 200, node: proxmox1, clone: "+pvesim.TemplateName+", cores: 2, memory: 1024}\n")
	src := oneRevision{rev: make(chan reconcile.Revision, 1)}
	src.rev <- reconcile.Revision{Commit: strings.Repeat("ab", 20), Files: os.DirFS(dir), Trigger: "start"}
	loop := &reconcile.Loop{Node: "lb-0", Source: src, Infra: rec, Resync: 20 * time.Millisecond,
		Retry: reconcile.Backoff{Min: 10 * time.Millisecond, Max: 50 * time.Millisecond}, Observer: &feedback{notify: nt}}
	testkit.Run(t, nt.Run)
	testkit.Run(t, loop.Run)

	// Created and configured: the first infra pass ended without error
	// (an edit made before the create's own config write is no drift).
	testkit.WaitFor(t, "VM 200 created and configured", func() bool {
		vm := pve.Sim.Snapshot().VMs[200]
		return vm != nil && vm.Conf["cores"] == "2" && loop.Status().Conditions["infra"].Status == reconcile.CondReady
	})
	// Resyncs that find nothing to correct: no notification.
	var before *reconcile.Attempt
	testkit.WaitFor(t, "a resync", func() bool { before = loop.Status().LastResync; return before != nil })
	testkit.WaitFor(t, "more resyncs", func() bool {
		r := loop.Status().LastResync
		return r.Started.After(before.Started.Add(40 * time.Millisecond))
	})
	if n := len(hook.Requests()); n != 0 {
		t.Fatalf("%d notifications before any drift", n)
	}
	pve.Sim.Edit(func(st *pvesim.State) { st.VMs[200].Conf["cores"] = "1" })
	q := hook.Next(t)
	var e webhookEvent
	testkit.DecodeJSON(t, q.Body, &e)
	if e.Kind != "drift-corrected" || e.Severity != "warning" || !strings.Contains(e.Message, "set back: cores 1 → 2") || !strings.Contains(string(q.Body), `"vm":"vm-a","vmid":200`) {
		t.Errorf("notification: %s", q.Body)
	}
	t.Logf("notified: %s", q.Body)
}
