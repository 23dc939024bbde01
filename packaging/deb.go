package packaging

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"path/filepath"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"

	"github.com/gitedge/gitedge/internal/atomicfile"
)

const description = `edge load balancer agent: Host/SNI proxy, VRRP and Proxmox VMs from git
gitedge pulls a git repository of YAML and makes the node match it: a
Host/SNI reverse proxy (PROXY protocol to backends) hot-reloaded without
dropping a connection, VRRP v2/v3 failover of floating IPs, interoperable
with keepalived, and Proxmox VE virtual machines reconciled to their
declared spec. It replaces HAProxy, keepalived, Terraform and Ansible on
edge load-balancer nodes.`

// DebName is the file name of the package for a version and Go
// architecture: gitedge_<debian version>_<debian arch>.deb.
func DebName(version, arch string) (string, error) {
	v, err := DebianVersion(version)
	if err != nil {
		return "", err
	}
	a, ok := arches[arch]
	if !ok {
		return "", fmt.Errorf("arch %q: expected one of amd64, arm64", arch)
	}
	return fmt.Sprintf("gitedge_%s_%s.deb", v, a.debian), nil
}

// BuildDeb writes the Debian package to o.Out and returns its path.
//
// It holds the binary, the unit, the example node config as a conffile
// and the docs; the maintainer scripts create the gitedge user, give
// /etc/gitedge to its group and enable (not start) the unit. The binary is
// static, so the only dependency is adduser, which postinst runs; git is
// suggested, for file:// sources.
func BuildDeb(o Options) (string, error) {
	if err := o.check(); err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	version, err := DebianVersion(o.Version)
	if err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	name, err := DebName(o.Version, o.Arch)
	if err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	pkgDir := filepath.Join(o.Root, "packaging")
	contents := files.Contents{
		file(o.Binary, binPath, 0o755, ""),
		file(filepath.Join(pkgDir, "gitedge.service"), unitPath, 0o644, ""),
		file(filepath.Join(pkgDir, "gitedge.yaml"), configPath, 0o644, files.TypeConfig),
	}
	dd, err := docs(o.Root)
	if err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	for _, d := range dd {
		contents = append(contents, file(filepath.Join(o.Root, filepath.FromSlash(d)), path.Join(docDir, d), 0o644, ""))
	}
	info := &nfpm.Info{
		Name:          "gitedge",
		Arch:          arches[o.Arch].debian,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none", // already a Debian version: use it as is
		Section:       "net",
		Priority:      "optional",
		Maintainer:    cmp.Or(o.Maintainer, DefaultMaintainer),
		Description:   description,
		MTime:         o.MTime,
		Overridables: nfpm.Overridables{
			Depends: []string{"adduser"},
			// file:// and path sources run git-upload-pack (go-git's file
			// transport); ssh and https need nothing.
			Suggests: []string{"git"},
			Contents: contents,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(pkgDir, "deb", "postinst"),
				PreRemove:   filepath.Join(pkgDir, "deb", "prerm"),
				PostRemove:  filepath.Join(pkgDir, "deb", "postrm"),
			},
		},
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return "", fmt.Errorf("deb: %w", err)
	}
	out := filepath.Join(o.Out, name)
	if err := atomicfile.Write(out, 0o644, func(f *os.File) error { return deb.Default.Package(nfpm.WithDefaults(info), f) }); err != nil {
		return "", fmt.Errorf("deb %s: %w", out, err)
	}
	return out, nil
}

func file(src, dst string, mode os.FileMode, typ string) *files.Content {
	return &files.Content{
		Source:      src,
		Destination: dst,
		Type:        typ,
		FileInfo:    &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode},
	}
}
