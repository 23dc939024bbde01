package pvesim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	proxmox "github.com/luthermonson/go-proxmox"

	"github.com/gitedge/gitedge/infra/pvesim"
)

const (
	tokenID = "gitedge@pve!edge"
	secret  = "5ec2e7"
)

func start(t *testing.T, opts pvesim.Options) (*pvesim.Sim, *httptest.Server) {
	t.Helper()
	if opts.Tokens == nil {
		opts.Tokens = map[string]string{tokenID: secret}
	}
	sim, err := pvesim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	t.Cleanup(func() { srv.Close(); _ = sim.Close() })
	return sim, srv
}

// raw sends one request and returns the status line and body as sent on
// the wire (Go's client keeps the reason phrase in Status).
func raw(t *testing.T, srv *httptest.Server, method, path, auth, body string, hdr ...string) (string, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+"/api2/json"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.Status, string(b)
}

func TestAuthAndErrorsOnTheWire(t *testing.T) {
	_, srv := start(t, pvesim.Options{})
	tok := "PVEAPIToken=" + tokenID + "=" + secret
	for _, tc := range []struct {
		name, method, path, auth, body string
		status, bodyHas                string
	}{
		{"no credentials", "GET", "/version", "", "", "401 No ticket", ""},
		{"wrong secret", "GET", "/version", "PVEAPIToken=" + tokenID + "=nope", "", "401 Authentication failed!", ""},
		{"unknown token", "GET", "/version", "PVEAPIToken=root@pam!x=" + secret, "", "401 Authentication failed!", ""},
		{"token", "GET", "/version", tok, "", "200 OK", `{"data":{"release":"8.2","repoid":"faa83925c9641325","version":"8.2.4"}}`},
		{"token with a space", "GET", "/version", "PVEAPIToken " + tokenID + "=" + secret, "", "200 OK", `"version":"8.2.4"`},
		{"missing VM", "GET", "/nodes/proxmox1/qemu/199/status/current", tok, "", "500 Configuration file 'nodes/proxmox1/qemu-server/199.conf' does not exist",
			`{"data":null,"message":"Configuration file 'nodes/proxmox1/qemu-server/199.conf' does not exist\n"}`},
		{"no handler", "GET", "/nodes/proxmox1/qemu/9000/nonsense", tok, "", "501 Method 'GET /nodes/proxmox1/qemu/9000/nonsense' not implemented", ""},
		{"bad parameters", "POST", "/nodes/proxmox1/qemu/9000/config", tok, `{"cores":"two","foo":1,"net0":"virtio,bridge=vmbr0,tag=5000","onboot":"true"}`,
			"400 Parameter verification failed.", `"foo":"property is not defined in schema and the schema does not allow additional properties"`},
		{"nextid is a string", "GET", "/cluster/nextid", tok, "", "200 OK", `{"data":"100"}`},
		{"vmid taken", "GET", "/cluster/nextid?vmid=9000", tok, "", "400 Parameter verification failed.", `"errors":{"vmid":"VM 9000 already exists"}`},
		{"unknown task", "GET", "/nodes/proxmox1/tasks/UPID:proxmox1:00000001:00000001:66669980:qmstart:101:root@pam:/status", tok, "",
			"400 Parameter verification failed.", `"upid":"no such task"`},
		{"linked clone with storage", "POST", "/nodes/proxmox1/qemu/9000/clone", tok, `{"newid":150,"storage":"vmdata"}`, "500 parameter 'storage' not allowed for linked clones", ""},
		{"clone onto the template", "POST", "/nodes/proxmox1/qemu/9000/clone", tok, `{"newid":9000,"full":1}`, "500 unable to create VM 9000: config file already exists", ""},
		{"start a template", "POST", "/nodes/proxmox1/qemu/9000/status/start", tok, "", "200 OK", `:qmstart:9000:gitedge@pve!edge:"`},
		{"network", "GET", "/nodes/proxmox1/network", tok, "", "200 OK", `"iface":"eno1"`},
		{"network bridges", "GET", "/nodes/proxmox1/network?type=any_bridge", tok, "", "200 OK",
			`{"data":[{"active":1,"address":"192.0.2.11","autostart":1,"bridge_fd":"0","bridge_ports":"eno1","bridge_stp":"off","cidr":"192.0.2.11/24","families":["inet"],"iface":"vmbr0","method":"static","method6":"manual","netmask":"24","priority":4,"type":"bridge"}]}`},
		{"network type", "GET", "/nodes/proxmox1/network?type=wifi", tok, "", "400 Parameter verification failed.", `"type":"value 'wifi' does not have a value in the enumeration`},
		{"network of no node", "GET", "/nodes/proxmox9/network", tok, "", "500 hostname lookup 'proxmox9' failed - failed to get address info for: proxmox9: Name or service not known", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := raw(t, srv, tc.method, tc.path, tc.auth, tc.body)
			if status != tc.status || !strings.Contains(body, tc.bodyHas) {
				t.Errorf("got %q %s\nwant %q with %s", status, body, tc.status, tc.bodyHas)
			}
		})
	}
	// The bad-parameter body lists every offending parameter.
	_, body := raw(t, srv, "POST", "/nodes/proxmox1/qemu/9000/config", tok, `{"cores":"two","onboot":"true","net0":"virtio,tag=5000"}`)
	var e struct{ Errors map[string]string }
	if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) != 3 || !strings.Contains(e.Errors["onboot"], "type check ('boolean') failed - got 'true'") {
		t.Errorf("errors = %v (%v)", e.Errors, err)
	}
}

