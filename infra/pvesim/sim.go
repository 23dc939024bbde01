package pvesim

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure a simulator. The zero value is a usable simulator with
// no tokens (every request is refused with 401) and instant tasks.
type Options struct {
	// Tokens maps API token IDs ("gitedge@pve!edge") to their secrets.
	Tokens map[string]string
	// Users maps users ("root@pam") to passwords, for ticket auth.
	Users map[string]string
	// State is the initial state; nil means DefaultState().
	State *State
	// StatePath, when set, is where the state is saved after every change
	// (JSON, written atomically).
	StatePath string
	// BootDelay is how long after a start the guest agent keeps answering
	// "QEMU guest agent is not running". Zero: it answers at once.
	BootDelay time.Duration
	// TaskDuration is how long every task runs. Zero: a task's work is done
	// before its UPID is returned (the task is already stopped).
	TaskDuration time.Duration
	// HADelay is how long the HA manager takes to act on a resource's
	// requested state. Zero: at once.
	HADelay time.Duration
	// RRDLag is how stale the stats part of /cluster/resources is (PVE
	// refreshes it about every 10 s): a VM created less than RRDLag ago
	// shows status "unknown" without name, and a power change shows only
	// after RRDLag. Zero: always current.
	RRDLag time.Duration
	// AuthFailDelay delays every 401, as pveproxy does (3 s there). Zero: none.
	AuthFailDelay time.Duration
	// Faults are injected failures; they can be changed later with SetFaults.
	Faults Faults
	// Logger receives one Debug line per request; nil discards.
	Logger *slog.Logger
}

// Faults are failures the simulator injects, as a real cluster under load
// produces them.
type Faults struct {
	// Latency is added to every API call.
	Latency Duration `json:"latency,omitempty"`
	// ErrorRate is the fraction (0..1) of calls answered with a 500 before
	// any work is done.
	ErrorRate float64 `json:"errorRate,omitempty"`
	// ErrorMessage is the reason phrase of those 500s; default is the lock
	// timeout message PVE sends under contention.
	ErrorMessage string `json:"errorMessage,omitempty"`
	// SlowRate is the fraction of calls delayed by an extra SlowDelay
	// (after the work is done, so a client that gives up has still changed
	// the state, as with a real overloaded node).
	SlowRate  float64  `json:"slowRate,omitempty"`
	SlowDelay Duration `json:"slowDelay,omitempty"`
	// FailTasks makes the next Count tasks of Type fail with Message.
	FailTasks []TaskFault `json:"failTasks,omitempty"`
	// Locked holds these VMs locked (VMID → lock reason, e.g. "backup")
	// until the fault is removed.
	Locked map[int]string `json:"locked,omitempty"`
	// OfflineNodes answer 595 to every request under /nodes/{node}.
	OfflineNodes []string `json:"offlineNodes,omitempty"`
	// Seed makes the random faults reproducible; 0 picks one.
	Seed uint64 `json:"seed,omitempty"`
}

// TaskFault makes tasks of one type fail.
type TaskFault struct {
	Type    string `json:"type"` // qmclone, qmconfig, resize, qmstart, qmstop, qmdestroy, ...
	Count   int    `json:"count"`
	Message string `json:"message"` // the task's exit status
}

// Duration is a time.Duration that reads and writes as "20ms" in JSON/YAML.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("duration: expected a string as \"20ms\": %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Sim is a running simulator. Its methods are safe for concurrent use.
type Sim struct {
	opts   Options
	log    *slog.Logger
	secret []byte // signs tickets

	mu     sync.Mutex
	st     *State
	faults Faults
	rng    *mrand.Rand
	tasks  map[string]*task
	calls  []Call
	timers map[*time.Timer]struct{}
	closed bool
}

// Call is one request the simulator answered.
type Call struct {
	Method string
	Path   string // without /api2/json and the query
	Status int
}

