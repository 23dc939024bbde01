//go:build linux

package dataplane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The new-connection benchmarks measure what one client connection costs
// the proxy: allocations (B/op, allocs/op) and CPU (cpu-µs/conn), the
// `close` and `tls-close` scenarios of bench/ without their noise. The
// clients and the servers run in a child process (this test binary
// started again as TestNewConnPeer), so every allocation and every CPU
// second this process counts is the proxy's.

// newConnPeerEnv starts the child role: "http" or "tls".
const newConnPeerEnv = "GITEDGE_NEWCONN_PEER"

// newConnParallel is how many client connections are open at once.
const newConnParallel = 8

// BenchmarkNewConn: one op is one client connection through the proxy.
// http-close: a request with Connection: close, answered from a pooled
// server connection. tls-close: a ClientHello routed by SNI, a new server
// connection, a short answer, both closed (no TLS handshake: the proxy
// never terminates TLS, so the crypto is the peers' cost, not its own).
// tls-paced: the exchanges of a TLS 1.3 handshake and one request (a
// ClientHello, the server's 3 KB flight, the client's Finished and
// request, the answer, the server's close, then the client's), at
// newConnRate connections a second: the proxy idles between events as in
// the bench harness's tls-close, so what an idle-to-busy wake-up costs
// (the runtime's threads, timers) shows in cpu-µs/conn and ctxsw/conn.
func BenchmarkNewConn(b *testing.B) {
	for _, mode := range []string{"http-close", "tls-close", "tls-paced"} {
		b.Run(mode, func(b *testing.B) { benchNewConn(b, mode) })
	}
}

// newConnRate is tls-paced's connections per second.
const newConnRate = 400

func benchNewConn(b *testing.B, mode string) {
	peer := startNewConnPeer(b, mode)
	var cfg Config
	var listener string
	if mode == "http-close" {
		listener = "http"
		cfg = Config{
			Listeners: []Listener{httpListener("http", "be")},
			Backends:  []Backend{backendOf("be", srv("s1", peer.backend))},
			Routes:    []Route{routeHTTP("a", "be", "a.test")},
		}
	} else {
		listener = "tls"
		cfg = Config{
			Listeners: []Listener{tlsListener("tls", "tbe")},
			Backends:  []Backend{backendOf("tbe", srv("t1", peer.backend))},
			Routes:    []Route{routeTLS("a", "tbe", "a.test")},
		}
	}
	p := startProxy(b, cfg, func(o *Options) { o.Logger = nil })
	addr := p.addr(b, listener)
	peer.run(b, addr, 2*newConnParallel) // warm up: pools, goroutines, buffers
	sw0 := contextSwitches(b)
	var tracer *syscallCounter
	if os.Getenv(straceEnv) != "" {
		tracer = startSyscallCounter(b)
	}
	b.ReportAllocs()
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	peer.run(b, addr, b.N)
	b.StopTimer()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(syscall.TimevalToNsec(after.Utime) - syscall.TimevalToNsec(before.Utime) +
		syscall.TimevalToNsec(after.Stime) - syscall.TimevalToNsec(before.Stime))
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/conn")
	b.ReportMetric(float64(contextSwitches(b)-sw0)/float64(b.N), "ctxsw/conn")
	if tracer != nil {
		b.ReportMetric(float64(tracer.stop(b))/float64(b.N), "syscalls/conn")
	}
}

// contextSwitches sums the voluntary and involuntary context switches of
// this process's threads (the proxy's: the peers are another process).
func contextSwitches(b *testing.B) int64 {
	b.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/status")
	if err != nil {
		b.Fatal(err)
	}
	var n int64
	for _, t := range tasks {
		st, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(st), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.HasSuffix(k, "ctxt_switches") {
				x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				n += x
			}
		}
	}
	return n
}

// straceEnv set makes BenchmarkNewConn count the proxy's system calls
// with strace (-f -c, attached to this process while the clients run;
// the CPU and time figures of such a run mean nothing).
const straceEnv = "GITEDGE_BENCH_STRACE"

type syscallCounter struct {
	cmd *exec.Cmd
	out string
}

