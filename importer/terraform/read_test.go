package terraform

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/gitedge/gitedge/importer/report"
	"github.com/google/go-cmp/cmp"
)

func attr(vm *VM, k string) any {
	if v, ok := vm.Attrs[k]; ok {
		return v.V
	}
	return "<unset>"
}

func TestSeedConfig(t *testing.T) {
	data, err := os.ReadFile("../testdata/seed/main.tf")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ReadConfig([]File{{"main.tf", data}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.VMs) != 2 {
		t.Fatalf("%d VMs, want 2 (count = var.num_loadbalancers)", len(r.VMs))
	}
	vm := r.VMs[1]
	got := map[string]any{
		"address": vm.Address, "line": vm.Line, "name": attr(vm, "name"), "desc": attr(vm, "desc"),
		"ipconfig0": attr(vm, "ipconfig0"), "target_node": attr(vm, "target_node"), "memory": attr(vm, "memory"),
		"agent": attr(vm, "agent"), "onboot": attr(vm, "onboot"), "tag": vm.Blocks["network"][0].Attrs["tag"].V,
		"disk": vm.Blocks["disk"][0].Attrs["size"].V, "serial": vm.Blocks["serial"][0].Attrs["type"].V,
		"ignore": vm.Blocks["lifecycle"][0].Attrs["ignore_changes"].V, "unresolved": len(vm.Unresolved),
		"memoryLine": vm.Attrs["memory"].Line,
	}
	want := map[string]any{
		"address": "proxmox_vm_qemu.proxmox_vm_loadbalancer[1]", "line": 70, "name": "lb-1", "desc": "HAProxy Loadbalancer 1",
		"ipconfig0": "gw=xxx.xxx.xxx.1,ip=xxx.xxx.xxx.251/24", "target_node": "proxmox1", "memory": "4096",
		"agent": 1.0, "onboot": true, "tag": 33.0, "disk": "8G", "serial": "socket", "ignore": []any{"network"},
		"unresolved": 0, "memoryLine": 87,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("lb-1 (-want +got):\n%s", d)
	}
	var other []string
	for _, o := range r.Other {
		other = append(other, o.Kind+" "+o.What)
	}
	wantOther := []string{"terraform terraform", `provider provider "proxmox"`, `data data "template_file" "loadbalancer"`,
		`resource resource "local_file" "loadbalancer_file"`, `output output "Loadbalancers-IPS"`}
	if d := cmp.Diff(wantOther, other); d != "" {
		t.Errorf("other blocks (-want +got):\n%s", d)
	}
}

func TestConfigResolution(t *testing.T) {
	files := []File{
		{"vms.tf", []byte(`
variable "nodes" { default = { a = "pve1", b = "pve2" } }
variable "mem" {}
variable "cores" { default = 2 }
locals {
  base   = "web"
  prefix = "${local.base}-${var.env}"
}
variable "env" { default = "dev" }
resource "proxmox_vm_qemu" "web" {
  for_each    = var.nodes
  name        = "${local.prefix}-${each.key}"
  target_node = each.value
  memory      = var.mem
  cores       = var.cores
  vmid        = 100 + length(var.nodes)
  clone       = upper("tmpl")
  desc        = data.something.x.id
  dynamic "network" {
    for_each = [1]
    content { bridge = "vmbr0" }
  }
}
resource "proxmox_vm_qemu" "n" {
  count = var.unknown_count
}
`)},
		{"terraform.tfvars", []byte(`env = "prod"` + "\n" + `cores = 4` + "\n")},
	}
	r, err := ReadConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.VMs) != 3 {
		t.Fatalf("%d VMs: %+v", len(r.VMs), r.VMs)
	}
	a := r.VMs[0]
	got := map[string]any{"address": a.Address, "name": attr(a, "name"), "node": attr(a, "target_node"), "cores": attr(a, "cores"),
		"vmid": attr(a, "vmid"), "clone": attr(a, "clone"), "memory": attr(a, "memory")}
	want := map[string]any{"address": `proxmox_vm_qemu.web["a"]`, "name": "web-prod-a", "node": "pve1", "cores": 4.0,
		"vmid": 102.0, "clone": "TMPL", "memory": "<unset>"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("web[a] (-want +got):\n%s", d)
	}
	var unres []string
	for _, u := range a.Unresolved {
		unres = append(unres, u.Pos.String()+" "+u.Attr+" = "+u.Expr+": "+u.Why)
	}
	for _, w := range []string{
		`vms.tf:14 memory = var.mem: variable "mem" has no default and no tfvars value`,
		"vms.tf:18 desc = data.something.x.id: ",
		"vms.tf:19 dynamic = dynamic \"network\": dynamic blocks are not expanded",
	} {
		if !strings.Contains(strings.Join(unres, "\n"), w) {
			t.Errorf("unresolved lacks %q:\n%s", w, strings.Join(unres, "\n"))
		}
	}
	n := r.VMs[2]
	if n.Address != "proxmox_vm_qemu.n" || len(n.Unresolved) != 1 || n.Unresolved[0].Attr != "count" {
		t.Errorf("unresolvable count: %+v", n)
	}
}

