package bgp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The test binary doubles as the lab's speaker nodes: with
// GITEDGE_BGP_HELPER=speaker it runs one node (a Speaker and a small TCP
// service answering its name) inside the namespace `ip netns exec` put
// it in, driven over HTTP on a Unix socket (the filesystem is shared
// across namespaces). Its file descriptor 3 is a lifeline: the read end
// of a pipe whose write end only the test process holds, so a helper
// exits when the test process dies, however it dies.
const (
	envHelper     = "GITEDGE_BGP_HELPER"
	envNode       = "GITEDGE_BGP_NODE"
	envCtl        = "GITEDGE_BGP_CTL"
	envPort       = "GITEDGE_BGP_PORT"
	envConfig     = "GITEDGE_BGP_CONFIG"     // a successor's config (JSON)
	envRestarting = "GITEDGE_BGP_RESTARTING" // set in a successor
)

// Descriptors a helper inherits: the lifeline; a successor also gets the
// service's listener and a pipe to say it is ready.
const (
	fdLifeline = 3
	fdListener = 4
	fdReady    = 5
)

func TestMain(m *testing.M) {
	if os.Getenv(envHelper) == "speaker" {
		os.Exit(speakerHelper())
	}
	os.Exit(m.Run())
}

// helper is one node's process.
type helper struct {
	name string
	port int
	log  *slog.Logger
	sp   *Speaker

	mu    sync.Mutex
	ln    net.Listener
	cfg   Config
	ready chan struct{}
	conns sync.WaitGroup
}

// stopReport is what /stop and /upgrade answer, in Unix nanoseconds.
type stopReport struct {
	WithdrawnAt      int64 `json:"withdrawnAt"`
	ListenerClosedAt int64 `json:"listenerClosedAt"`
	SuccessorPID     int   `json:"successorPID,omitempty"`
	HandedOverAt     int64 `json:"handedOverAt,omitempty"`
}

// lifeline is a helper's fd 3, kept referenced: a second *os.File on it
// would close it when collected.
var lifeline *os.File

func speakerHelper() int {
	life := os.NewFile(fdLifeline, "lifeline")
	lifeline = life
	go func() {
		_, _ = io.Copy(io.Discard, life)
		os.Exit(3) // the test process is gone
	}()
	h := &helper{name: os.Getenv(envNode), ready: make(chan struct{})}
	h.port, _ = strconv.Atoi(os.Getenv(envPort))
	h.log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("node", h.name, "pid", os.Getpid())
	restarting := os.Getenv(envRestarting) != ""
	if restarting {
		ln, err := net.FileListener(os.NewFile(fdListener, "listener"))
		if err != nil {
			h.log.Error("inheriting the listener", "err", err)
			return 1
		}
		h.startServing(ln)
	}
	sp, err := New(Options{Logger: h.log, Registerer: prometheus.NewRegistry(), Ready: h.ready, Restarting: restarting})
	if err != nil {
		h.log.Error("new speaker", "err", err)
		return 1
	}
	h.sp = sp
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- sp.Run(ctx) }()

	if restarting {
		if err := json.Unmarshal([]byte(os.Getenv(envConfig)), &h.cfg); err != nil {
			h.log.Error("successor config", "err", err)
			return 1
		}
		if err := sp.Apply(ctx, h.cfg); err != nil {
			h.log.Error("successor apply", "err", err)
			return 1
		}
	}
	ctl, err := net.Listen("unix", os.Getenv(envCtl))
	if err != nil {
		h.log.Error("control socket", "err", err)
		return 1
	}
	exit := make(chan int, 1)
	srv := &http.Server{Handler: h.mux(exit), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ctl)
	if restarting {
		ready := os.NewFile(fdReady, "ready")
		fmt.Fprintln(ready, "ready")
		ready.Close()
	}
	code := <-exit
	// The answer to /stop or /upgrade has gone out; finish and leave.
	shut, cancelShut := context.WithTimeout(context.Background(), 2*time.Second)
	_ = srv.Shutdown(shut)
	cancelShut()
	cancel()
	<-runDone
	return code
}