func startSyscallCounter(b *testing.B) *syscallCounter {
	b.Helper()
	path, err := exec.LookPath("strace")
	if err != nil {
		b.Skipf("%s set but no strace: %v", straceEnv, err)
	}
	sc := &syscallCounter{out: filepath.Join(b.TempDir(), "strace.txt")}
	sc.cmd = exec.Command(path, "-f", "-c", "-o", sc.out, "-p", strconv.Itoa(os.Getpid()))
	if err := sc.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	// Attached once this process has a tracer.
	deadline := time.Now().Add(waitFor)
	for {
		st, _ := os.ReadFile("/proc/self/status")
		if i := bytes.Index(st, []byte("TracerPid:\t")); i >= 0 && !bytes.HasPrefix(st[i+len("TracerPid:\t"):], []byte("0\n")) {
			break
		}
		if time.Now().After(deadline) {
			_ = sc.cmd.Process.Kill()
			_ = sc.cmd.Wait()
			b.Fatal("strace did not attach")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return sc
}

// stop detaches strace and returns the number of calls it counted.
func (sc *syscallCounter) stop(b *testing.B) int {
	b.Helper()
	_ = sc.cmd.Process.Signal(os.Interrupt)
	_ = sc.cmd.Wait()
	out, err := os.ReadFile(sc.out)
	if err != nil {
		b.Fatal(err)
	}
	if testing.Verbose() {
		b.Logf("strace -f -c over %d connections:\n%s", b.N, out)
	}
	// The summary's last line: "100.00 seconds usecs/call calls errors total".
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 5 && f[len(f)-1] == "total" {
			n, err := strconv.Atoi(f[3])
			if err != nil {
				b.Fatalf("strace summary %q: %v", line, err)
			}
			return n
		}
	}
	b.Fatalf("no total in strace's summary:\n%s", out)
	return 0
}

// newConnPeer is the child process: servers and clients.
type newConnPeer struct {
	backend netip.AddrPort
	in      io.Writer
	out     *bufio.Reader
}

func startNewConnPeer(b *testing.B, mode string) *newConnPeer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestNewConnPeer$", "-test.count=1")
	cmd.Env = append(os.Environ(), newConnPeerEnv+"="+mode)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		in.Close() // the peer ends on stdin's EOF
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitFor):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	p := &newConnPeer{in: in, out: bufio.NewReader(out)}
	line, err := p.out.ReadString('\n')
	if err != nil {
		b.Fatalf("new-connection peer did not start: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "backend ")
	if !ok {
		b.Fatalf("new-connection peer said %q", line)
	}
	if p.backend, err = netip.ParseAddrPort(addr); err != nil {
		b.Fatal(err)
	}
	return p
}

// run has the peer make n client connections to addr and waits for them.
func (p *newConnPeer) run(b *testing.B, addr string, n int) {
	b.Helper()
	if _, err := fmt.Fprintf(p.in, "run %s %d\n", addr, n); err != nil {
		b.Fatal(err)
	}
	line, err := p.out.ReadString('\n')
	if err != nil {
		b.Fatalf("new-connection peer: %v", err)
	}
	if line != "ok\n" {
		b.Fatalf("new-connection peer: %s", strings.TrimSpace(line))
	}
}

// TestNewConnPeer is the child of BenchmarkNewConn; it does nothing in a
// normal test run.
func TestNewConnPeer(t *testing.T) {
	mode := os.Getenv(newConnPeerEnv)
	if mode == "" {
		t.Skip("the child process of BenchmarkNewConn")
	}
	var backend netip.AddrPort
	var hello, req []byte
	if mode == "http-close" {
		backend = fixedBackend(t)
		req = []byte("GET / HTTP/1.1\r\nHost: a.test\r\nUser-Agent: bench\r\nConnection: close\r\n\r\n")
	} else {
		hello = clientHelloBytes(t, "a.test")
		paced := mode == "tls-paced"
		backend = rawServer(t, func(c net.Conn) {
			defer c.Close()
			buf := make([]byte, len(hello))
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			if paced {
				if _, err := c.Write(serverFlight); err != nil {
					return
				}
				if _, err := io.ReadFull(c, buf[:len(clientFinished)]); err != nil {
					return
				}
			}
			_, _ = c.Write([]byte("tls answer\n"))
		})
		req = hello
	}
	fmt.Printf("backend %s\n", backend)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "run" {
			t.Fatalf("bad command %q", sc.Text())
		}
		n, _ := strconv.Atoi(f[2])
		run := newConnClients
		if mode == "tls-paced" {
			run = pacedClients
		}
		if err := run(f[1], n, req, mode == "http-close"); err != nil {
			fmt.Printf("error: %v\n", err)
			continue
		}
		fmt.Println("ok")
	}
}

// newConnClients makes n connections, newConnParallel at a time: each
// sends req and reads to EOF.
func newConnClients(addr string, n int, req []byte, wantHTTP bool) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, newConnParallel)
	for range newConnParallel {
		wg.Go(func() {
			buf := make([]byte, 4096)
			for next.Add(1) <= int64(n) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				_ = c.SetDeadline(time.Now().Add(waitFor))
				if _, err := c.Write(req); err != nil {
					c.Close()
					errs <- err
					return
				}
				got := 0
				for {
					r, err := c.Read(buf[got:])
					got += r
					if err != nil {
						break
					}
				}
				c.Close()
				ans := buf[:got]
				if wantHTTP && !bytes.HasPrefix(ans, []byte("HTTP/1.1 200")) || !wantHTTP && string(ans) != "tls answer\n" {
					errs <- fmt.Errorf("unexpected answer %q", ans)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// What tls-paced's peers send after the ClientHello: a server's first
// flight (ServerHello to Finished, with a certificate chain) and the
// client's Finished with a request.
var (
	serverFlight   = bytes.Repeat([]byte{0x17}, 3000)
	clientFinished = bytes.Repeat([]byte{0x17}, 120)
)

// pacedClients makes n connections at newConnRate a second (at most 64
// open at once), each a handshake's exchanges: hello, the server's
// flight, the client's Finished and request, the answer and EOF.
func pacedClients(addr string, n int, hello []byte, _ bool) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 64)
	tick := time.NewTicker(time.Second / newConnRate)
	defer tick.Stop()
	for range n {
		<-tick.C
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			errs <- pacedConn(addr, hello)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func pacedConn(addr string, hello []byte) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(waitFor))
	if _, err := c.Write(hello); err != nil {
		return err
	}
	buf := make([]byte, len(serverFlight))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("server flight: %w", err)
	}
	if _, err := c.Write(clientFinished); err != nil {
		return err
	}
	ans, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if string(ans) != "tls answer\n" {
		return fmt.Errorf("unexpected answer %q", ans)
	}
	return nil
}
