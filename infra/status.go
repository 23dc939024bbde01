package infra

import (
	"cmp"
	"fmt"
	"strings"
	"time"
)

// Status is the last pass as a status page shows it: whether this node
// led it, whether it converged, each change it made as one line, and why
// it failed.
type Status struct {
	Leader    bool     `json:"leader"`
	Converged bool     `json:"converged"`
	Applied   []string `json:"applied,omitempty"` // Action.String of each completed change
	Error     string   `json:"error,omitempty"`
	Took      string   `json:"took"` // a Go duration, as "1.2s"
}

// Status returns the last finished pass, nil before the first.
func (r *Reconciler) Status() *Status {
	res, ok := r.Last()
	if !ok {
		return nil
	}
	s := res.Status()
	return &s
}

// Status is the pass as a status page shows it.
func (res Result) Status() Status {
	s := Status{Leader: res.Leader, Converged: res.Converged(), Took: res.Duration.Round(time.Millisecond).String()}
	for _, a := range res.Applied {
		s.Applied = append(s.Applied, a.String())
	}
	if res.Err != nil {
		s.Error = res.Err.Error()
	}
	return s
}

// String renders one change on one line: `create VM 150 "lb-0" on
// proxmox1 from debian-12`, `update VM 151 "lb-1": memory 1024 → 4096`.
func (a Action) String() string {
	ref := fmt.Sprintf("VM %d %q", a.VM.VMID, a.VM.Name)
	switch a.Op {
	case OpCreate:
		return fmt.Sprintf("create %s on %s from %s", ref, a.VM.Node, a.Clone)
	case OpUpdate:
		fields := make([]string, len(a.Fields))
		for i, f := range a.Fields {
			fields[i] = fmt.Sprintf("%s %s → %s", f.Key, cmp.Or(f.Old, "(none)"), cmp.Or(f.New, "(none)"))
		}
		return fmt.Sprintf("update %s: %s", ref, strings.Join(fields, ", "))
	case OpResize:
		return fmt.Sprintf("resize %s %s: %s → %s", ref, a.Disk, a.From, a.Size)
	case OpHACreate, OpHAUpdate:
		if a.HA != nil {
			return fmt.Sprintf("%s %s group=%s state=%s", a.Op, ref, a.HA.Group, a.HA.State)
		}
	}
	return fmt.Sprintf("%s %s", a.Op, ref)
}