// Write reports whether the call could change state (any method but GET).
func (c Call) Write() bool { return c.Method != http.MethodGet && c.Path != "/access/ticket" }

// New makes a simulator.
func New(opts Options) (*Sim, error) {
	st := opts.State
	if st == nil {
		st = DefaultState()
	}
	s := &Sim{
		opts:   opts,
		log:    opts.Logger,
		st:     st,
		tasks:  map[string]*task{},
		timers: map[*time.Timer]struct{}{},
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.secret = make([]byte, 32)
	if _, err := rand.Read(s.secret); err != nil {
		return nil, err
	}
	s.setFaultsLocked(opts.Faults)
	return s, nil
}

// SetFaults replaces the injected faults.
func (s *Sim) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setFaultsLocked(f)
}

func (s *Sim) setFaultsLocked(f Faults) {
	old := s.faults.Locked
	s.faults = f
	seed := f.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	s.rng = mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// A held lock shows in the VM's config; release the ones dropped.
	for id := range old {
		if _, still := f.Locked[id]; !still {
			if vm := s.st.VMs[id]; vm != nil && vm.Conf["lock"] == old[id] {
				delete(vm.Conf, "lock")
			}
		}
	}
	for id, reason := range f.Locked {
		if vm := s.st.VMs[id]; vm != nil {
			vm.Conf["lock"] = reason
		}
	}
}

// Close stops pending timers (tasks, HA manager, boot) and saves the state.
func (s *Sim) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for t := range s.timers {
		t.Stop()
	}
	s.timers = nil
	return s.saveLocked()
}

func (s *Sim) saveLocked() error {
	if s.opts.StatePath == "" {
		return nil
	}
	return s.st.save(s.opts.StatePath)
}

// after runs f under the lock after d (at once, still under the lock, when
// d is zero: the caller holds it).
func (s *Sim) afterLocked(d time.Duration, f func()) {
	if d <= 0 {
		f()
		return
	}
	if s.closed {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.closed {
			return
		}
		delete(s.timers, t)
		f()
		if err := s.saveLocked(); err != nil {
			s.log.Error("pvesim: saving state", "err", err)
		}
	})
	s.timers[t] = struct{}{}
}

// Calls returns every call answered so far.
func (s *Sim) Calls() []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Call(nil), s.calls...)
}

// Writes returns the calls that could change state (not GET).
func (s *Sim) Writes() []Call {
	var w []Call
	for _, c := range s.Calls() {
		if c.Write() {
			w = append(w, c)
		}
	}
	return w
}

// ResetCalls forgets the recorded calls.
func (s *Sim) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = nil
}

// Dump renders the whole state as sorted text (see State.dump).
func (s *Sim) Dump() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.dump()
}

// Snapshot returns a deep copy of the state.
func (s *Sim) Snapshot() *State {
	s.mu.Lock()
	defer s.mu.Unlock()
	data, _ := json.Marshal(s.st)
	st := &State{}
	_ = json.Unmarshal(data, st)
	return st
}

// Edit changes the state directly, as an operator working in the Proxmox
// GUI would (no task, no checks). The VM's digest changes as in PVE.
func (s *Sim) Edit(f func(st *State)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.st)
	if err := s.saveLocked(); err != nil {
		s.log.Error("pvesim: saving state", "err", err)
	}
}

// apiError is an error response.
type apiError struct {
	code int
	msg  string
	errs map[string]string // 400 only
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.code, e.msg) }

func errf(code int, format string, a ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, a...)}
}

func paramErr(field, format string, a ...any) *apiError {
	return &apiError{code: 400, msg: "Parameter verification failed.", errs: map[string]string{field: fmt.Sprintf(format, a...)}}
}

