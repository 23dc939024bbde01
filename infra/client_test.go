package infra_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/testkit"
)

// Every call the reconciler makes, through the real go-proxmox client over
// HTTPS against the simulator, with the results and errors it relies on.
func TestGoProxmoxAgainstSimulator(t *testing.T) {
	r := newRig(t, pvesim.Options{})
	api := r.api
	ctx := context.Background()
	waitOK := func(t *testing.T, upid string) infra.TaskStatus {
		t.Helper()
		// Bounded in time, not in tries: each try is slow under -race on
		// a loaded machine.
		for deadline := time.Now().Add(testkit.Deadline); time.Now().Before(deadline); {
			st, err := api.Task(ctx, upid)
			if err != nil {
				t.Fatalf("task %s: %v", upid, err)
			}
			if !st.Running {
				return st
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("task %s never finished", upid)
		return infra.TaskStatus{}
	}

	t.Run("resources", func(t *testing.T) {
		res, err := api.Resources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].VMID != pvesim.TemplateVMID || !res[0].Template || res[0].Name != pvesim.TemplateName || res[0].Node != "proxmox1" {
			t.Fatalf("resources = %+v", res)
		}
	})
	t.Run("bridges", func(t *testing.T) {
		r.sim.Edit(func(st *pvesim.State) { st.Nodes[0].DownBridges = []string{"vmbr5"} })
		defer r.sim.Edit(func(st *pvesim.State) { st.Nodes[0].DownBridges = nil })
		bs, err := api.Bridges(ctx, "proxmox1")
		// The node's physical NIC (eno1) is not a bridge: left out.
		want := []infra.Bridge{{Name: "vmbr0", Type: "bridge", Active: true}, {Name: "vmbr5", Type: "bridge"}}
		if err != nil || !slices.Equal(bs, want) {
			t.Errorf("bridges = %+v, %v; want %+v", bs, err, want)
		}
		_, err = api.Bridges(ctx, "proxmox9")
		if err == nil || !strings.HasPrefix(err.Error(), "500 hostname lookup 'proxmox9' failed") {
			t.Errorf("bridges of a node not in the cluster: %v", err)
		}
	})
	var upid string
	t.Run("clone", func(t *testing.T) {
		var err error
		upid, err = api.Clone(ctx, infra.CloneRequest{Node: "proxmox1", Template: pvesim.TemplateVMID, VMID: 150, Name: "lb-0",
			Description: "x", Storage: "vmdata", Format: "qcow2", TargetNode: "proxmox1"})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(upid, "UPID:proxmox1:") || !strings.HasSuffix(upid, ":qmclone:9000:"+tokenID+":") {
			t.Errorf("upid = %s", upid)
		}
		if st := waitOK(t, upid); !st.Succeeded() {
			t.Errorf("clone task: %+v", st)
		}
		_, err = api.Clone(ctx, infra.CloneRequest{Node: "proxmox1", Template: pvesim.TemplateVMID, VMID: 150, Name: "lb-0"})
		if err == nil || err.Error() != "500 unable to create VM 150: config file already exists" {
			t.Errorf("second clone onto 150: %v", err)
		}
	})
	var cfg infra.VMConfig
	t.Run("config", func(t *testing.T) {
		var err error
		cfg, err = api.Config(ctx, "proxmox1", 150)
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Digest) != 40 || cfg.Values["name"] != "lb-0" || cfg.Values["cores"] != "2" || cfg.Values["memory"] != "2048" ||
			cfg.Values["scsi0"] != "vmdata:150/vm-150-disk-0.qcow2,size=2G" || cfg.Values["description"] != "x" || cfg.Lock() != "" {
			t.Errorf("config = %+v", cfg)
		}
		_, err = api.Config(ctx, "proxmox1", 199)
		if err == nil || err.Error() != "500 Configuration file 'nodes/proxmox1/qemu-server/199.conf' does not exist" {
			t.Errorf("missing VM: %v", err)
		}
	})
	t.Run("set config", func(t *testing.T) {
		up, err := api.SetConfig(ctx, "proxmox1", 150, cfg.Digest, map[string]string{"memory": "4096", "onboot": "1", "tags": "gitedge;Lb"}, []string{"serial0"})
		if err != nil {
			t.Fatal(err)
		}
		waitOK(t, up)
		c, _ := api.Config(ctx, "proxmox1", 150)
		if c.Values["memory"] != "4096" || c.Values["onboot"] != "1" || c.Values["tags"] != "gitedge;lb" || c.Values["serial0"] != "" || c.Digest == cfg.Digest {
			t.Errorf("after set: %+v", c)
		}
		_, err = api.SetConfig(ctx, "proxmox1", 150, cfg.Digest, map[string]string{"memory": "8192"}, nil)
		if err == nil || err.Error() != "500 checksum mismatch (file change by other user?)" {
			t.Errorf("stale digest: %v", err)
		}
		_, err = api.SetConfig(ctx, "proxmox1", 150, "", map[string]string{"cores": "two", "net0": "virtio,bridge=vmbr0,tag=5000"}, nil)
		if err == nil || !strings.HasPrefix(err.Error(), "bad request: 400 Parameter verification failed.") || !strings.Contains(err.Error(), `"cores":"type check ('integer') failed - got 'two'"`) {
			t.Errorf("bad parameters: %v", err)
		}
	})
	t.Run("resize", func(t *testing.T) {
		up, err := api.Resize(ctx, "proxmox1", 150, "scsi0", "8G")
		if err != nil {
			t.Fatal(err)
		}
		waitOK(t, up)
		c, _ := api.Config(ctx, "proxmox1", 150)
		if c.Values["scsi0"] != "vmdata:150/vm-150-disk-0.qcow2,size=8G" {
			t.Errorf("scsi0 = %s", c.Values["scsi0"])
		}
		up, err = api.Resize(ctx, "proxmox1", 150, "scsi0", "4G")
		if err != nil {
			t.Fatal(err)
		}
		if st := waitOK(t, up); st.Succeeded() || st.ExitStatus != "shrinking disks is not supported" {
			t.Errorf("shrink: %+v", st)
		}
	})
	t.Run("start and status", func(t *testing.T) {
		up, err := api.Power(ctx, "proxmox1", 150, "start")
		if err != nil {
			t.Fatal(err)
		}
		waitOK(t, up)
		st, err := api.Status(ctx, "proxmox1", 150)
		if err != nil || st.Status != "running" || st.HA {
			t.Errorf("status = %+v, %v", st, err)
		}
		up, _ = api.Power(ctx, "proxmox1", 150, "start")
		if st := waitOK(t, up); st.Succeeded() || st.ExitStatus != "VM 150 already running" {
			t.Errorf("second start: %+v", st)
		}
		// A running VM: memory is pending until the next start.
		c, _ := api.Config(ctx, "proxmox1", 150)
		up, err = api.SetConfig(ctx, "proxmox1", 150, c.Digest, map[string]string{"memory": "8192", "ciuser": "ansible"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		waitOK(t, up)
		c, _ = api.Config(ctx, "proxmox1", 150)
		if c.Values["memory"] != "8192" || !slices.Equal(c.Pending, []string{"memory"}) {
			t.Errorf("pending = %v, memory %s", c.Pending, c.Values["memory"])
		}
		if err := api.RegenerateCloudInit(ctx, "proxmox1", 150); err != nil {
			t.Error(err)
		}
	})
	t.Run("agent", func(t *testing.T) {
		ifs, err := api.AgentInterfaces(ctx, "proxmox1", 150)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := api.Config(ctx, "proxmox1", 150)
		mac := strings.ToLower(strings.TrimPrefix(strings.Split(c.Values["net0"], ",")[0], "virtio="))
		if len(ifs) != 1 || ifs[0].Name != "eth0" || ifs[0].MAC != mac || len(ifs[0].IPs) != 2 || ifs[0].IPs[0].IPv6 || !ifs[0].IPs[1].IPv6 {
			t.Errorf("interfaces = %+v (net0 MAC %s)", ifs, mac)
		}
		_, err = api.AgentInterfaces(ctx, "proxmox1", pvesim.TemplateVMID)
		if err == nil || err.Error() != "500 VM 9000 is not running" {
			t.Errorf("agent of a stopped VM: %v", err)
		}
	})
	t.Run("ha", func(t *testing.T) {
		if err := api.CreateHA(ctx, "vm:150", infra.HA{Group: "main", State: "started"}); err != nil {
			t.Fatal(err)
		}
		if err := api.CreateHA(ctx, "vm:150", infra.HA{Group: "main", State: "started"}); err == nil || err.Error() != "500 resource ID 'vm:150' already defined" {
			t.Errorf("second create: %v", err)
		}
		if err := api.UpdateHA(ctx, "vm:150", infra.HA{State: "stopped"}); err != nil {
			t.Fatal(err)
		}
		hs, err := api.HAResources(ctx)
		if err != nil || len(hs) != 1 || hs[0] != (infra.HAResource{SID: "vm:150", State: "stopped"}) {
			t.Errorf("HA resources = %+v, %v", hs, err)
		}
		st, _ := api.Status(ctx, "proxmox1", 150)
		if !st.HA || st.Status != "stopped" {
			t.Errorf("HA stopped VM: %+v", st)
		}
		if err := api.DeleteHA(ctx, "vm:150"); err != nil {
			t.Fatal(err)
		}
		if err := api.DeleteHA(ctx, "vm:150"); err == nil || err.Error() != "500 cannot delete service 'vm:150', not HA managed!" {
			t.Errorf("second HA delete: %v", err)
		}
		up, err := api.Delete(ctx, "proxmox1", 150)
		if err != nil {
			t.Fatal(err)
		}
		waitOK(t, up)
	})
	t.Run("stop and delete", func(t *testing.T) {
		if _, err := api.Config(ctx, "proxmox1", 150); err == nil {
			t.Fatal("VM 150 still exists after delete")
		}
		up, err := api.Clone(ctx, infra.CloneRequest{Node: "proxmox1", Template: pvesim.TemplateVMID, VMID: 151, Name: "lb-1", LinkedClone: true})
		if err != nil {
			t.Fatal(err)
		}
		waitOK(t, up)
		up, _ = api.Power(ctx, "proxmox1", 151, "start")
		waitOK(t, up)
		if _, err := api.Delete(ctx, "proxmox1", 151); err == nil || err.Error() != "500 VM 151 is running - destroy failed" {
			t.Errorf("delete running: %v", err)
		}
		up, err = api.Power(ctx, "proxmox1", 151, "stop")
		if err != nil {
			t.Fatal(err)
		}
		waitOK(t, up)
		up, err = api.Delete(ctx, "proxmox1", 151)
		if err != nil {
			t.Fatal(err)
		}
		waitOK(t, up)
		res, _ := api.Resources(ctx)
		if len(res) != 1 {
			t.Errorf("resources after delete: %+v", res)
		}
		if d := r.sim.Dump(); strings.Contains(d, ":151/") || strings.Contains(d, "vm-151-") {
			t.Errorf("volumes of 151 left:\n%s", d)
		}
	})
	t.Run("task warnings succeed", func(t *testing.T) {
		r.sim.SetFaults(pvesim.Faults{FailTasks: []pvesim.TaskFault{{Type: "qmstart", Count: 1, Message: "WARNINGS: 1"}}})
		defer r.sim.SetFaults(pvesim.Faults{})
		up, err := api.Power(ctx, "proxmox1", pvesim.TemplateVMID, "start")
		if err != nil {
			t.Fatal(err)
		}
		if st := waitOK(t, up); !st.Succeeded() || st.ExitStatus != "WARNINGS: 1" {
			t.Errorf("warnings: %+v", st)
		}
	})
}

func TestClientConfigChecks(t *testing.T) {
	for _, c := range []infra.ClientConfig{
		{},
		{URL: "https://proxmox1:8006/api2/json", TokenID: "gitedge", TokenSecret: "x"},
		{URL: "https://proxmox1:8006/api2/json", TokenID: "gitedge@pve!edge"},
	} {
		if _, err := infra.NewAPI(c); err == nil || !infra.IsTerminal(err) {
			t.Errorf("NewAPI(%+v) = %v, want a terminal error", c, err)
		}
	}
	// An untrusted certificate is refused.
	r := newRig(t, pvesim.Options{})
	c := r.cfg
	c.CAFile = ""
	api, err := infra.NewAPI(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := api.Resources(context.Background()); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	c.InsecureSkipVerify = true
	api, _ = infra.NewAPI(c)
	if _, err := api.Resources(context.Background()); err != nil {
		t.Errorf("insecureSkipVerify: %v", err)
	}
}
