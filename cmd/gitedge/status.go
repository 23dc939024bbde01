package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/gitedge/gitedge/nodeconfig"
)

// runStatus asks a running node's admin server what it runs.
func runStatus(ctx context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "status", "[--admin ADDR | --config FILE] [--output text|json]")
	config := fs.String("config", nodeconfig.DefaultPath, "node config; its admin.listen is asked")
	admin := fs.String("admin", "", "admin address to ask (overrides --config), as 127.0.0.1:9100")
	output := fs.String("output", "text", "text or json")
	if _, code, ok := parseFlags(fs, args); !ok {
		return code
	}
	addr := *admin
	if addr == "" {
		c, err := nodeconfig.Load(*config)
		if err != nil {
			fmt.Fprintf(env.stderr, "gitedge status: %v (or pass --admin ADDR)\n", err)
			return 1
		}
		if addr = c.AdminListen; addr == "" {
			fmt.Fprintf(env.stderr, "gitedge status: %s: admin.listen is off: no admin server to ask\n", *config)
			return 1
		}
	}
	if strings.HasPrefix(addr, ":") {
		addr = "127.0.0.1" + addr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: is gitedge running? %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(env.stderr, "gitedge status: %s answered %s %v\n", addr, resp.Status, err)
		return 1
	}
	if *output == "json" {
		env.stdout.Write(body)
		return 0
	}
	var s nodeStatus
	if err := json.Unmarshal(body, &s); err != nil {
		fmt.Fprintf(env.stderr, "gitedge status: bad answer from %s: %v\n", addr, err)
		return 1
	}
	printStatus(env.stdout, s)
	if s.LastAttempt != nil && s.LastAttempt.Error != "" {
		return 1
	}
	return 0
}

func printStatus(w io.Writer, s nodeStatus) {
	fmt.Fprintf(w, "node:         %s (gitedge %s)\n", s.Node, s.Version)
	if s.Live != nil {
		signer := s.Live.Signer
		if signer == "" {
			signer = "not verified"
		}
		restored := ""
		if s.Live.Restored {
			restored = " (restored at start from the last applied record)"
		}
		fmt.Fprintf(w, "live commit:  %s, applied %s ago%s, signed by %s\n", s.Live.Commit, time.Since(s.Live.AppliedAt).Round(time.Second), restored, signer)
		if s.Live.Message != "" {
			fmt.Fprintf(w, "              %q by %s\n", s.Live.Message, s.Live.Author)
		}
	} else {
		why := ""
		if c, ok := s.Conditions["live"]; ok && c.Message != "" {
			why = " (" + c.Message + ")"
		}
		fmt.Fprintf(w, "live commit:  none yet%s\n", why)
	}
	if a := s.LastAttempt; a != nil {
		fmt.Fprintf(w, "last attempt: %s (%s, trigger %s, %s ago, took %s)\n", a.Result, a.Commit, a.Trigger,
			time.Since(a.Started).Round(time.Second), a.Duration.Round(time.Millisecond))
		if a.Plan != "" {
			fmt.Fprintf(w, "              plan: %s\n", a.Plan)
		}
		if a.Error != "" {
			fmt.Fprintf(w, "              error: %s\n", strings.ReplaceAll(a.Error, "\n", "\n                     "))
		}
	}
	if r := s.LastResync; r != nil && r.Error != "" {
		fmt.Fprintf(w, "last resync:  %s (%s ago): %s\n", r.Result, time.Since(r.Started).Round(time.Second), r.Error)
	}
	names := make([]string, 0, len(s.Conditions))
	for n := range s.Conditions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := s.Conditions[n]
		fmt.Fprintf(w, "%-13s %s", n+":", c.Status)
		if c.Message != "" {
			fmt.Fprintf(w, " — %s", c.Message)
		}
		fmt.Fprintln(w)
	}
	for _, part := range []struct {
		name string
		v    any
	}{{"vrrp", s.VRRP}, {"backends", s.Backends}, {"infra", s.Infra}} {
		if part.v == nil {
			continue
		}
		b, _ := json.MarshalIndent(part.v, "              ", "  ")
		fmt.Fprintf(w, "%-13s %s\n", part.name+":", b)
	}
}