// ServeHTTP answers the API under /api2/json.
func (s *Sim) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/api2/json")
	if !ok {
		s.writeError(w, &apiError{code: 501, msg: fmt.Sprintf("Method '%s %s' not implemented", r.Method, r.URL.Path)})
		return
	}
	s.mu.Lock()
	f := s.faults
	roll, slowRoll := s.rng.Float64(), s.rng.Float64()
	s.mu.Unlock()
	if f.Latency > 0 {
		if !sleepCtx(r.Context(), time.Duration(f.Latency)) {
			return
		}
	}
	// Every call is recorded before its answer is written, so a client
	// that got an answer finds its call in Calls.
	record := func(status int) {
		s.mu.Lock()
		s.calls = append(s.calls, Call{Method: r.Method, Path: path, Status: status})
		s.mu.Unlock()
		s.log.Debug("pvesim request", "method", r.Method, "path", path, "status", status)
	}

	user, aerr := s.authenticate(r, path)
	if aerr != nil {
		record(aerr.code)
		if d := s.opts.AuthFailDelay; d > 0 {
			sleepCtx(r.Context(), d)
		}
		s.writeError(w, aerr)
		return
	}
	if f.ErrorRate > 0 && roll < f.ErrorRate && path != "/access/ticket" {
		msg := f.ErrorMessage
		if msg == "" {
			msg = "can't lock file '/var/lock/qemu-server/lock-injected.conf' - got timeout"
		}
		record(500)
		s.writeError(w, &apiError{code: 500, msg: msg})
		return
	}
	for _, n := range f.OfflineNodes {
		if strings.HasPrefix(path, "/nodes/"+n+"/") || path == "/nodes/"+n {
			// 595: pveproxy could not reach the node; the body is empty.
			record(595)
			s.writeRaw(w, 595, "Errors during connection establishment, proxy handshake: Connection refused", nil)
			return
		}
	}
	p, perr := readParams(r)
	if perr != nil {
		record(perr.code)
		s.writeError(w, perr)
		return
	}
	s.mu.Lock()
	data, herr := s.route(r.Method, path, p, user)
	if herr == nil && r.Method != http.MethodGet {
		if err := s.saveLocked(); err != nil {
			s.log.Error("pvesim: saving state", "err", err)
		}
	}
	s.mu.Unlock()
	if herr != nil {
		record(herr.code)
		s.writeError(w, herr)
		return
	}
	if f.SlowRate > 0 && slowRoll < f.SlowRate && f.SlowDelay > 0 {
		if !sleepCtx(r.Context(), time.Duration(f.SlowDelay)) {
			return
		}
	}
	body, err := json.Marshal(map[string]any{"data": data})
	if err != nil {
		record(500)
		s.writeError(w, errf(500, "internal error: %v", err))
		return
	}
	record(200)
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Server", "pve-api-daemon/3.0")
	h.Set("Cache-Control", "max-age=0")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(200)
	_, _ = w.Write(body)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// writeError sends an error the way pve-http-server does: the message in
// the reason phrase (first line only), a JSON body with data null, message
// and for 400 the per-parameter errors, and Connection: close.
func (s *Sim) writeError(w http.ResponseWriter, e *apiError) {
	var body []byte
	if e.code != 401 {
		m := map[string]any{"data": nil, "message": e.msg + "\n"}
		if len(e.errs) > 0 {
			m["errors"] = e.errs
		}
		body, _ = json.Marshal(m)
	}
	reason := e.msg
	if strings.Contains(reason, "\n") {
		reason = http.StatusText(e.code)
	}
	s.writeRaw(w, e.code, reason, body)
}

// writeRaw writes a response with a custom reason phrase. Go's server
// always writes http.StatusText, so the connection is hijacked and the
// response written by hand (API.md 1.5); go-proxmox turns a 500 into an
// error whose text is exactly "500 <reason>" and never reads the body.
func (s *Sim) writeRaw(w http.ResponseWriter, code int, reason string, body []byte) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		w.Header().Set("Connection", "close")
		w.WriteHeader(code)
		_, _ = w.Write(body)
		return
	}
	conn, buf, err := hj.Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", code, reason)
	fmt.Fprintf(buf, "Server: pve-api-daemon/3.0\r\nCache-Control: max-age=0\r\nPragma: no-cache\r\n")
	fmt.Fprintf(buf, "Expires: %s\r\n", time.Now().UTC().Format(http.TimeFormat))
	if body != nil {
		fmt.Fprintf(buf, "Content-Type: application/json;charset=UTF-8\r\n")
	}
	fmt.Fprintf(buf, "Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))
	_, _ = buf.Write(body)
	_ = buf.Flush()
}

