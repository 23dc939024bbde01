package pvesim

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// task is one worker task.
type task struct {
	upid      string
	node      string
	pid       int
	pstart    int
	start     time.Time
	end       time.Time
	typ       string
	id        string
	who       principal
	running   bool
	exit      string
	log       []string
	cancelled bool
}

var reUPID = regexp.MustCompile(`^UPID:([a-zA-Z0-9]([a-zA-Z0-9\-]*[a-zA-Z0-9])?):([0-9A-Fa-f]{8}):([0-9A-Fa-f]{8,9}):([0-9A-Fa-f]{8}):([^:\s/]+):([^:\s/]*):([^:\s/]+):$`)

// startTask creates a task record (before the UPID is returned, API.md 3)
// and runs work: at once when TaskDuration is zero, else when it elapses.
// work returns the log lines and an error message ("" = OK; "WARNINGS: n"
// is passed through as the exit status). onFault, if set, undoes what the
// request did before the task when an injected fault fails the task.
func (s *Sim) startTask(node, typ, id string, who principal, work func() ([]string, string), onFault func()) string {
	s.st.NextPID++
	now := time.Now()
	t := &task{
		node:    node,
		pid:     s.st.NextPID,
		pstart:  int(now.UnixMilli()/10) & 0xFFFFFFF,
		start:   now,
		typ:     typ,
		id:      id,
		who:     who,
		running: true,
	}
	t.upid = fmt.Sprintf("UPID:%s:%08X:%08X:%08X:%s:%s:%s:", node, t.pid, t.pstart, now.Unix(), typ, id, who.id())
	s.tasks[t.upid] = t
	s.afterLocked(s.opts.TaskDuration, func() {
		if t.cancelled {
			return
		}
		var lines []string
		exit := ""
		if msg := s.takeTaskFault(typ); msg != "" {
			exit = msg
			if onFault != nil {
				onFault()
			}
		} else {
			lines, exit = work()
		}
		s.finishTask(t, lines, exit)
	})
	return t.upid
}

func (s *Sim) takeTaskFault(typ string) string {
	for i := range s.faults.FailTasks {
		f := &s.faults.FailTasks[i]
		if f.Type == typ && f.Count > 0 {
			f.Count--
			if f.Message == "" {
				return "injected task failure"
			}
			return f.Message
		}
	}
	return ""
}

func (s *Sim) finishTask(t *task, lines []string, exit string) {
	t.running = false
	t.end = time.Now()
	t.log = append(t.log, lines...)
	switch {
	case exit == "":
		t.exit = "OK"
		t.log = append(t.log, "TASK OK")
	case strings.HasPrefix(exit, "WARNINGS: "):
		t.exit = exit
		t.log = append(t.log, "TASK "+exit)
	default:
		t.exit = exit
		t.log = append(t.log, "TASK ERROR: "+exit)
	}
}

func (t *task) status() map[string]any {
	m := map[string]any{
		"upid":      t.upid,
		"node":      t.node,
		"pid":       t.pid,
		"pstart":    t.pstart,
		"starttime": t.start.Unix(),
		"type":      t.typ,
		"id":        t.id,
		"user":      t.who.user,
		"status":    "running",
	}
	if t.who.token != "" {
		m["tokenid"] = t.who.token
	}
	if !t.running {
		m["status"] = "stopped"
		m["exitstatus"] = t.exit
		m["endtime"] = t.end.Unix()
	}
	return m
}

func (s *Sim) taskRoute(method, node string, rest []string, p params) (any, *apiError) {
	upid := rest[0]
	if !reUPID.MatchString(upid) {
		return nil, paramErr("upid", "unable to parse worker upid '%s'", upid)
	}
	t := s.tasks[upid]
	if t == nil || t.node != node {
		return nil, paramErr("upid", "no such task")
	}
	switch {
	case len(rest) == 2 && rest[1] == "status" && method == http.MethodGet:
		return t.status(), nil
	case len(rest) == 2 && rest[1] == "log" && method == http.MethodGet:
		start, _ := strconv.Atoi(p["start"].s)
		limit, err := strconv.Atoi(p["limit"].s)
		if err != nil || limit <= 0 {
			limit = 50
		}
		out := []map[string]any{}
		for i := start; i < len(t.log) && len(out) < limit; i++ {
			out = append(out, map[string]any{"n": i + 1, "t": t.log[i]})
		}
		return out, nil
	case len(rest) == 1 && method == http.MethodDelete:
		if t.running {
			t.cancelled = true
			s.finishTask(t, nil, "unexpected status")
		}
		return nil, nil
	}
	return nil, &apiError{code: 501, msg: fmt.Sprintf("Method '%s /nodes/%s/tasks/%s' not implemented", method, node, strings.Join(rest, "/"))}
}

func (s *Sim) taskList(node string, p params) []map[string]any {
	var ts []*task
	for _, t := range s.tasks {
		if node != "" && t.node != node {
			continue
		}
		if v := p["vmid"].s; v != "" && t.id != v {
			continue
		}
		if tf := p["typefilter"].s; tf != "" && t.typ != tf {
			continue
		}
		if p["source"].s == "active" && !t.running {
			continue
		}
		ts = append(ts, t)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].pid > ts[j].pid })
	limit, err := strconv.Atoi(p["limit"].s)
	if err != nil || limit <= 0 {
		limit = 50
	}
	out := []map[string]any{}
	for _, t := range ts[:min(limit, len(ts))] {
		m := t.status()
		if !t.running {
			m["status"] = t.exit
		}
		delete(m, "exitstatus")
		out = append(out, m)
	}
	return out
}
