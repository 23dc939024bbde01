package secrets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"
)

const value = "s3cr-7Qz" // never in an error

func write(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask
		t.Fatal(err)
	}
	return path
}

func encrypt(t *testing.T, plain string, to ...*age.X25519Identity) string {
	t.Helper()
	var rs []age.Recipient
	for _, id := range to {
		rs = append(rs, id.Recipient())
	}
	armored, err := Encrypt([]byte(plain), rs)
	if err != nil {
		t.Fatal(err)
	}
	return armored
}

func TestResolve(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "secrets")
	creds := filepath.Join(root, "creds")
	write(t, filepath.Join(dir, "vrrp-vi1"), value+"\n", 0o600)
	write(t, filepath.Join(dir, "open"), value, 0o644)
	write(t, filepath.Join(dir, "empty"), "\n", 0o600)
	write(t, filepath.Join(dir, "shadowed"), "from-dir", 0o600)
	write(t, filepath.Join(creds, "shadowed"), value, 0o400)
	mapped := write(t, filepath.Join(root, "elsewhere", "pw"), value+"\r\n", 0o640)

	node, _ := age.GenerateX25519Identity()
	other, _ := age.GenerateX25519Identity()
	idFile := write(t, filepath.Join(root, "age.key"), "# node key\n"+node.String()+"\n", 0o600)
	write(t, filepath.Join(creds, CredentialAgeIdentity), node.String()+"\n", 0o400)
	openID := write(t, filepath.Join(root, "open.key"), node.String()+"\n", 0o644)
	toNode := encrypt(t, value, other, node)
	toOther := encrypt(t, value, other)

	store := Store{Dir: dir, Files: map[string]string{"mapped": mapped}, CredentialsDir: creds, AgeIdentity: idFile, Config: "/etc/gitedge/gitedge.yaml"}
	tests := []struct {
		name  string
		store Store
		v     Value
		want  string   // the value; "" when an error is expected
		errs  []string // substrings of the error
	}{
		{name: "plain", v: Value{Plain: "9999"}, want: "9999"},
		{name: "in dir, newline dropped", v: Value{Secret: "vrrp-vi1"}, want: value},
		{name: "mapped file first", v: Value{Secret: "mapped"}, want: value},
		{name: "credentials before dir", v: Value{Secret: "shadowed"}, want: value},
		{name: "age to this node", v: Value{Age: toNode}, want: value},
		{name: "age identity from credentials", store: Store{Dir: dir, CredentialsDir: creds}, v: Value{Age: toNode}, want: value},
		{name: "missing", v: Value{Secret: "nope"},
			errs: []string{`secret "nope" is not on this node`, filepath.Join(creds, "nope") + " ($CREDENTIALS_DIRECTORY)", filepath.Join(dir, "nope") + " (secrets.dir of node config /etc/gitedge/gitedge.yaml)", "chmod 0640", "secrets.files", "systemctl reload"}},
		{name: "missing mapped", store: Store{Files: map[string]string{"x": filepath.Join(root, "gone")}}, v: Value{Secret: "x"},
			errs: []string{`secret "x": cannot read`, "gone (secrets.files.x)", "no such file"}},
		{name: "world readable", v: Value{Secret: "open"}, errs: []string{"readable by every user (mode 0644)", "chmod 0640"}},
		{name: "empty", v: Value{Secret: "empty"}, errs: []string{"is empty"}},
		{name: "bad name", v: Value{Secret: "../etc/shadow"}, errs: []string{`bad secret name "../etc/shadow"`}},
		{name: "both", v: Value{Secret: "a", Age: toNode}, errs: []string{"both secret and age"}},
		{name: "unset", v: Value{}, errs: []string{"missing"}},
		{name: "age to another node", v: Value{Age: toOther},
			errs: []string{"not to this node's age key", idFile, node.Recipient().String(), "--recipient " + node.Recipient().String()}},
		{name: "age without identity", store: Store{AgeIdentity: filepath.Join(root, "none.key")}, v: Value{Age: toNode},
			errs: []string{"cannot decrypt it", "none.key", "gitedge secret keygen --out"}},
		{name: "age identity world readable", store: Store{AgeIdentity: openID}, v: Value{Age: toNode}, errs: []string{"readable by every user"}},
		{name: "age not armored", v: Value{Age: "hello"}, errs: []string{"not an age-encrypted value"}},
		{name: "age truncated", v: Value{Age: toNode[:len(toNode)/2]}, errs: []string{"not a well-formed age-encrypted value"}},
		{name: "age altered", v: Value{Age: alter(toNode)}, errs: []string{"age-encrypted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.store
			if s.Dir == "" && s.Files == nil && s.AgeIdentity == "" && s.CredentialsDir == "" {
				s = store
			}
			got, err := s.Resolve(tt.v)
			if tt.errs == nil {
				if err != nil || got != tt.want {
					t.Fatalf("Resolve = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Resolve = %q, want an error", got)
			}
			for _, w := range tt.errs {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), value) {
				t.Errorf("error shows the value: %q", err)
			}
		})
	}
}

