package importer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tfFull = `
variable "ip" { default = "192.0.2.50/24" }
resource "proxmox_vm_qemu" "app" {
  vmid        = 300
  name        = "app-1"
  target_node = "pve2"
  clone       = "debian-12"
  desc        = "The app\n"
  cpu         = "x86-64-v2-AES"
  cores       = 4
  sockets     = 2
  memory      = 8192
  onboot      = true
  agent       = 1
  full_clone  = false
  os_type     = "cloud-init"
  tags        = "web"
  ciuser      = "ops"
  cipassword  = "hunter2"
  ipconfig0   = "ip=${var.ip},gw=192.0.2.1,ip6=auto"
  ipconfig1   = "ip=dhcp"
  nameserver  = "192.0.2.53 192.0.2.54"
  searchdomain = "example.org"
  sshkeys     = <<EOT
ssh-ed25519 AAAA one@example
ssh-ed25519 BBBB two@example
EOT
  hastate     = "started"
  hagroup     = "ha1"
  bios        = "ovmf"
  numa        = false
  network {
    model  = "virtio"
    bridge = "vmbr0"
    tag    = 40
    firewall = true
  }
  network {
    model  = "e1000"
    bridge = "vmbr1"
    tag    = -1
    macaddr = "BC:24:11:00:00:01"
  }
  disk {
    type    = "virtio"
    storage = "fast"
    size    = "32G"
    format  = "raw"
    ssd     = 1
  }
  disk {
    type    = "scsi"
    storage = "slow"
    size    = "100G"
  }
  serial {
    id   = 0
    type = "socket"
  }
  serial {
    id   = 1
    type = "socket"
  }
  vga {
    type = "std"
    memory = 16
  }
  lifecycle {
    ignore_changes = [network, sshkeys, bootdisk]
    prevent_destroy = true
  }
  connection { host = "x" }
  desc_extra = local.nope
}
`

func TestTerraformMapping(t *testing.T) {
	runChecks(t, Options{Terraform: []string{"main.tf"}}, map[string]string{"main.tf": tfFull},
		"vms/app-1.yaml: vmid: 300", "vms/app-1.yaml: node: pve2", "vms/app-1.yaml: clone: debian-12",
		`vms/app-1.yaml: description: "The app"`, "vms/app-1.yaml: cpu: x86-64-v2-AES", "vms/app-1.yaml: cores: 4",
		"vms/app-1.yaml: memory: 8192", "vms/app-1.yaml: onBoot: true", "vms/app-1.yaml: agent: true",
		"vms/app-1.yaml: disk: {bus: virtio, storage: fast, size: 32G, format: raw}",
		"vms/app-1.yaml: network: [{model: virtio, bridge: vmbr0, vlan: 40}, {model: e1000, bridge: vmbr1}]",
		"vms/app-1.yaml:     user: ops", "vms/app-1.yaml: ipConfig: {ip: 192.0.2.50/24, gateway: 192.0.2.1}",
		`vms/app-1.yaml: nameserver: "192.0.2.53 192.0.2.54"`, "vms/app-1.yaml: searchDomain: example.org",
		"vms/app-1.yaml:       - \"ssh-ed25519 AAAA one@example\"", "vms/app-1.yaml: serial: socket", "vms/app-1.yaml: vga: std",
		"vms/app-1.yaml: ha: {group: ha1, state: started}", "vms/app-1.yaml: ignoreChanges: [network, cloudInit]",
		"!vms/app-1.yaml: hunter2",
		"dropped: sockets = 2: gitedge has no sockets field", "dropped: cipassword: a secret", "dropped: ipconfig1",
		"dropped: ipconfig0: ip6=auto", "changed: full_clone = false: gitedge always makes full clones", "note: tags = web",
		"note: os_type = cloud-init", "dropped: bios = ovmf: no gitedge counterpart", "note: numa = false: the provider's",
		"dropped: network firewall = true", "note: network macaddr = BC:24:11:00:00:01", "dropped: disk ssd = 1",
		"dropped: main.tf:51: proxmox_vm_qemu.app: disk: gitedge manages one disk", "dropped: serial 1: gitedge manages serial0 only",
		"dropped: vga memory = 16", "dropped: ignore_changes bootdisk", "dropped: lifecycle prevent_destroy",
		"dropped: connection { … }: no gitedge counterpart", "dropped: main.tf:73: proxmox_vm_qemu.app: desc_extra = local.nope: cannot be resolved",
		"note: ownership: a VM Terraform created has no \"gitedge\" tag",
	)
	if strings.Contains(tfFull, "hunter2") {
		res, err := Import(Options{Terraform: []string{"main.tf"}, ReadFile: memFiles(map[string]string{"main.tf": tfFull})})
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		_ = res.Report.Write(&b)
		if strings.Contains(b.String(), "hunter2") {
			t.Error("the report shows the cipassword value")
		}
	}
}