func TestState(t *testing.T) {
	tfstate := []byte(`{
  "version": 4,
  "terraform_version": "1.5.7",
  "resources": [
    {
      "module": "module.lb",
      "mode": "managed",
      "type": "proxmox_vm_qemu",
      "name": "vm",
      "instances": [
        {
          "index_key": "a",
          "attributes": {
            "id": "pve/qemu/120",
            "name": "a",
            "vmid": 120,
            "memory": 2048,
            "network": [{"bridge": "vmbr1", "tag": -1}],
            "ssh_host": "192.0.2.9"
          }
        }
      ]
    },
    {"mode": "data", "type": "local_file", "name": "x", "instances": []}
  ]
}`)
	r, err := ReadState("terraform.tfstate", tfstate)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.VMs) != 1 || len(r.Other) != 1 {
		t.Fatalf("%+v", r)
	}
	vm := r.VMs[0]
	if vm.Address != `module.lb.proxmox_vm_qemu.vm["a"]` || vm.Line != 13 || vm.Source != FromState || attr(vm, "vmid") != 120.0 ||
		attr(vm, "id") != "<unset>" || attr(vm, "ssh_host") != "<unset>" || vm.Blocks["network"][0].Attrs["bridge"].V != "vmbr1" ||
		vm.Blocks["network"][0].Line != 18 {
		t.Errorf("state VM: %+v at line %d, network at %d", vm, vm.Line, vm.Blocks["network"][0].Line)
	}
	if o := r.Other[0]; o.What != "data.local_file.x" || o.Line != 24 {
		t.Errorf("other: %+v", o)
	}
	show := []byte(`{"format_version":"1.0","values":{"root_module":{"resources":[],
"child_modules":[{"address":"module.m","resources":[
{"address":"module.m.proxmox_vm_qemu.x[0]","mode":"managed","type":"proxmox_vm_qemu","values":{"name":"x","vmid":200}}]}]}}}`)
	r, err = ReadState("show.json", show)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.VMs) != 1 || r.VMs[0].Address != "module.m.proxmox_vm_qemu.x[0]" || r.VMs[0].Line != 3 || attr(r.VMs[0], "vmid") != 200.0 {
		t.Errorf("show -json child module: %+v", r.VMs)
	}
}

func TestMalformed(t *testing.T) {
	for _, tc := range []struct {
		name, file, data, want string
	}{
		{"HCL syntax", "main.tf", "resource \"proxmox_vm_qemu\" \"x\" {\n  name = \n}\n", "main.tf:2: "},
		{"unclosed block", "main.tf", "resource \"proxmox_vm_qemu\" \"x\" {\n  name = \"a\"\n", "main.tf:"},
		{"JSON syntax", "s.json", "{\n  \"version\": 4,\n  \"resources\": [,]\n}\n", "s.json:3: not valid JSON"},
		{"old state", "s.tfstate", `{"version": 3, "resources": []}`, "s.tfstate:1: state version 3: only version 4"},
		{"neither", "s.json", `{"hello": 1}`, "s.json:1: neither terraform show -json output"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			if IsState([]byte(tc.data)) || strings.HasSuffix(tc.file, ".json") || strings.HasSuffix(tc.file, ".tfstate") {
				_, err = ReadState(tc.file, []byte(tc.data))
			} else {
				_, err = ReadConfig([]File{{tc.file, []byte(tc.data)}})
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			var e *report.Error
			if !errors.As(err, &e) || e.File != tc.file || e.Line < 1 {
				t.Errorf("error not located: %#v", err)
			}
		})
	}
}
