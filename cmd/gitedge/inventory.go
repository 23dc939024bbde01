package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/reconcile"
)

func runInventory(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "inventory", "[--config FILE] [--group NAME] [--wait D] [DIR]")
	config := fs.String("config", reconcile.DefaultNodeConfigPath, "the node config (its proxmox section says how to reach the API)")
	group := fs.String("group", "gitedge", "the inventory group the VMs are listed in")
	wait := fs.Duration("wait", 0, "keep asking guest agents that are not up yet for this long")
	pos, code, ok := parseFlags(fs, args)
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
	nc, err := reconcile.LoadNodeConfig(*config)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge inventory: %v\n", err)
		return 1
	}
	cc, err := proxmoxClientConfig(nc)
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

// proxmoxClientConfig maps the node config's proxmox section onto the
// infra client config, reading the token secret from its file. Errors name
// the file, never its content.
func proxmoxClientConfig(nc *reconcile.NodeConfig) (infra.ClientConfig, error) {
	p := nc.Proxmox
	if p == nil {
		return infra.ClientConfig{}, fmt.Errorf("node config %s: no proxmox section (url, tokenID, tokenSecretFile)", nc.Path)
	}
	data, err := os.ReadFile(p.TokenSecretFile)
	if err != nil {
		return infra.ClientConfig{}, fmt.Errorf("node config %s: proxmox.tokenSecretFile: %w", nc.Path, err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return infra.ClientConfig{}, errors.New("node config " + nc.Path + ": proxmox.tokenSecretFile " + p.TokenSecretFile + " is empty")
	}
	return infra.ClientConfig{
		URL:                p.URL,
		TokenID:            p.TokenID,
		TokenSecret:        infra.Secret(secret),
		CAFile:             p.CAFile,
		InsecureSkipVerify: p.InsecureSkipVerify,
	}, nil
}