// alter flips one character of the ciphertext body (not the armor lines).
func alter(armored string) string {
	lines := strings.Split(armored, "\n")
	l := []byte(lines[2])
	if l[5] == 'A' {
		l[5] = 'B'
	} else {
		l[5] = 'A'
	}
	lines[2] = string(l)
	return strings.Join(lines, "\n")
}

func TestValueJSON(t *testing.T) {
	tests := []struct {
		in   string
		want Value
		err  string
	}{
		{in: `"9999"`, want: Value{Plain: "9999"}},
		{in: `{"secret":"vrrp-vi1"}`, want: Value{Secret: "vrrp-vi1"}},
		{in: `{"age":"x"}`, want: Value{Age: "x"}},
		{in: `null`, want: Value{}},
		{in: `{"secret":5}`, err: "cannot unmarshal number into Go struct field .secret"},
		{in: `9999`, err: "cannot unmarshal number into"},
		{in: `[1]`, err: "cannot unmarshal array"},
	}
	var unknown Value
	if err := json.Unmarshal([]byte(`{"secret":"a","file":"/x"}`), &unknown); err != nil {
		t.Fatal(err) // the rest of the document decodes; Check reports it
	}
	if se, ok := unknown.Check().(*ShapeError); !ok || se.Field != "file" || !strings.Contains(se.Msg, `unknown field "file"`) {
		t.Errorf("an unknown key: Check() = %v", unknown.Check())
	}
	for _, tt := range tests {
		var v Value
		err := json.Unmarshal([]byte(tt.in), &v)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
		case tt.err == "" && (err != nil || v != tt.want):
			t.Errorf("%s: %+v, %v; want %+v", tt.in, v, err, tt.want)
		case tt.err == "":
			b, err := json.Marshal(v)
			var back Value
			if err != nil || json.Unmarshal(b, &back) != nil || back != v {
				t.Errorf("%s: round trip %s gives %+v", tt.in, b, back)
			}
		}
	}
}

func TestSourceNeverShowsTheValue(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	a := encrypt(t, value, id)
	b := encrypt(t, value, id)
	for _, v := range []Value{{Plain: value}, {Secret: "vrrp-vi1"}, {Age: a}} {
		if s := v.Source(); s == "" || strings.Contains(s, value) {
			t.Errorf("Source() = %q", s)
		}
	}
	if (Value{Age: a}).Source() == (Value{Age: b}).Source() {
		t.Error("two encryptions describe the same: a plan would not show a re-encryption")
	}
	if (Value{Age: a}).Source() != (Value{Age: a + "\n"}).Source() {
		t.Error("a trailing newline (YAML block) changes the description")
	}
}