func TestTerraform3x(t *testing.T) {
	runChecks(t, Options{Terraform: []string{"main.tf"}}, map[string]string{"main.tf": `
resource "proxmox_vm_qemu" "x" {
  vmid        = 400
  name        = "x"
  target_node = "pve"
  clone       = "tmpl"
  cpu {
    cores   = 2
    sockets = 1
    type    = "host"
  }
  disks {
    ide {
      ide2 {
        cloudinit { storage = "local" }
      }
    }
    scsi {
      scsi0 {
        disk {
          size    = 20
          storage = "vmdata"
        }
      }
      scsi1 {
        disk {
          size    = 50
          storage = "vmdata"
        }
      }
    }
  }
}
`}, "vms/x.yaml: cores: 2", "vms/x.yaml: cpu: host", "vms/x.yaml: disk: {bus: scsi, storage: vmdata, size: 20G}",
		"dropped: disks scsi scsi1: gitedge manages one disk")
}

// TestTerraformDirectory: a directory brings its .tf files, tfvars and
// terraform.tfstate; the state's VMID completes the configuration and a
// drift between them is noted.
func TestTerraformDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(n, s string) {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("main.tf", "variable \"mem\" {}\nresource \"proxmox_vm_qemu\" \"v\" {\n  name = \"v1\"\n  target_node = \"pve\"\n  clone = \"t\"\n  memory = var.mem\n}\n")
	write("terraform.tfvars", "mem = 2048\n")
	write("terraform.tfstate", `{"version": 4, "resources": [{"mode": "managed", "type": "proxmox_vm_qemu", "name": "v", "instances": [
{"attributes": {"name": "v1", "vmid": 777, "memory": 1024, "target_node": "pve", "clone": "t"}}]}]}`)
	t.Chdir(dir)
	runChecks(t, Options{Terraform: []string{"."}}, nil,
		"vms/v1.yaml: vmid: 777", "vms/v1.yaml: memory: 2048",
		"note: main.tf:6: proxmox_vm_qemu.v: memory: the state has 1024, the configuration 2048",
		"vms/v1.yaml: # main.tf:2: proxmox_vm_qemu.v (configuration)", "vms/v1.yaml: # terraform.tfstate:2: proxmox_vm_qemu.v (state)")
}

func TestTerraformErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file, data, want string
	}{
		{"no vmid", "main.tf", "resource \"proxmox_vm_qemu\" \"v\" {\n  name = \"a\"\n}\n",
			"main.tf:1: proxmox_vm_qemu.v: no vmid: Proxmox picked it when Terraform created the VM; add the state"},
		{"no name", "main.tf", "resource \"proxmox_vm_qemu\" \"v\" {\n  name = var.x\n  vmid = 100\n}\n", "main.tf:1: proxmox_vm_qemu.v: no name the importer can resolve"},
		{"two VMs with one name", "main.tf", "resource \"proxmox_vm_qemu\" \"v\" {\n  count = 2\n  name = \"a\"\n  vmid = 100\n}\n", `main.tf:1: proxmox_vm_qemu.v[1]: a second VM named "a"`},
		{"HCL syntax", "main.tf", "resource \"proxmox_vm_qemu\" \"v\" {\n  name = = 1\n}\n", "main.tf:2: "},
		{"state syntax", "s.json", "{\n\"version\": 4,\n\"resources\": [}\n", "s.json:3: not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runChecks(t, Options{Terraform: []string{tc.file}}, map[string]string{tc.file: tc.data}, "error: "+tc.want)
		})
	}
}

// TestNodeAddressFromVM: without unicast_src_ip, a node's address comes
// from the Terraform VM of the same name.
func TestNodeAddressFromVM(t *testing.T) {
	files := map[string]string{
		"a.conf":  kaConf("100", ""),
		"b.conf":  kaConf("90", ""),
		"main.tf": "resource \"proxmox_vm_qemu\" \"lb\" {\n  count = 2\n  vmid = 150 + count.index\n  name = \"lb-${count.index}\"\n  ipconfig0 = \"ip=192.0.2.${10 + count.index}/24\"\n  target_node = \"pve\"\n  clone = \"t\"\n}\n",
	}
	runChecks(t, Options{Keepalived: []NodeFile{{"lb-0", "a.conf"}, {"lb-1", "b.conf"}}, Terraform: []string{"main.tf"}}, files,
		"edge.yaml: - {name: lb-1, address: 192.0.2.11} # ipconfig0 of proxmox_vm_qemu.lb[1], main.tf:5",
		"note: main.tf:5: node lb-0: address 192.0.2.10: taken from the VM of the same name",
		`edge.yaml: leader: "vrrp:VI_1"`)
}
