package infra

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
)

// execute runs the plan: deletes first (they free names), then every other
// VM's actions in order, Concurrency VMs at a time.
func (r *Reconciler) execute(ctx context.Context, p Plan, leader func() bool) ([]Action, []error) {
	var deletes, others [][]Action
	byVM := map[int][]Action{}
	var order []int
	for _, a := range p.Actions {
		if _, seen := byVM[a.VM.VMID]; !seen {
			order = append(order, a.VM.VMID)
		}
		byVM[a.VM.VMID] = append(byVM[a.VM.VMID], a)
	}
	for _, id := range order {
		if byVM[id][0].Op == OpDelete {
			deletes = append(deletes, byVM[id])
		} else {
			others = append(others, byVM[id])
		}
	}
	var mu sync.Mutex
	var done []Action
	var errs []error
	run := func(groups [][]Action) {
		r.parallel(ctx, r.opts.Concurrency, len(groups), func(i int) {
			d, err := r.execVM(ctx, groups[i], leader)
			mu.Lock()
			defer mu.Unlock()
			done = append(done, d...)
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	run(deletes)
	run(others)
	slices.SortStableFunc(done, func(a, b Action) int { return a.VM.VMID - b.VM.VMID })
	return done, errs
}

// execVM runs one VM's actions in order and stops at its first failure.
func (r *Reconciler) execVM(ctx context.Context, acts []Action, leader func() bool) ([]Action, error) {
	var done []Action
	for _, a := range acts {
		if !leader() {
			return done, &Error{Kind: Transient, Reason: ReasonNotLeader, Op: string(a.Op), Name: a.VM.Name, VMID: a.VM.VMID, Node: a.VM.Node,
				Err: errors.New("no longer the infra leader; leaving the rest to the new leader")}
		}
		log := r.log.With("vmid", a.VM.VMID, "name", a.VM.Name, "node", a.VM.Node, "op", string(a.Op))
		var err error
		switch a.Op {
		case OpCreate:
			err = r.create(ctx, a, leader, log)
		case OpUpdate:
			err = r.update(ctx, a, log)
		case OpResize:
			err = r.resize(ctx, a.VM, a.Disk, a.Size)
		case OpHACreate:
			err = r.retry(ctx, a.VM, "ha", false, func() error { return r.api.CreateHA(ctx, haSID(a.VM.VMID), *a.HA) })
			if err != nil && reasonOf(err) == ReasonRaced {
				err = r.retry(ctx, a.VM, "ha", false, func() error { return r.api.UpdateHA(ctx, haSID(a.VM.VMID), *a.HA) })
			}
		case OpHAUpdate:
			err = r.retry(ctx, a.VM, "ha", false, func() error { return r.api.UpdateHA(ctx, haSID(a.VM.VMID), *a.HA) })
		case OpHARemove:
			err = r.retry(ctx, a.VM, "ha", false, func() error { return r.api.DeleteHA(ctx, haSID(a.VM.VMID)) })
		case OpStart:
			err = r.start(ctx, a.VM)
		case OpDelete:
			err = r.destroy(ctx, a.VM, log)
		}
		if errors.Is(err, errNoop) {
			log.Debug("nothing to do after all", "why", "status/current already shows the declared state")
			continue
		}
		r.m.action(a.Op, err)
		if err != nil {
			e := classify(string(a.Op), a.VM, err)
			if e.Reason == ReasonRaced {
				log.Info("another writer got there first; backing off until the next pass", "err", e.Err)
			} else {
				log.Error("infra action failed", "kind", e.Kind.String(), "reason", e.Reason, "err", e.Err)
			}
			return done, e
		}
		log.Info("infra action done", "changes", len(a.Fields))
		done = append(done, a)
	}
	return done, nil
}

// checkTemplateDisk refuses, before the clone (minutes of disk copy), a
// VM whose declared disk the template's cannot become: larger than
// spec.disk.size (disks only grow), or missing. Found after the clone,
// it left a configured, tagged VM that the next pass started.
func (r *Reconciler) checkTemplateDisk(ctx context.Context, a Action, v VM) error {
	if v.Disk.Bus == "" || v.Disk.Size <= 0 || v.Ignores("disk") {
		return nil
	}
	ref := VMRef{Name: v.Name, VMID: v.VMID, Node: v.Node}
	var c VMConfig
	if err := r.retry(ctx, ref, "clone", true, func() (err error) { c, err = r.api.Config(ctx, a.cloneNode, a.cloneID); return }); err != nil {
		return err
	}
	key := v.Disk.Key()
	cur, ok := diskSize(c.Values[key])
	switch {
	case !ok:
		return &Error{Kind: Terminal, Reason: ReasonInvalid, Op: "clone", Name: v.Name, VMID: v.VMID, Node: v.Node,
			Err: fmt.Errorf("template %q has no disk %s (spec.disk.bus): nothing was cloned", a.Clone, key)}
	case cur > v.Disk.Size:
		return &Error{Kind: Terminal, Reason: ReasonShrink, Op: "clone", Name: v.Name, VMID: v.VMID, Node: v.Node,
			Err: fmt.Errorf("template %q's disk %s is %s, larger than spec.disk.size %s: disks only grow; raise spec.disk.size (nothing was cloned)", a.Clone, key, cur, v.Disk.Size)}
	}
	return nil
}

// errNoop: an action found on a closer look that nothing needs doing.
var errNoop = errors.New("nothing to do")

// create clones the template onto the declared VMID, waits for the clone,
// then configures, resizes and starts (or hands to HA) the new VM.
func (r *Reconciler) create(ctx context.Context, a Action, leader func() bool, log *slog.Logger) error {
	v := *a.spec
	ref := a.VM
	// The clone runs on the template's node; target moves the new VM to
	// the declared node (shared storage only, API.md 5.14).
	req := CloneRequest{Node: a.cloneNode, Template: a.cloneID, VMID: v.VMID, Name: v.Name, Description: cloneMarker(v),
		Storage: v.Disk.Storage, Format: v.Disk.Format, TargetNode: v.Node}
	if err := r.checkTemplateDisk(ctx, a, v); err != nil {
		return err
	}
	log.Info("creating VM", "template", a.Clone, "templateVMID", a.cloneID)
	var upid string
	err := r.retry(ctx, ref, "clone", false, func() (err error) { upid, err = r.api.Clone(ctx, req); return })
	if err != nil {
		if strings.Contains(err.Error(), "already exists") {
			// The explicit VMID makes a racing second writer fail here,
			// before any work: nothing to undo.
			return &Error{Kind: Transient, Reason: ReasonRaced, Op: "clone", Name: v.Name, VMID: v.VMID, Node: v.Node,
				Err: fmt.Errorf("VMID %d was created by another writer meanwhile; backing off: %w", v.VMID, err)}
		}
		return err
	}
	if err := r.wait(ctx, ref, "clone", upid); err != nil {
		return err
	}
	if err := r.waitUnlocked(ctx, ref); err != nil {
		return err
	}
	if !leader() {
		return &Error{Kind: Transient, Reason: ReasonNotLeader, Op: "configure", Name: v.Name, VMID: v.VMID, Node: v.Node,
			Err: errors.New("lost infra leadership after the clone; the new leader finishes the VM")}
	}
	// Configure: every managed key, the tag, and the real description.
	var c VMConfig
	if err := r.retry(ctx, ref, "configure", true, func() (err error) { c, err = r.api.Config(ctx, ref.Node, ref.VMID); return }); err != nil {
		return err
	}
	set := map[string]string{}
	var del []string
	for _, f := range diff(v, c.Values, false) {
		if f.New == "" {
			del = append(del, f.Key) // a template NIC past spec.network
		} else {
			set[f.Key] = f.New
		}
	}
	if v.Description == "" {
		del = append(del, "description")
	}
	if err := r.setConfig(ctx, ref, c.Digest, set, del); err != nil {
		return err
	}
	// Every managed key now holds the declared value.
	all := map[string]string{}
	for _, w := range wants(v, c.Values) {
		all[w.key] = w.value
	}
	r.remember(v.VMID, all)
	if v.Disk.Bus != "" && v.Disk.Size > 0 {
		if cur, ok := diskSize(c.Values[v.Disk.Key()]); ok && cur < v.Disk.Size {
			if err := r.resize(ctx, ref, v.Disk.Key(), v.Disk.Size); err != nil {
				return err
			}
		} else if ok && cur > v.Disk.Size {
			return &Error{Kind: Terminal, Reason: ReasonShrink, Op: "resize", Name: v.Name, VMID: v.VMID, Node: v.Node,
				Err: fmt.Errorf("the template's disk %s is %s, larger than spec.disk.size %s: disks only grow", v.Disk.Key(), cur, v.Disk.Size)}
		}
	}
	if v.HA != nil {
		err := r.retry(ctx, ref, "ha", false, func() error { return r.api.CreateHA(ctx, haSID(v.VMID), *v.HA) })
		if err != nil && reasonOf(err) == ReasonRaced {
			err = r.retry(ctx, ref, "ha", false, func() error { return r.api.UpdateHA(ctx, haSID(v.VMID), *v.HA) })
		}
		return err
	}
	if err := r.start(ctx, ref); !errors.Is(err, errNoop) {
		return err
	}
	return nil
}

// update writes the changed keys with the observed digest. A lock or a
// digest race re-reads the config and recomputes the change.
func (r *Reconciler) update(ctx context.Context, a Action, log *slog.Logger) error {
	v, ref := *a.spec, a.VM
	digest := a.digest
	fields := a.Fields
	for attempt := 0; ; attempt++ {
		set := map[string]string{}
		var del []string
		for _, f := range fields {
			if f.New == "" {
				del = append(del, f.Key)
			} else {
				set[f.Key] = f.New
			}
			log.Info("setting config key", "key", f.Key, "from", f.Old, "to", f.New, "drift", f.Drift)
		}
		upid, err := r.api.SetConfig(ctx, ref.Node, ref.VMID, digest, set, del)
		if err == nil {
			err = r.wait(ctx, ref, "config", upid)
		}
		if err == nil {
			r.remember(ref.VMID, set)
			return r.afterConfig(ctx, ref, set, log)
		}
		reason := reasonOf(err)
		if (reason != ReasonLocked && reason != ReasonRaced && reason != ReasonAPI) || attempt >= r.opts.Retries {
			return classify("config", ref, err)
		}
		log.Info("config change refused; retrying", "reason", reason, "attempt", attempt+1, "err", err)
		if !r.sleep(ctx, r.backoff(attempt)) {
			return ctx.Err()
		}
		var c VMConfig
		if err := r.retry(ctx, ref, "config", true, func() (err error) { c, err = r.api.Config(ctx, ref.Node, ref.VMID); return }); err != nil {
			return err
		}
		if !hasTag(splitTags(c.Values["tags"]), Tag) && c.Values["description"] != cloneMarker(v) {
			return &Error{Kind: Terminal, Reason: ReasonConflict, Op: "config", Name: ref.Name, VMID: ref.VMID, Node: ref.Node,
				Err: fmt.Errorf("VM %d lost its %q tag meanwhile; leaving it alone", ref.VMID, Tag)}
		}
		digest = c.Digest
		fields = diff(v, c.Values, true)
		if len(fields) == 0 {
			return nil
		}
	}
}

// afterConfig regenerates the cloud-init drive of a running VM whose
// cloud-init keys changed (the guest reads it at its next boot).
func (r *Reconciler) afterConfig(ctx context.Context, ref VMRef, set map[string]string, log *slog.Logger) error {
	ci := false
	var pending []string
	for k := range set {
		if cloudInitKey(k) {
			ci = true
		}
		if !hotKey(k) {
			pending = append(pending, k)
		}
	}
	if !ci && len(pending) == 0 {
		return nil
	}
	var st VMStatus
	if err := r.retry(ctx, ref, "status", true, func() (err error) { st, err = r.api.Status(ctx, ref.Node, ref.VMID); return }); err != nil {
		return err
	}
	if st.Status != "running" {
		return nil
	}
	if len(pending) > 0 {
		slices.Sort(pending)
		log.Warn("changes need a restart of the VM; they are pending until then", "keys", strings.Join(pending, ","))
	}
	if ci {
		log.Info("regenerating the cloud-init drive; the guest applies it at its next boot")
		return r.retry(ctx, ref, "cloudinit", false, func() error { return r.api.RegenerateCloudInit(ctx, ref.Node, ref.VMID) })
	}
	return nil
}

func (r *Reconciler) setConfig(ctx context.Context, ref VMRef, digest string, set map[string]string, del []string) error {
	if len(set) == 0 && len(del) == 0 {
		return nil
	}
	var upid string
	if err := r.retry(ctx, ref, "config", false, func() (err error) {
		upid, err = r.api.SetConfig(ctx, ref.Node, ref.VMID, digest, set, del)
		return
	}); err != nil {
		return err
	}
	return r.wait(ctx, ref, "config", upid)
}

func (r *Reconciler) resize(ctx context.Context, ref VMRef, disk string, size Size) error {
	for attempt := 0; ; attempt++ {
		var upid string
		err := r.retry(ctx, ref, "resize", false, func() (err error) { upid, err = r.api.Resize(ctx, ref.Node, ref.VMID, disk, size.String()); return })
		if err == nil {
			err = r.wait(ctx, ref, "resize", upid)
		}
		// Resize checks the lock inside its task (API.md 4.5).
		if err == nil || reasonOf(err) != ReasonLocked || attempt >= r.opts.Retries {
			return err
		}
		if !r.sleep(ctx, r.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// start starts a VM unless status/current (authoritative; the listing can
// be stale) says it runs. "already running" counts as success.
func (r *Reconciler) start(ctx context.Context, ref VMRef) error {
	for attempt := 0; ; attempt++ {
		var st VMStatus
		if err := r.retry(ctx, ref, "start", true, func() (err error) { st, err = r.api.Status(ctx, ref.Node, ref.VMID); return }); err != nil {
			return err
		}
		if st.Status == "running" {
			if attempt == 0 {
				return errNoop // the listing was stale
			}
			return nil
		}
		var err error
		if st.Lock == "" {
			var upid string
			err = r.retry(ctx, ref, "start", false, func() (err error) { upid, err = r.api.Power(ctx, ref.Node, ref.VMID, "start"); return })
			if err == nil {
				err = r.wait(ctx, ref, "start", upid)
			}
			if err == nil || strings.Contains(err.Error(), "already running") {
				return nil
			}
		} else {
			err = &Error{Kind: Transient, Reason: ReasonLocked, Op: "start", Name: ref.Name, VMID: ref.VMID, Node: ref.Node, Err: fmt.Errorf("VM is locked (%s)", st.Lock)}
		}
		if reasonOf(err) != ReasonLocked || attempt >= r.opts.Retries {
			return err
		}
		if !r.sleep(ctx, r.backoff(attempt)) {
			return ctx.Err()
		}
	}
}

// destroy removes a tagged VM: its HA resource, then a stop (waited until
// status/current says stopped), then the delete with purge.
func (r *Reconciler) destroy(ctx context.Context, ref VMRef, log *slog.Logger) error {
	var st VMStatus
	if err := r.retry(ctx, ref, "delete", true, func() (err error) { st, err = r.api.Status(ctx, ref.Node, ref.VMID); return }); err != nil {
		return err
	}
	if st.HA {
		err := r.retry(ctx, ref, "delete", false, func() error { return r.api.DeleteHA(ctx, haSID(ref.VMID)) })
		if err != nil && !strings.Contains(err.Error(), "not HA managed") {
			return err
		}
	}
	if st.Status == "running" {
		log.Info("stopping VM before deleting it")
		var upid string
		if err := r.retry(ctx, ref, "stop", false, func() (err error) { upid, err = r.api.Power(ctx, ref.Node, ref.VMID, "stop"); return }); err != nil {
			return err
		}
		if err := r.wait(ctx, ref, "stop", upid); err != nil {
			return err
		}
		if err := r.poll(ctx, ref, "stop", func(s VMStatus) bool { return s.Status == "stopped" }); err != nil {
			return err
		}
	}
	log.Info("deleting VM (prune)")
	for attempt := 0; ; attempt++ {
		var upid string
		err := r.retry(ctx, ref, "delete", false, func() (err error) { upid, err = r.api.Delete(ctx, ref.Node, ref.VMID); return })
		if err == nil {
			err = r.wait(ctx, ref, "delete", upid)
		}
		if err == nil {
			r.mu.Lock()
			delete(r.applied, ref.VMID)
			r.mu.Unlock()
			return nil
		}
		if reasonOf(err) != ReasonLocked || attempt >= r.opts.Retries {
			return err
		}
		if !r.sleep(ctx, r.backoff(attempt)) {
			return ctx.Err()
		}
	}
}