// Error responses close the connection, as pveproxy does.
func TestErrorClosesConnection(t *testing.T) {
	_, srv := start(t, pvesim.Options{})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /api2/json/version HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	line, _ := br.ReadString('\n')
	if line != "HTTP/1.1 401 No ticket\r\n" {
		t.Errorf("status line %q", line)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "Connection: close") {
		t.Errorf("headers: %s", rest)
	}
}

func TestTicketAuthAndCSRF(t *testing.T) {
	_, srv := start(t, pvesim.Options{Users: map[string]string{"root@pam": "hunter2"}})
	c := proxmox.NewClient(srv.URL+"/api2/json", proxmox.WithCredentials(&proxmox.Credentials{Username: "root@pam", Password: "hunter2"}))
	ctx := context.Background()
	if _, err := c.Version(ctx); err != nil {
		t.Fatalf("ticket login via go-proxmox: %v", err)
	}
	s, err := c.Ticket(ctx, &proxmox.Credentials{Username: "root@pam", Password: "hunter2"})
	if err != nil {
		t.Fatal(err)
	}
	// A write with the cookie but without the CSRF token is refused.
	status, _ := raw(t, srv, "POST", "/nodes/proxmox1/qemu/9000/status/start", "", "", "Cookie", "PVEAuthCookie="+s.Ticket)
	if status != "401 Permission denied - invalid csrf token" {
		t.Errorf("write without CSRF: %s", status)
	}
	status, _ = raw(t, srv, "GET", "/version", "PVEAuthCookie="+s.Ticket, "")
	if status != "200 OK" {
		t.Errorf("ticket in Authorization: %s", status)
	}
	bad := proxmox.NewClient(srv.URL+"/api2/json", proxmox.WithCredentials(&proxmox.Credentials{Username: "root@pam", Password: "nope"}))
	if _, err := bad.Version(ctx); err == nil {
		t.Error("wrong password accepted")
	}
}

// clone150 makes VM 150 a full clone of the template with o and returns
// it once the clone task is over.
func clone150(t *testing.T, c *proxmox.Client, o proxmox.VirtualMachineCloneOptions) *proxmox.VirtualMachine {
	t.Helper()
	ctx := context.Background()
	tmpl := &proxmox.VirtualMachine{}
	tmpl.New(c, "proxmox1", pvesim.TemplateVMID)
	o.NewID, o.Full = 150, true
	_, task, err := tmpl.Clone(ctx, &o)
	if err != nil {
		t.Fatal(err)
	}
	task.Ping(ctx)
	vm := &proxmox.VirtualMachine{}
	vm.New(c, "proxmox1", 150)
	return vm
}

func client(srv *httptest.Server) *proxmox.Client {
	return proxmox.NewClient(srv.URL+"/api2/json", proxmox.WithAPIToken(tokenID, secret), proxmox.WithTimeout(5*time.Second))
}

