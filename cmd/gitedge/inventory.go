package main

import (
	"context"
	"fmt"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
)

func runInventory(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "inventory", "[--config FILE] [--group NAME] [--wait D] [DIR]")
	config := fs.String("config", nodeconfig.DefaultPath, "the node config (its proxmox section says how to reach the API)")
	group := fs.String("group", "gitedge", "the inventory group the VMs are listed in")
	wait := fs.Duration("wait", 0, "keep asking guest agents that are not up yet for this long")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 1 {
		fs.Usage()
		return 2
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	nc, err := nodeconfig.Load(*config)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge inventory: %v\n", err)
		return 1
	}
	cc, err := nc.ProxmoxClient()
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge inventory: %v\n", err)
		return 1
	}
	d, err := reconcile.LoadDir(dir)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge inventory: %s is not valid:\n%v\n", dir, err)
		return 1
	}
	api, err := infra.NewAPI(cc)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge inventory: %v\n", err)
		return 1
	}
	hosts, err := infra.Inventory(ctx, api, d.Infra, *wait, time.Second)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge inventory: %v\n", err)
		return 1
	}
	if err := infra.WriteINI(env.stdout, *group, hosts); err != nil {
		fmt.Fprintf(env.stderr, "gitedge inventory: %v\n", err)
		return 1
	}
	return 0
}
