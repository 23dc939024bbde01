package reconcile

import (
	"errors"
	"fmt"
	"slices"

	"github.com/gitedge/gitedge/secrets"
)

// SecretUse is one field of the repository that holds a secret, and where
// its value comes from; never the value itself.
type SecretUse struct {
	Doc   string `json:"document"` // the document, as `Edge "home"`
	Field string `json:"field"`    // the field path, as spec.failover[0].auth.password
	// From says where the value comes from (secrets.Value.Source): "in
	// the repository", `secret "vrrp-vi1"`, "age-encrypted 1a2b3c4d".
	From string `json:"from"`
	// Resolved is true when this load resolved it with the node's secrets
	// (gitedge run, validate --node-config); a load without them checks
	// the reference's shape only.
	Resolved bool `json:"resolved"`
	// Error says why the node no longer resolves it: set in the status of
	// the live commit when a resync or reload could not (a file removed);
	// the node keeps the value it runs.
	Error string `json:"error,omitempty"`

	ref bool // a reference ({secret:}, {age:}), not a value in git
}

func (u SecretUse) String() string {
	return fmt.Sprintf("%s: %s: %s", u.Doc, u.Field, u.From)
}

// plainSecret is the warning for a secret written in the repository.
const plainSecret = "the value is in the repository, readable by whoever can read it: name it instead ({secret: NAME}, a file on each node) or encrypt it to the nodes' age keys (gitedge secret encrypt); see docs/repository.md, Secrets"

// secret converts a field holding a secret: it checks the value's shape,
// resolves a reference with the node's secrets when the load has them
// (LoadOptions.Local.Secrets) and the node uses the field (skip: its
// subsystem does not run here), and records where it comes from. An
// unresolved reference yields value "" and from set.
func (c *converter) secret(d *document, field string, v secrets.Value, skip bool) (value, from string) {
	if err := v.Check(); err != nil {
		f := field
		if se, ok := errors.AsType[*secrets.ShapeError](err); ok && se.Field != "" {
			f += "." + se.Field
		}
		c.l.failAt(d, f, "%v", err)
		return "", ""
	}
	use := SecretUse{Doc: d.id(), Field: field, From: v.Source(), ref: v.IsReference()}
	var store *secrets.Store
	if c.l.local != nil && !skip {
		store = c.l.local.Secrets
	}
	switch {
	case !v.IsReference():
		c.l.warnAt(d, field, plainSecret)
		value, use.Resolved = v.Plain, true
	case store != nil:
		val, err := store.Resolve(v)
		if err != nil { // the store names the node config's fields itself
			c.l.failLocal(d, field, "%v", err)
			return "", use.From
		}
		value, use.Resolved = val, true
	}
	c.desired.Secrets = append(c.desired.Secrets, use)
	return value, use.From
}

// Unresolved lists the secrets this Desired names but was loaded without
// (a load without the node's secrets): applying it would run without them.
func (d *Desired) Unresolved() []SecretUse {
	var out []SecretUse
	for _, u := range d.Secrets {
		if !u.Resolved {
			out = append(out, u)
		}
	}
	return out
}

// noteSecrets keeps the secrets condition and the live commit's secrets
// in status true to the last load with the node's secrets (local): a
// secret it cannot resolve (the NodeLocal errors of err) makes the
// condition Stalled, and when the pass is over the live commit (a resync,
// a reload) marks it unresolved in status, with why: the node keeps what
// it runs, but says so. A load that resolves the references makes the
// condition Ready again. A node that resolves no reference has none.
func (l *Loop) noteSecrets(rev Revision, local *Local, d *Desired, err error) {
	if local == nil || local.Secrets == nil {
		return
	}
	var lost Errors
	if errs, ok := errors.AsType[Errors](err); ok {
		for _, e := range errs {
			if e.NodeLocal {
				lost = append(lost, e)
			}
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(lost) == 0 {
		if err != nil {
			return // the repository's errors: the config condition says them
		}
		n := 0
		for _, u := range d.Secrets {
			if u.ref && u.Resolved {
				n++
			}
		}
		if _, ok := l.status.Conditions["secrets"]; ok || n > 0 {
			l.setConditionLocked("secrets", CondReady, fmt.Sprintf("%d secret reference(s) of commit %s resolved", n, short(rev.Commit)))
		}
		return
	}
	what := "commit " + short(rev.Commit)
	live := l.live != nil && rev.Commit == l.liveRev.Commit
	if live {
		what = "the live commit " + short(rev.Commit)
	}
	l.setConditionLocked("secrets", CondStalled, fmt.Sprintf("%s: %v (this node keeps what it runs; fix the node, then systemctl reload gitedge or wait for the next resync)", what, lost))
	if !live {
		return
	}
	uses := slices.Clone(l.status.Secrets)
	for i := range uses {
		for _, e := range lost {
			if e.Doc == uses[i].Doc && e.Field == uses[i].Field {
				uses[i].Resolved, uses[i].Error = false, e.Error()
			}
		}
	}
	l.status.Secrets = uses
}
