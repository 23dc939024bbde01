package infra_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/testkit"
)

const (
	tokenID     = "gitedge@pve!reconcile"
	tokenSecret = "0f1e2d3c-aaaa-bbbb-cccc-1234567890ab"
)

// rig is a simulator behind a real HTTPS listener and the real go-proxmox
// client pointed at it.
type rig struct {
	sim *pvesim.Sim
	srv *httptest.Server
	cfg infra.ClientConfig
	api infra.API
	log *testkit.SyncBuffer
	reg *prometheus.Registry
}

func newRig(t testing.TB, opts pvesim.Options) *rig {
	t.Helper()
	if opts.Tokens == nil {
		opts.Tokens = map[string]string{tokenID: tokenSecret}
	}
	p := testkit.StartPvesim(t, opts)
	cfg := infra.ClientConfig{URL: p.URL, TokenID: tokenID, TokenSecret: tokenSecret, CAFile: p.CAFile, Timeout: 5 * time.Second}
	api, err := infra.NewAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{sim: p.Sim, srv: p.Server, cfg: cfg, api: api, log: &testkit.SyncBuffer{}, reg: prometheus.NewRegistry()}
}

func (r *rig) reconciler(t testing.TB, mod ...func(*infra.Options)) *infra.Reconciler {
	t.Helper()
	o := infra.Options{
		API:          r.api,
		Logger:       slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:   r.reg,
		PollInterval: 5 * time.Millisecond,
		Backoff:      5 * time.Millisecond,
		TaskTimeout:  10 * time.Second,
	}
	for _, m := range mod {
		m(&o)
	}
	rec, err := infra.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func leader() bool    { return true }
func notLeader() bool { return false }

// homelab is examples/homelab/vms.yaml as the loader converts it.
func homelab() infra.Config {
	vm := func(name string, vmid int, ip, desc string) infra.VM {
		return infra.VM{
			Name: name, VMID: vmid, Node: "proxmox1", Clone: pvesim.TemplateName,
			Description: desc, CPU: "host", Cores: 2, Memory: 4096, OnBoot: true, Agent: true,
			Disk:    infra.Disk{Bus: "scsi", Storage: "vmdata", Size: 8 << 30, Format: "qcow2"},
			Network: []infra.NIC{{Model: "virtio", Bridge: "vmbr0", VLAN: 33}},
			CloudInit: infra.CloudInit{User: "ansible", Nameserver: "192.0.2.1", SearchDomain: "domain.tld",
				IPConfig: infra.IPConfig{IP: netip.MustParsePrefix(ip), Gateway: netip.MustParseAddr("192.0.2.1")}},
			Serial: "socket", VGA: "serial0",
			HA:            &infra.HA{Group: "main", State: "started"},
			IgnoreChanges: []string{"network"},
		}
	}
	return infra.Config{VMs: []infra.VM{
		vm("lb-0", 150, "192.0.2.250/24", "HAProxy Loadbalancer 0"),
		vm("lb-1", 151, "192.0.2.251/24", "HAProxy Loadbalancer 1"),
	}}
}

func apply(t testing.TB, rec *infra.Reconciler, cfg infra.Config) infra.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := rec.Apply(ctx, cfg, leader)
	if err != nil {
		t.Fatalf("apply: %v\nplan:\n%s", err, res.Plan)
	}
	return res
}

// applyQuiet applies cfg with the simulator's call log reset, and fails
// (what: which pass) if the pass wrote anything.
func (r *rig) applyQuiet(t testing.TB, rec *infra.Reconciler, cfg infra.Config, what string) infra.Result {
	t.Helper()
	r.sim.ResetCalls()
	res := apply(t, rec, cfg)
	if w := writes(r.sim.Calls()); len(w) != 0 {
		t.Errorf("%s wrote %v\nplan:\n%s", what, w, res.Plan)
	}
	return res
}

func writes(calls []pvesim.Call) []string {
	var w []string
	for _, c := range calls {
		if c.Write() {
			w = append(w, c.Method+" "+c.Path)
		}
	}
	return w
}

// golden compares got with testdata/name (rewritten with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	testkit.Golden(t, filepath.Join("testdata", name), got)
}

var _ http.Handler = (*pvesim.Sim)(nil)