// principal is who made a request.
type principal struct {
	user  string // "gitedge@pve"
	token string // "edge", for API tokens
}

func (p principal) id() string {
	if p.token != "" {
		return p.user + "!" + p.token
	}
	return p.user
}

// authenticate checks an API token or a ticket (API.md 2).
func (s *Sim) authenticate(r *http.Request, path string) (principal, *apiError) {
	if path == "/access/ticket" && r.Method == http.MethodPost {
		return principal{}, nil // the login itself
	}
	if a := r.Header.Get("Authorization"); strings.HasPrefix(a, "PVEAPIToken") {
		rest := strings.TrimPrefix(a, "PVEAPIToken")
		if rest == "" || (rest[0] != '=' && rest[0] != ' ') {
			return principal{}, &apiError{code: 401, msg: "Authentication failed!"}
		}
		id, secret, ok := strings.Cut(rest[1:], "=")
		want, known := s.opts.Tokens[id]
		if !ok || !known || !hmac.Equal([]byte(secret), []byte(want)) {
			return principal{}, &apiError{code: 401, msg: "Authentication failed!"}
		}
		user, tok, _ := strings.Cut(id, "!")
		return principal{user: user, token: tok}, nil
	}
	ticket := ""
	if c, err := r.Cookie("PVEAuthCookie"); err == nil {
		ticket = c.Value
	} else if a, ok := strings.CutPrefix(r.Header.Get("Authorization"), "PVEAuthCookie="); ok {
		ticket = a
	}
	if ticket == "" {
		return principal{}, &apiError{code: 401, msg: "No ticket"}
	}
	user, ok := s.verifyTicket(ticket)
	if !ok {
		return principal{}, &apiError{code: 401, msg: "Authentication failed!"}
	}
	if r.Method != http.MethodGet {
		if csrf := r.Header.Get("CSRFPreventionToken"); csrf == "" || csrf != s.csrf(user, ticket) {
			return principal{}, &apiError{code: 401, msg: "Permission denied - invalid csrf token"}
		}
	}
	return principal{user: user}, nil
}

