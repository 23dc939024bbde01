package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/gitedge/gitedge/importer"
	"github.com/gitedge/gitedge/importer/report"
)

// runImport is `gitedge import`: an existing haproxy.cfg, the nodes'
// keepalived.conf and the Terraform setup of the VMs become a routes
// repository, with a report of everything not carried over as it was.
func runImport(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "import", "[--haproxy FILE] [--keepalived NODE=FILE]... [--address NODE=ADDRESS]... [--terraform FILE|DIR]... --out DIR [--force] [--strict] [--secret-password NAME]")
	var opts importer.Options
	fs.StringVar(&opts.HAProxy, "haproxy", "", "an HAProxy configuration (haproxy.cfg)")
	fs.Func("keepalived", "a node's keepalived.conf, as NODE=FILE; once per node (the priorities land per node)", func(s string) error {
		node, file, ok := strings.Cut(s, "=")
		if !ok || node == "" || file == "" {
			return fmt.Errorf("expected NODE=FILE, as lb-0=/etc/keepalived/keepalived.conf")
		}
		opts.Keepalived = append(opts.Keepalived, importer.NodeFile{Node: node, Path: file})
		return nil
	})
	fs.Func("address", "a node's address, as NODE=ADDRESS, where its keepalived.conf has no unicast_src_ip (multicast) and no Terraform VM gives it; repeatable", func(s string) error {
		node, addr, ok := strings.Cut(s, "=")
		a, err := netip.ParseAddr(addr)
		if !ok || node == "" || err != nil {
			return fmt.Errorf("expected NODE=ADDRESS, as lb-0=192.0.2.250")
		}
		opts.Addresses = append(opts.Addresses, importer.NodeAddress{Node: node, Addr: a})
		return nil
	})
	fs.Func("terraform", "Terraform: a directory (.tf, tfvars, terraform.tfstate), a .tf file, terraform show -json output or a .tfstate; repeatable", func(s string) error {
		opts.Terraform = append(opts.Terraform, s)
		return nil
	})
	out := fs.String("out", "", "the directory to write the repository into (refused when not empty, unless --force)")
	force := fs.Bool("force", false, "write into a non-empty --out, replacing its YAML files")
	fs.BoolVar(&opts.Strict, "strict", false, "fail (and write nothing) when anything is not carried over as it was")
	fs.StringVar(&opts.SecretPassword, "secret-password", "", "write each VRRP auth_pass as {secret: NAME}, resolved on the nodes, instead of the password; {instance} in NAME is the instance's name (vrrp-{instance}); the report says where each value goes")
	if _, code, ok := fs.parse(args); !ok {
		return code
	}
	switch {
	case *out == "":
		return fs.usageError("--out DIR is required")
	case opts.HAProxy == "" && len(opts.Keepalived) == 0 && len(opts.Terraform) == 0:
		return fs.usageError("nothing to import: give --haproxy, --keepalived or --terraform")
	}
	if err := importer.CheckOut(*out, *force); err != nil {
		return fs.fail(err)
	}
	res, err := importer.Import(opts)
	if res != nil {
		_ = res.Report.Write(env.stdout)
	}
	if err != nil {
		var strict *importer.StrictError
		if errors.As(err, &strict) {
			fmt.Fprintf(env.stderr, "\ngitedge import: %v\nnothing written\n", err)
		} else if res != nil && len(res.Report.Items) > 0 {
			fmt.Fprintf(env.stderr, "\ngitedge import: %v\nnothing written\n", err)
		} else {
			fmt.Fprintf(env.stderr, "gitedge import: %v\n", err)
		}
		return 1
	}
	removed, err := importer.WriteDir(*out, res.Files, *force)
	if err != nil {
		return fs.fail(err)
	}
	for _, r := range removed {
		fmt.Fprintf(env.stdout, "removed %s\n", r)
	}
	fmt.Fprintf(env.stdout, "\nwrote %s: %d file(s): %s\n", *out, len(res.Files), res.Summary)
	fmt.Fprintf(env.stdout, "%d not carried over, %d carried over with a difference, %d note(s): review them, then check with gitedge validate %s\n",
		res.Report.Count(report.Dropped), res.Report.Count(report.Changed), res.Report.Count(report.Note), *out)
	return 0
}