// startServing answers every connection with the node's name, then
// echoes every line it reads, until the client closes.
func (h *helper) startServing(ln net.Listener) {
	h.mu.Lock()
	h.ln = ln
	h.mu.Unlock()
	close(h.ready)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			h.conns.Add(1)
			go func() {
				defer h.conns.Done()
				defer c.Close()
				if _, err := c.Write([]byte(h.name + "\n")); err != nil {
					return
				}
				r := bufio.NewReader(c)
				for {
					l, err := r.ReadBytes('\n')
					if err != nil {
						return
					}
					if _, err := c.Write(l); err != nil {
						return
					}
				}
			}()
		}
	}()
}

func (h *helper) mux(exit chan<- int) *http.ServeMux {
	mux := http.NewServeMux()
	fail := func(w http.ResponseWriter, err error) { http.Error(w, err.Error(), http.StatusInternalServerError) }
	mux.HandleFunc("POST /apply", func(w http.ResponseWriter, r *http.Request) {
		var cfg Config
		if err := json.NewDecoder(r.Body).Decode(&cfg); err != nil {
			fail(w, err)
			return
		}
		if err := h.sp.Apply(r.Context(), cfg); err != nil {
			fail(w, err)
			return
		}
		h.mu.Lock()
		h.cfg = cfg
		h.mu.Unlock()
	})
	mux.HandleFunc("POST /serve", func(w http.ResponseWriter, r *http.Request) {
		ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(h.port)))
		if err != nil {
			fail(w, err)
			return
		}
		h.startServing(ln)
	})
	mux.HandleFunc("POST /healthy", func(w http.ResponseWriter, r *http.Request) {
		h.sp.SetProxyHealthy(r.URL.Query().Get("ok") == "1")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(h.sp.Status())
	})
	// /stop is a clean stop as gitedge run does it on SIGTERM: withdraw,
	// wait for the withdrawal to propagate, then close the listener.
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		prop, err := time.ParseDuration(r.URL.Query().Get("propagation"))
		if err != nil {
			fail(w, err)
			return
		}
		if err := h.sp.Withdraw(r.Context(), prop); err != nil {
			fail(w, err)
			return
		}
		rep := stopReport{WithdrawnAt: time.Now().UnixNano()}
		h.mu.Lock()
		if h.ln != nil {
			h.ln.Close()
		}
		h.mu.Unlock()
		rep.ListenerClosedAt = time.Now().UnixNano()
		_ = json.NewEncoder(w).Encode(rep)
		exit <- 0
	})
	// /upgrade is a SIGUSR2 upgrade: start the successor with the listener
	// and the config, wait until it is ready, hand the sessions over, then
	// drain and leave.
	mux.HandleFunc("POST /upgrade", func(w http.ResponseWriter, r *http.Request) {
		rep, err := h.upgrade(r.URL.Query().Get("ctl"))
		if err != nil {
			fail(w, err)
			return
		}
		_ = json.NewEncoder(w).Encode(rep)
		exit <- 0
	})
	return mux
}

func (h *helper) upgrade(ctl string) (stopReport, error) {
	h.mu.Lock()
	ln, cfg := h.ln, h.cfg
	h.mu.Unlock()
	if ln == nil {
		return stopReport{}, errors.New("not serving")
	}
	lf, err := ln.(*net.TCPListener).File()
	if err != nil {
		return stopReport{}, err
	}
	defer lf.Close()
	cj, err := json.Marshal(cfg)
	if err != nil {
		return stopReport{}, err
	}
	rr, rw, err := os.Pipe()
	if err != nil {
		return stopReport{}, err
	}
	defer rr.Close()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), envRestarting+"=1", envConfig+"="+string(cj), envCtl+"="+ctl)
	cmd.ExtraFiles = []*os.File{lifeline, lf, rw}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// Its own session: it outlives this process (the test kills it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		rw.Close()
		return stopReport{}, err
	}
	rw.Close()
	if err := rr.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		_ = err // a pipe without deadlines: the lifeline bounds the wait
	}
	if _, err := bufio.NewReader(rr).ReadString('\n'); err != nil {
		return stopReport{}, fmt.Errorf("the successor did not get ready: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.sp.HandOver(ctx); err != nil {
		return stopReport{}, err
	}
	rep := stopReport{SuccessorPID: cmd.Process.Pid, HandedOverAt: time.Now().UnixNano()}
	// Stop accepting (the successor holds the socket too) and drain.
	ln.Close()
	rep.ListenerClosedAt = time.Now().UnixNano()
	drained := make(chan struct{})
	go func() { h.conns.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(5 * time.Second):
	}
	_ = cmd.Process.Release()
	return rep, nil
}
