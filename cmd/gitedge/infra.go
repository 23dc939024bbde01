package main

// The commands around the Proxmox VMs: inventory and the simulator.

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gitedge/gitedge/infra"
	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/tlscert"
	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/reconcile"
	k8syaml "sigs.k8s.io/yaml"
)

func runInventory(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "inventory", "[--config FILE] [--group NAME] [--wait D] [DIR]")
	fs.positional(0, 1, "DIR")
	config := fs.String("config", nodeconfig.DefaultPath, "the node config (its proxmox section says how to reach the API)")
	group := fs.String("group", "gitedge", "the inventory group the VMs are listed in")
	wait := fs.Duration("wait", 0, "keep asking guest agents that are not up yet for this long")
	dir, code, ok := fs.parseDir(args)
	if !ok {
		return code
	}
	nc, err := nodeconfig.Load(*config)
	if err != nil {
		return fs.fail(err)
	}
	cc, err := nc.ProxmoxClient()
	if err != nil {
		return fs.fail(err)
	}
	d, err := reconcile.LoadDir(dir)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge inventory: %s is not valid:\n%v\n", dir, err)
		return 1
	}
	api, err := infra.NewAPI(cc)
	if err != nil {
		return fs.fail(err)
	}
	hosts, err := infra.Inventory(ctx, api, d.Infra, *wait, time.Second)
	if err != nil {
		return fs.fail(err)
	}
	if err := infra.WriteINI(env.stdout, *group, hosts); err != nil {
		return fs.fail(err)
	}
	return 0
}

// tokenFlags collects repeated --token USER@REALM!ID=SECRET values.
type tokenFlags map[string]string

func (t tokenFlags) String() string { return fmt.Sprintf("%d tokens", len(t)) }

func (t tokenFlags) Set(v string) error {
	id, secret, ok := strings.Cut(v, "=")
	if !ok || secret == "" || !strings.Contains(id, "@") || !strings.Contains(id, "!") {
		return errors.New("expected USER@REALM!TOKENID=SECRET")
	}
	t[id] = secret
	return nil
}

func runPvesim(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "pvesim", "--listen ADDR [--state FILE] [--token USER@REALM!ID=SECRET ...] [--boot-delay D] [--faults FILE]")
	listen := fs.String("listen", "127.0.0.1:8006", "address to serve the API on (/api2/json)")
	statePath := fs.String("state", "", "JSON file holding the simulated cluster; loaded if it exists, saved after every change")
	tokens := tokenFlags{}
	fs.Var(tokens, "token", "accept this API token, USER@REALM!TOKENID=SECRET (repeatable)")
	bootDelay := fs.Duration("boot-delay", 5*time.Second, "how long a started VM's guest agent takes to answer")
	taskDuration := fs.Duration("task-duration", time.Second, "how long every task (clone, start, …) runs")
	haDelay := fs.Duration("ha-delay", 2*time.Second, "how long the HA manager takes to act")
	authDelay := fs.Duration("auth-fail-delay", 3*time.Second, "delay of every 401, as pveproxy does")
	faultsPath := fs.String("faults", "", "YAML or JSON file of injected faults (latency, errorRate, slowRate, slowDelay, failTasks, locked, offlineNodes, seed)")
	useTLS := fs.Bool("tls", false, "serve HTTPS with a fresh self-signed certificate, like pveproxy")
	certOut := fs.String("cert-out", "", "with --tls: write the certificate (PEM) here, for a node config's proxmox.caFile")
	if _, code, ok := fs.parse(args); !ok {
		return code
	}
	log := slog.New(slog.NewTextHandler(env.stderr, nil))
	opts := pvesim.Options{Tokens: tokens, StatePath: *statePath, BootDelay: *bootDelay, TaskDuration: *taskDuration,
		HADelay: *haDelay, AuthFailDelay: *authDelay, Logger: log}
	if *statePath != "" {
		st, err := pvesim.LoadState(*statePath)
		switch {
		case err == nil:
			opts.State = st
		case !errors.Is(err, os.ErrNotExist):
			return fs.fail(err)
		}
	}
	if *faultsPath != "" {
		data, err := os.ReadFile(*faultsPath)
		if err == nil {
			err = k8syaml.UnmarshalStrict(data, &opts.Faults)
		}
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge pvesim: faults %s: %v\n", *faultsPath, err)
			return 1
		}
	}
	if len(tokens) == 0 {
		fmt.Fprintln(env.stderr, "gitedge pvesim: warning: no --token given, every request will be refused with 401")
	}
	sim, err := pvesim.New(opts)
	if err != nil {
		return fs.fail(err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fs.fail(err)
	}
	srv := &http.Server{
		Handler:           sim,
		ReadHeaderTimeout: 10 * time.Second,
		// pveproxy speaks HTTP/1.1 only; HTTP/2 has no reason phrases.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	scheme := "http"
	if *useTLS {
		hosts := []string{"localhost", "proxmox1", "127.0.0.1", "::1"}
		if ta, ok := ln.Addr().(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
			hosts = append(hosts, ta.IP.String())
		}
		cert, der, err := tlscert.SelfSigned("pvesim", hosts, 10*365*24*time.Hour)
		if err != nil {
			return fs.fail(err)
		}
		if *certOut != "" {
			if err := os.WriteFile(*certOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
				return fs.fail(err)
			}
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		scheme = "https"
	}
	fmt.Fprintf(env.stdout, "pvesim: listening on %s://%s/api2/json\n", scheme, ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		fmt.Fprintf(env.stderr, "gitedge pvesim: %v\n", err)
		_ = sim.Close()
		return 1
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	if err := sim.Close(); err != nil {
		fmt.Fprintf(env.stderr, "gitedge pvesim: saving state: %v\n", err)
		return 1
	}
	return 0
}
