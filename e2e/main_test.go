//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"testing"
)

// The test binary doubles as the lab's helper processes, started inside a
// namespace with `ip netns exec`: GE_E2E_HELPER=serve is a node's tiny TCP
// service on the VIPs (bound with IP_FREEBIND, so it runs whether or not
// the node holds them), GE_E2E_HELPER=probe is the client probing a VIP.
func TestMain(m *testing.M) {
	switch os.Getenv("GE_E2E_HELPER") {
	case "serve":
		serve(os.Getenv("GE_E2E_NAME"), strings.Split(os.Getenv("GE_E2E_LISTEN"), ","))
	case "probe":
		probe(os.Getenv("GE_E2E_TARGET"))
	default:
		code := m.Run()
		printFigures(os.Stdout)
		// go test hides a passing package's output; the Makefile names a
		// file to keep the table and prints it after the run.
		if path := os.Getenv("GE_E2E_FIGURES"); path != "" {
			if f, err := os.Create(path); err == nil {
				printFigures(f)
				f.Close()
			}
		}
		cleanupKeys()
		os.Exit(code)
	}
}

// serve answers every connection with the node's name, until killed.
func serve(name string, addrs []string) {
	lc := net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if network == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for _, a := range addrs {
		ln, err := lc.Listen(context.Background(), "tcp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					continue
				}
				c.Write([]byte(name + "\n"))
				c.Close()
			}
		}()
	}
	fmt.Println("ready")
	select {}
}

// probe connects to target every 10 ms, each attempt on its own so a hung
// one never delays the next, and prints "<unix ns sent> <node or ->" per
// attempt. It stops after 20 minutes at the latest.
func probe(target string) {
	out := make(chan string, 1024)
	go func() {
		w := bufio.NewWriter(os.Stdout)
		tick := time.NewTicker(50 * time.Millisecond)
		for {
			select {
			case l := <-out:
				w.WriteString(l)
			case <-tick.C:
				w.Flush()
			}
		}
	}()
	var wg sync.WaitGroup
	deadline := time.Now().Add(20 * time.Minute)
	t := time.NewTicker(10 * time.Millisecond)
	for now := range t.C {
		if now.After(deadline) {
			break
		}
		wg.Go(func() {
			who := "-"
			c, err := net.DialTimeout("tcp", target, 150*time.Millisecond)
			if err == nil {
				c.SetDeadline(time.Now().Add(150 * time.Millisecond))
				if l, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					who = strings.TrimSpace(l)
				}
				c.Close()
			}
			out <- fmt.Sprintf("%d %s\n", now.UnixNano(), who)
		})
	}
	wg.Wait()
}
