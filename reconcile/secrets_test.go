package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"filippo.io/age"

	"github.com/gitedge/gitedge/failover"
	"github.com/gitedge/gitedge/internal/testkit"
	"github.com/gitedge/gitedge/secrets"
)

const secretValue = "Zq7-s3cr" // never in an error, a plan or a warning

// secretEdge is a repository whose VRRP password is pw (YAML, as written
// after "password: "), version v.
func secretEdge(pw string, v int) fstest.MapFS {
	y := "apiVersion: gitedge/v1\nkind: Edge\nmetadata: {name: home}\nspec:\n" +
		"  nodes:\n    - {name: lb-0, address: 192.0.2.250}\n    - {name: lb-1, address: 192.0.2.251}\n" +
		"  failover:\n    - name: VI_1\n      interface: eth0\n      virtualRouterID: 33\n" +
		"      version: " + itoa(v) + "\n      priority: {lb-0: 100, lb-1: 101}\n      vips: [192.0.2.254/24]\n" +
		"      auth:\n        type: pass\n        password: " + pw + "\n"
	return fstest.MapFS{"edge.yaml": {Data: []byte(y)}}
}

// indentBlock renders an armored value as a YAML block under password:.
func indentBlock(armored string) string {
	return "\n" + strings.TrimRight(secrets.YAML(armored, 10), "\n")
}