func (s *Sim) sign(data string) string {
	m := hmac.New(sha256.New, s.secret)
	io.WriteString(m, data)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// ticket format: PVE:user@realm:HEXTIME::signature, valid for 2 hours.
func (s *Sim) newTicket(user string, now time.Time) string {
	plain := fmt.Sprintf("PVE:%s:%08X", user, now.Unix())
	return plain + "::" + s.sign(plain)
}

func (s *Sim) verifyTicket(t string) (string, bool) {
	plain, sig, ok := strings.Cut(t, "::")
	if !ok || !hmac.Equal([]byte(sig), []byte(s.sign(plain))) {
		return "", false
	}
	f := strings.Split(plain, ":")
	if len(f) != 3 || f[0] != "PVE" {
		return "", false
	}
	ts, err := strconv.ParseInt(f[2], 16, 64)
	if err != nil || time.Since(time.Unix(ts, 0)) > 2*time.Hour {
		return "", false
	}
	return f[1], true
}

func (s *Sim) csrf(user, ticket string) string {
	plain, _, _ := strings.Cut(ticket, "::")
	f := strings.Split(plain, ":")
	return f[len(f)-1] + ":" + s.sign("csrf:"+user+":"+f[len(f)-1])
}

func (s *Sim) login(p params) (any, *apiError) {
	user, pass := p["username"].s, p["password"].s
	if realm := p["realm"].s; realm != "" && !strings.Contains(user, "@") {
		user += "@" + realm
	}
	if strings.HasPrefix(pass, "PVE:") { // renewal with a still-valid ticket
		if u, ok := s.verifyTicket(pass); ok && u == user {
			t := s.newTicket(user, time.Now())
			return map[string]any{"username": user, "ticket": t, "CSRFPreventionToken": s.csrf(user, t), "cap": map[string]any{}}, nil
		}
		return nil, &apiError{code: 401, msg: "authentication failure"}
	}
	want, ok := s.opts.Users[user]
	if !ok || !hmac.Equal([]byte(want), []byte(pass)) {
		return nil, &apiError{code: 401, msg: "authentication failure"}
	}
	t := s.newTicket(user, time.Now())
	return map[string]any{"username": user, "ticket": t, "CSRFPreventionToken": s.csrf(user, t), "cap": map[string]any{}}, nil
}

// route dispatches one request; the lock is held.
func (s *Sim) route(method, path string, p params, who principal) (any, *apiError) {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	notImpl := &apiError{code: 501, msg: fmt.Sprintf("Method '%s %s' not implemented", method, path)}
	get, post, put, del := method == http.MethodGet, method == http.MethodPost, method == http.MethodPut, method == http.MethodDelete
	switch {
	case path == "/version" && get:
		return map[string]any{"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}, nil
	case path == "/access/ticket" && post:
		return s.login(p)
	case path == "/nodes" && get:
		return s.nodesList(), nil
	case path == "/cluster/status" && get:
		return s.clusterStatus(), nil
	case path == "/cluster/nextid" && get:
		return s.nextID(p)
	case path == "/cluster/resources" && get:
		return s.resources(p)
	case path == "/cluster/tasks" && get:
		return s.taskList("", p), nil
	case path == "/cluster/ha/groups" && get:
		return s.haGroups(), nil
	case path == "/cluster/ha/resources" && get:
		return s.haList(p), nil
	case path == "/cluster/ha/resources" && post:
		return s.haCreate(p)
	case len(seg) == 4 && seg[0] == "cluster" && seg[1] == "ha" && seg[2] == "resources":
		switch {
		case get:
			return s.haGet(seg[3])
		case put:
			return s.haUpdate(seg[3], p)
		case del:
			return s.haDelete(seg[3], p)
		}
		return nil, notImpl
	}
	if len(seg) < 2 || seg[0] != "nodes" {
		return nil, notImpl
	}
	node := seg[1]
	if s.st.node(node) == nil {
		return nil, errf(500, "hostname lookup '%s' failed - failed to get address info for: %s: Name or service not known", node, node)
	}
	rest := seg[2:]
	switch {
	case len(rest) == 1 && rest[0] == "status" && get:
		return s.nodeStatus(node), nil
	case len(rest) == 1 && rest[0] == "storage" && get:
		return s.nodeStorage(node), nil
	case len(rest) == 1 && rest[0] == "network" && get:
		return s.nodeNetwork(node, p)
	case len(rest) == 1 && rest[0] == "tasks" && get:
		return s.taskList(node, p), nil
	case len(rest) >= 2 && rest[0] == "tasks":
		return s.taskRoute(method, node, rest[1:], p)
	case len(rest) == 1 && rest[0] == "qemu" && get:
		return s.qemuList(node), nil
	case len(rest) == 1 && rest[0] == "qemu" && post:
		return s.qemuCreate(node, p, who)
	case len(rest) >= 2 && rest[0] == "qemu":
		vmid, err := strconv.Atoi(rest[1])
		if err != nil || vmid < 100 || vmid > 999999999 {
			return nil, paramErr("vmid", "invalid format - value does not look like a valid VM ID")
		}
		return s.vmRoute(method, node, vmid, rest[2:], p, who)
	}
	return nil, notImpl
}

// errNoVM is PVE's answer for a VM whose config is not on that node.
func errNoVM(node string, vmid int) *apiError {
	return errf(500, "Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", node, vmid)
}