// While a clone task runs, the new VM exists, locked, with only the
// temporary config; every change to it fails with "VM is locked (clone)".
func TestCloneLockedUntilTaskEnds(t *testing.T) {
	_, srv := start(t, pvesim.Options{TaskDuration: 200 * time.Millisecond})
	c := client(srv)
	ctx := context.Background()
	tmpl := &proxmox.VirtualMachine{}
	tmpl.New(c, "proxmox1", pvesim.TemplateVMID)
	_, task, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 150, Name: "lb-0", Full: true, Storage: "local-lvm"})
	if err != nil {
		t.Fatal(err)
	}
	node := (&proxmox.Node{}).New(c, "proxmox1")
	vm, err := node.VirtualMachine(ctx, 150)
	if err != nil {
		t.Fatal(err)
	}
	if vm.Lock != "clone" || vm.VirtualMachineConfig.Lock != "clone" || vm.VirtualMachineConfig.Description != " qmclone temporary file" {
		t.Errorf("during clone: lock %q/%q description %q", vm.Lock, vm.VirtualMachineConfig.Lock, vm.VirtualMachineConfig.Description)
	}
	if _, err := vm.Config(ctx, proxmox.VirtualMachineOption{Name: "memory", Value: 1024}); err == nil || err.Error() != "500 VM is locked (clone)" {
		t.Errorf("config during clone: %v", err)
	}
	rs, _ := (&proxmox.Cluster{}).New(c).Resources(ctx, "vm")
	if rs[0].VMID != 150 || rs[0].Status != "unknown" || rs[0].Name != "" {
		t.Errorf("resources during clone: %+v", *rs[0])
	}
	if err := task.Wait(ctx, 20*time.Millisecond, 5*time.Second); err != nil || !task.IsSuccessful {
		t.Fatalf("clone task: %v %+v", err, task)
	}
	vm, _ = node.VirtualMachine(ctx, 150)
	if vm.Lock != "" || vm.VirtualMachineConfig.SCSIs["scsi0"] != "local-lvm:vm-150-disk-0,size=2G" ||
		vm.VirtualMachineConfig.IDEs["ide2"] != "local-lvm:vm-150-cloudinit,media=cdrom" || vm.Name != "lb-0" {
		t.Errorf("after clone: %+v %+v", vm, vm.VirtualMachineConfig)
	}
	tmplCfg, _ := node.VirtualMachine(ctx, pvesim.TemplateVMID)
	if vm.VirtualMachineConfig.Nets["net0"] == tmplCfg.VirtualMachineConfig.Nets["net0"] || vm.VirtualMachineConfig.SMBios1 == tmplCfg.VirtualMachineConfig.SMBios1 {
		t.Error("clone kept the template's MAC or UUID")
	}
	l, err := task.Log(ctx, 0, 50)
	if err != nil || l[len(l)-1] != "TASK OK" {
		t.Errorf("task log %v %v", l, err)
	}
}

// A running VM: hot keys apply now, the rest is pending until start; a
// net0 without MAC gets a new one; tags are normalised.
func TestPendingSemantics(t *testing.T) {
	sim, srv := start(t, pvesim.Options{})
	c := client(srv)
	ctx := context.Background()
	vm := clone150(t, c, proxmox.VirtualMachineCloneOptions{})
	task, _ := vm.Start(ctx)
	task.Ping(ctx)
	task, err := vm.Config(ctx,
		proxmox.VirtualMachineOption{Name: "cores", Value: 4},
		proxmox.VirtualMachineOption{Name: "memory", Value: 8192},
		proxmox.VirtualMachineOption{Name: "onboot", Value: true},
		proxmox.VirtualMachineOption{Name: "tags", Value: "Zeta,alpha;alpha"},
		proxmox.VirtualMachineOption{Name: "net0", Value: "virtio,bridge=vmbr0,tag=7"},
		proxmox.VirtualMachineOption{Name: "delete", Value: "serial0"})
	if err != nil {
		t.Fatal(err)
	}
	task.Ping(ctx)
	st := sim.Snapshot().VMs[150]
	if st.Conf["cores"] != "2" || st.Pending["cores"] != "4" || st.Pending["memory"] != "8192" || st.Conf["onboot"] != "1" ||
		st.Conf["tags"] != "alpha;zeta" || st.PendingDelete[0] != "serial0" || !strings.HasSuffix(st.Conf["net0"], ",bridge=vmbr0,tag=7") {
		t.Errorf("after config on a running VM: conf %v pending %v delete %v", st.Conf, st.Pending, st.PendingDelete)
	}
	p, _ := vm.Pending(ctx)
	found := false
	for _, it := range *p {
		if it.Key == "cores" && it.Value == 2.0 && it.Pending == 4.0 {
			found = true
		}
	}
	if !found {
		t.Errorf("pending endpoint: %+v", *p)
	}
	cur := &proxmox.VirtualMachineConfig{}
	if err := c.Get(ctx, "/nodes/proxmox1/qemu/150/config?current=1", cur); err != nil || *cur.Cores != 2 {
		t.Errorf("current=1: cores %v %v", cur.Cores, err)
	}
	task, _ = vm.Reboot(ctx)
	task.Ping(ctx)
	st = sim.Snapshot().VMs[150]
	if st.Conf["cores"] != "4" || len(st.Pending) != 0 || st.Conf["serial0"] != "" {
		t.Errorf("after reboot: conf %v pending %v", st.Conf, st.Pending)
	}
}