func TestSecretResolution(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "vrrp-vi1"), []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "long"), []byte("123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	node, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(dir, "age.key")
	if err := os.WriteFile(idFile, []byte(node.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	enc := func(to age.Recipient) string {
		a, err := secrets.Encrypt([]byte(secretValue), []age.Recipient{to})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	toNode, toOther := enc(node.Recipient()), enc(other.Recipient())
	store := &secrets.Store{Dir: dir, AgeIdentity: idFile, Config: "/etc/gitedge/gitedge.yaml"}
	onNode := &Local{Node: "lb-0", Config: "/etc/gitedge/gitedge.yaml", Secrets: store}

	tests := []struct {
		name     string
		pw       string
		version  int
		local    *Local
		pass     string // AuthPass wanted; "" with errs or unresolved
		from     string
		resolved bool
		warn     string   // a warning's text
		errs     []string // the whole error's substrings
		local2   bool     // the errors are the node's (NodeLocal)
		only     bool     // the error is the only one
	}{
		{name: "plain", pw: `"9999"`, pass: "9999", from: "in the repository", resolved: true,
			warn: `edge.yaml:17: Edge "home": spec.failover[0].auth.password: the value is in the repository`},
		{name: "secret, no node", pw: "{secret: vrrp-vi1}", from: `secret "vrrp-vi1"`},
		{name: "secret on the node", pw: "{secret: vrrp-vi1}", local: onNode, pass: secretValue, from: `secret "vrrp-vi1"`, resolved: true},
		{name: "age, no node", pw: indentBlock(toNode), from: (secrets.Value{Age: toNode}).Source()},
		{name: "age on the node", pw: indentBlock(toNode), local: onNode, pass: secretValue, from: (secrets.Value{Age: toNode}).Source(), resolved: true},
		{name: "secret missing", pw: "{secret: vrrp-vi2}", local: onNode, local2: true,
			errs: []string{`edge.yaml:17: Edge "home": spec.failover[0].auth.password: secret "vrrp-vi2" is not on this node: no file ` + filepath.Join(dir, "vrrp-vi2"),
				"(secrets.dir of node config /etc/gitedge/gitedge.yaml)"}},
		{name: "age to another node", pw: indentBlock(toOther), local: onNode, local2: true,
			errs: []string{"edge.yaml:17: ", "spec.failover[0].auth.password: the value is age-encrypted", "not to this node's age key", node.Recipient().String()}},
		{name: "bad name", pw: "{secret: ../shadow}", errs: []string{`edge.yaml:17: Edge "home": spec.failover[0].auth.password.secret: bad secret name "../shadow"`}},
		{name: "bad age", pw: "{age: hello}", errs: []string{"spec.failover[0].auth.password.age: not an age-encrypted value"}},
		{name: "both", pw: "{secret: a, age: b}", errs: []string{"spec.failover[0].auth.password: both secret and age"}},
		{name: "empty mapping", pw: "{}", errs: []string{"spec.failover[0].auth.password: missing"}},
		{name: "unknown key", pw: "{file: /etc/x}", errs: []string{`edge.yaml:17: Edge "home": spec.failover[0].auth.password.file: unknown field "file"`}, only: true},
		{name: "a number", pw: "9999", errs: []string{`edge.yaml:17: Edge "home": spec.failover[0].auth.password: expected a string, got a number`}},
		{name: "a list as name", pw: "{secret: [1]}", errs: []string{`edge.yaml:17: Edge "home": spec.failover[0].auth.password.secret: expected a string, got an array`}},
		{name: "v3 with a reference", pw: "{secret: vrrp-vi1}", version: 3, errs: []string{"spec.failover[0].auth: authentication is VRRP v2 only"}},
		{name: "resolved too long", pw: "{secret: long}", local: onNode, errs: []string{"spec.failover[0].auth.password: at most 8 characters"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := cmpOr(tt.version, 2)
			d, _, err := LoadWith(secretEdge(tt.pw, v), LoadOptions{Local: tt.local})
			if tt.errs != nil {
				if err == nil {
					t.Fatalf("loaded, want an error")
				}
				for _, w := range tt.errs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error:\n%v\nlacks %q", err, w)
					}
				}
				if strings.Contains(err.Error(), secretValue) {
					t.Errorf("the error shows the secret: %v", err)
				}
				errs, _ := errors.AsType[Errors](err)
				if tt.only && len(errs) != 1 {
					t.Errorf("%d errors, want 1: the rest of the document must decode", len(errs))
				}
				if errs.NodeLocal() != tt.local2 {
					t.Errorf("NodeLocal %v, want %v", errs.NodeLocal(), tt.local2)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			in := d.Edge.Failover[0]
			if in.AuthPass != tt.pass || in.AuthFrom != tt.from {
				t.Errorf("AuthPass %q from %q, want %q from %q", in.AuthPass, in.AuthFrom, tt.pass, tt.from)
			}
			if len(d.Secrets) != 1 || d.Secrets[0].Resolved != tt.resolved || d.Secrets[0].From != tt.from ||
				d.Secrets[0].Field != "spec.failover[0].auth.password" || d.Secrets[0].Doc != `Edge "home"` {
				t.Errorf("Secrets %+v", d.Secrets)
			}
			_, ferr := d.FailoverFor("lb-0")
			if tt.resolved != (ferr == nil) {
				t.Errorf("FailoverFor: %v (resolved %v): an unresolved secret must never reach failover", ferr, tt.resolved)
			}
			var warns []string
			for _, w := range d.Warnings {
				warns = append(warns, w.Error())
			}
			if got := strings.Join(warns, "\n"); tt.warn == "" && got != "" || !strings.Contains(got, tt.warn) {
				t.Errorf("warnings %q, want %q", got, tt.warn)
			}
		})
	}
}

func cmpOr(a, b int) int {
	if a != 0 {
		return a
	}
	return b
}

// TestPlanShowsWhereASecretComesFrom: a plan names the source of a
// password, shows a rotation as a change, and never shows a value.
func TestPlanShowsWhereASecretComesFrom(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vrrp-vi1")
	write := func(v string) {
		if err := os.WriteFile(file, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	loc := &Local{Secrets: &secrets.Store{Dir: dir}}
	load := func(pw string) *Desired {
		d, _, err := LoadWith(secretEdge(pw, 2), LoadOptions{Local: loc})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	write(secretValue)
	plain, ref := load(`"`+secretValue+`"`), load("{secret: vrrp-vi1}")
	write("0ther-pw")
	rotated := load("{secret: vrrp-vi1}")
	id, _ := age.GenerateX25519Identity()
	a1, _ := secrets.Encrypt([]byte(secretValue), []age.Recipient{id.Recipient()})
	a2, _ := secrets.Encrypt([]byte(secretValue), []age.Recipient{id.Recipient()})
	enc1, _, _ := LoadWith(secretEdge(indentBlock(a1), 2), LoadOptions{})
	enc2, _, _ := LoadWith(secretEdge(indentBlock(a2), 2), LoadOptions{})
	tests := []struct {
		name       string
		base, head *Desired
		want       string
	}{
		{"from plain to a reference", plain, ref, `auth: pass (password: in the repository) → pass (password: secret "vrrp-vi1")`},
		{"a rotated file", ref, rotated, "auth.password: (set) → (changed)"},
		{"a new ciphertext", enc1, enc2, "auth: pass (password: " + (secrets.Value{Age: a1}).Source() + ") → pass (password: " + (secrets.Value{Age: a2}).Source() + ")"},
		{"added", nil, ref, `auth: pass (password: secret "vrrp-vi1")`},
	}
	for _, tt := range tests {
		var b strings.Builder
		if err := Diff(tt.base, tt.head).WriteText(&b); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(b.String(), tt.want) || strings.Contains(b.String(), secretValue) || strings.Contains(b.String(), "0ther-pw") {
			t.Errorf("%s: plan:\n%s\nwant %q and no value", tt.name, b.String(), tt.want)
		}
	}
}

// TestLoopRetriesACommitRefusedForASecret: a commit refused because this
// node lacks a secret applies once the secret is in place and the node is
// poked (a reload), without a new commit; the live commit keeps serving
// meanwhile, and failover gets the value from the file.
func TestLoopRetriesACommitRefusedForASecret(t *testing.T) {
	dir := t.TempDir()
	var mu sync.Mutex
	var applied []string // the passwords failover was given
	l := &Loop{
		Node: "lb-0",
		Failover: failoverFake(func(_ context.Context, c failover.Config) error {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, c.Instances[0].AuthPass)
			return nil
		}),
		Local: &Local{Node: "lb-0", Secrets: &secrets.Store{Dir: dir}},
	}
	src := make(chanSource)
	l.Source = src
	testkit.Run(t, l.Run)
	src <- Revision{Commit: "c1", Files: mapFS(t, "../examples/homelab", nil)}
	testkit.WaitFor(t, "c1 live", func() bool { st := l.Status(); return st.Live != nil && st.Live.Commit == "c1" })
	named := mapFS(t, "../examples/homelab", map[string][][2]string{"edge.yaml": {{`password: "9999"`, "password: {secret: vrrp-vi1}"}}})
	src <- Revision{Commit: "c2", Files: named}
	testkit.WaitFor(t, "c2 refused", func() bool { st := l.Status(); return st.LastAttempt != nil && st.LastAttempt.Commit == "c2" })
	if st := l.Status(); st.Live.Commit != "c1" || !strings.Contains(st.LastAttempt.Error, `secret "vrrp-vi1" is not on this node`) {
		t.Fatalf("after c2: live %+v, last attempt %+v", st.Live, st.LastAttempt)
	}
	if err := os.WriteFile(filepath.Join(dir, "vrrp-vi1"), []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.Poke()
	testkit.WaitFor(t, "c2 live after the poke", func() bool { st := l.Status(); return st.Live != nil && st.Live.Commit == "c2" })
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"9999", secretValue}; !slices.Equal(applied, want) {
		t.Errorf("failover got passwords %q, want %q", applied, want)
	}
	st := l.Status()
	b, err := json.Marshal(st)
	if err != nil || strings.Contains(string(b), secretValue) || len(st.Secrets) != 1 || st.Secrets[0].From != `secret "vrrp-vi1"` {
		t.Errorf("status (%v) must say where the live secret comes from, never its value:\n%s", err, b)
	}
}

// TestLoopReportsASecretLostAtAResync: a secret of the live commit that
// stops resolving (its file removed, then a resync or a reload) keeps the
// node on what it runs (failover is not touched) but shows: the secrets
// condition is Stalled with the located error, and status marks the secret
// unresolved with why; once the file is back, both are Ready again.
func TestLoopReportsASecretLostAtAResync(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "vrrp-VI_1")
	if err := os.WriteFile(file, []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var applied []string // the passwords failover was given
	l := &Loop{
		Node: "lb-0",
		Failover: failoverFake(func(_ context.Context, c failover.Config) error {
			mu.Lock()
			defer mu.Unlock()
			applied = append(applied, c.Instances[0].AuthPass)
			return nil
		}),
		Local: &Local{Node: "lb-0", Secrets: &secrets.Store{Dir: dir}},
	}
	src := make(chanSource)
	l.Source = src
	testkit.Run(t, l.Run)
	named := mapFS(t, "../examples/homelab", map[string][][2]string{"edge.yaml": {{`password: "9999"`, "password: {secret: vrrp-VI_1}"}}})
	src <- Revision{Commit: "c1", Files: named}
	testkit.WaitFor(t, "c1 live", func() bool { st := l.Status(); return st.Live != nil && st.Live.Commit == "c1" })
	if st := l.Status(); len(st.Secrets) != 1 || !st.Secrets[0].Resolved || st.Conditions["secrets"].Status != CondReady {
		t.Fatalf("c1 live: secrets %+v, condition %+v", st.Secrets, st.Conditions["secrets"])
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	l.Poke()
	testkit.WaitFor(t, "the resync refused", func() bool {
		st := l.Status()
		return st.LastResync != nil && st.LastResync.Result == ResultInvalid
	})
	st := l.Status()
	const lost = `secret "vrrp-VI_1" is not on this node`
	if c := st.Conditions["secrets"]; c.Status != CondStalled || !strings.Contains(c.Message, lost) || !strings.Contains(c.Message, "edge.yaml:") {
		t.Errorf("secrets condition %+v, want Stalled with the located error", c)
	}
	if len(st.Secrets) != 1 || st.Secrets[0].Resolved || !strings.Contains(st.Secrets[0].Error, lost) {
		t.Errorf("status secrets %+v, want unresolved with the error", st.Secrets)
	}
	if st.Live == nil || st.Live.Commit != "c1" {
		t.Errorf("live %+v: the node keeps serving c1", st.Live)
	}
	if err := os.WriteFile(file, []byte(secretValue+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l.Poke()
	// The pass's end, not the condition alone: the condition is set when
	// the commit loads, the status's secrets once its steps have applied.
	testkit.WaitFor(t, "the poke's pass with the secret back", func() bool {
		st := l.Status()
		return st.Conditions["secrets"].Status == CondReady && st.LastResync != nil && st.LastResync.Result != ResultInvalid
	})
	if st := l.Status(); len(st.Secrets) != 1 || !st.Secrets[0].Resolved || st.Secrets[0].Error != "" {
		t.Errorf("status secrets %+v once the file is back", st.Secrets)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{secretValue}; !slices.Equal(applied, want) {
		t.Errorf("failover got passwords %q, want %q: the old one stays in place", applied, want)
	}
}