func TestKeygenEncryptRoundTrip(t *testing.T) {
	ident, rcpt, err := Keygen()
	if err != nil {
		t.Fatal(err)
	}
	path := write(t, filepath.Join(t.TempDir(), "age.key"), ident, 0o600)
	got, err := RecipientsOfFile(path)
	if err != nil || len(got) != 1 || got[0] != rcpt {
		t.Fatalf("RecipientsOfFile = %v, %v; want [%s]", got, err, rcpt)
	}
	rs, err := ParseRecipients([]string{rcpt}, nil)
	if err != nil {
		t.Fatal(err)
	}
	armored, err := Encrypt([]byte(value), rs)
	if err != nil {
		t.Fatal(err)
	}
	y := YAML(armored, 4)
	if !strings.HasPrefix(y, "    age: |\n      -----BEGIN AGE ENCRYPTED FILE-----\n") {
		t.Errorf("YAML:\n%s", y)
	}
	s := Store{AgeIdentity: path}
	if v, err := s.Resolve(Value{Age: armored}); err != nil || v != value {
		t.Errorf("Resolve = %q, %v", v, err)
	}
	if _, err := ParseRecipients([]string{rcpt, "AGE-SECRET-KEY-1XYZ"}, nil); err == nil || strings.Contains(err.Error(), "XYZ") {
		t.Errorf("a private key as recipient: %v (refused, never echoed)", err)
	}
	if _, err := ParseRecipients(nil, nil); err == nil {
		t.Error("no recipient accepted")
	}
}

// TestMessagesSayWhereSettingsComeFrom: an error names the setting that
// chose a file, and says when it is a default and why (the node config
// leaves it unset, or the command's flag was not given); a command that
// takes its settings from flags (gitedge vrrp) is told about its flags and
// systemd credentials, never about node config fields it cannot set.
func TestMessagesSayWhereSettingsComeFrom(t *testing.T) {
	if _, err := os.Stat(DefaultDir); err == nil {
		t.Skip(DefaultDir + " exists on this machine")
	}
	if _, err := os.Stat(DefaultAgeIdentity); err == nil {
		t.Skip(DefaultAgeIdentity + " exists on this machine")
	}
	dir := t.TempDir()
	node, _ := age.GenerateX25519Identity()
	toNode := encrypt(t, value, node)
	const cfg = "/etc/gitedge/node.yaml"
	flags := Store{DirFlag: "--secrets-dir", AgeIdentityFlag: "--age-identity"}
	withDir := flags
	withDir.Dir = dir
	tests := []struct {
		name  string
		store Store
		v     Value
		want  []string
		never []string
	}{
		{"node config, dir unset", Store{Config: cfg}, Value{Secret: "nope"},
			[]string{filepath.Join(DefaultDir, "nope") + " (the default /etc/gitedge/secrets: secrets.dir is unset in node config " + cfg + ")", "secrets.files"},
			[]string{"secrets.dir of node config"}},
		{"node config, dir set", Store{Config: cfg, Dir: dir}, Value{Secret: "nope"},
			[]string{filepath.Join(dir, "nope") + " (secrets.dir of node config " + cfg + ")"}, nil},
		{"node config, identity unset", Store{Config: cfg}, Value{Age: toNode},
			[]string{"(the default /etc/gitedge/age.key: secrets.ageIdentity is unset in node config " + cfg + ", nor the systemd credential age.key in $CREDENTIALS_DIRECTORY)"},
			[]string{"the default of secrets.ageIdentity"}},
		{"flags, dir not given", flags, Value{Secret: "nope"},
			[]string{"(the default /etc/gitedge/secrets: no --secrets-dir)", "name another directory with --secrets-dir", "LoadCredential=nope:FILE", "$CREDENTIALS_DIRECTORY"},
			[]string{"secrets.files", "secrets.dir", "systemctl reload"}},
		{"flags, dir given", withDir, Value{Secret: "nope"}, []string{filepath.Join(dir, "nope") + " (--secrets-dir)"}, []string{"secrets.dir"}},
		{"flags, identity not given", flags, Value{Age: toNode},
			[]string{"(the default /etc/gitedge/age.key: no --age-identity, nor the systemd credential age.key in $CREDENTIALS_DIRECTORY)"},
			[]string{"secrets.ageIdentity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.store.Resolve(tt.v)
			if err == nil {
				t.Fatal("resolved, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
			for _, w := range tt.never {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nsays %q", err, w)
				}
			}
		})
	}
}