func TestAgentBootDelayAndFaults(t *testing.T) {
	sim, srv := start(t, pvesim.Options{BootDelay: 150 * time.Millisecond})
	c := client(srv)
	ctx := context.Background()
	vm := clone150(t, c, proxmox.VirtualMachineCloneOptions{})
	task, _ := vm.Config(ctx, proxmox.VirtualMachineOption{Name: "ipconfig0", Value: "ip=192.0.2.50/24,gw=192.0.2.1"})
	task.Ping(ctx)
	task, _ = vm.Start(ctx)
	task.Ping(ctx)
	if _, err := vm.AgentGetNetworkIFaces(ctx); err == nil || err.Error() != "500 QEMU guest agent is not running" {
		t.Errorf("agent right after start: %v", err)
	}
	if err := vm.WaitForAgent(ctx, 5); err != nil {
		t.Fatal(err)
	}
	ifs, err := vm.AgentGetNetworkIFaces(ctx)
	if err != nil || ifs[0].IPAddresses[0].IPAddress != "192.0.2.50" {
		t.Errorf("agent: %v %v", ifs, err)
	}

	sim.SetFaults(pvesim.Faults{ErrorRate: 1, ErrorMessage: "can't lock file '/var/lock/qemu-server/lock-150.conf' - got timeout"})
	if _, err := c.Version(ctx); err == nil || err.Error() != "500 can't lock file '/var/lock/qemu-server/lock-150.conf' - got timeout" {
		t.Errorf("injected 500: %v", err)
	}
	sim.SetFaults(pvesim.Faults{OfflineNodes: []string{"proxmox1"}})
	if _, err := (&proxmox.Node{}).New(c, "proxmox1").VirtualMachines(ctx); err == nil {
		t.Error("offline node answered")
	}
	sim.SetFaults(pvesim.Faults{Latency: pvesim.Duration(50 * time.Millisecond)})
	t0 := time.Now()
	c.Version(ctx)
	if d := time.Since(t0); d < 50*time.Millisecond {
		t.Errorf("latency fault: call took %s", d)
	}
	sim.SetFaults(pvesim.Faults{Locked: map[int]string{150: "backup"}})
	if _, err := vm.Config(ctx, proxmox.VirtualMachineOption{Name: "cores", Value: 1}); err == nil || err.Error() != "500 VM is locked (backup)" {
		t.Errorf("locked VM: %v", err)
	}
	sim.SetFaults(pvesim.Faults{})
	if _, err := vm.Config(ctx, proxmox.VirtualMachineOption{Name: "cores", Value: 1}); err != nil {
		t.Errorf("after unlock: %v", err)
	}
}

func TestStatePersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	_, srv := start(t, pvesim.Options{StatePath: path})
	c := client(srv)
	ctx := context.Background()
	tmpl := &proxmox.VirtualMachine{}
	tmpl.New(c, "proxmox1", pvesim.TemplateVMID)
	if _, _, err := tmpl.Clone(ctx, &proxmox.VirtualMachineCloneOptions{NewID: 150, Name: "kept", Full: true}); err != nil {
		t.Fatal(err)
	}
	st, err := pvesim.LoadState(path)
	if err != nil {
		t.Fatal(err)
	}
	sim2, srv2 := start(t, pvesim.Options{State: st})
	if !strings.Contains(sim2.Dump(), "name: kept") {
		t.Errorf("state not restored:\n%s", sim2.Dump())
	}
	vm, err := (&proxmox.Node{}).New(client(srv2), "proxmox1").VirtualMachine(ctx, 150)
	if err != nil || vm.Name != "kept" {
		t.Errorf("restored VM: %v %v", vm, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Error(err)
	}
}

// With background_delay, a config write that finished in time answers null
// (go-proxmox returns a nil task, no error).
func TestConfigBackgroundDelay(t *testing.T) {
	_, srv := start(t, pvesim.Options{})
	vm := &proxmox.VirtualMachine{}
	vm.New(client(srv), "proxmox1", pvesim.TemplateVMID)
	task, err := vm.Config(context.Background(), proxmox.VirtualMachineOption{Name: "description", Value: "x"}, proxmox.VirtualMachineOption{Name: "background_delay", Value: 5})
	if err != nil || task != nil {
		t.Errorf("background_delay: task %v, err %v; want nil, nil", task, err)
	}
}
