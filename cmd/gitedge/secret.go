package main

// gitedge secret: the operator's side of the secrets a routes repository
// names instead of holding (docs/repository.md, "Secrets out of git").

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/gitedge/gitedge/nodeconfig"
	"github.com/gitedge/gitedge/secrets"
)

const secretUsage = "encrypt --recipient age1… [--recipients-file FILE] [--armor] < VALUE | keygen [--out FILE] | recipient [--identity FILE | --config FILE]"

func runSecret(_ context.Context, env *cliEnv, args []string) int {
	fs := newFlags(env, "secret", secretUsage)
	fs.positional(1, 1, "ACTION: encrypt, keygen or recipient")
	var recipients, recipientFiles []string
	fs.Func("recipient", "encrypt: an age recipient (age1…) the value is encrypted to; repeat it for every node (and yourself)", func(s string) error {
		recipients = append(recipients, s)
		return nil
	})
	fs.Func("recipients-file", "encrypt: a file of age recipients, one per line (# comments); repeatable", func(s string) error {
		recipientFiles = append(recipientFiles, s)
		return nil
	})
	armorOnly := fs.Bool("armor", false, "encrypt: print the armored value alone, not the YAML to paste under the field")
	out := fs.String("out", "", "keygen: write the identity into this new file (mode 0600) and print its recipient; default: print the identity")
	identity := fs.String("identity", "", "recipient: the age identity file to print the recipient of")
	config := fs.String("config", "", "recipient: the node config whose identity (secrets.ageIdentity, or its default) to print the recipient of")
	pos, code, ok := fs.parse(args)
	if !ok {
		return code
	}
	only := func(allowed ...string) bool {
		bad := ""
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "log-level" && f.Name != "log-format" && !slices.Contains(allowed, f.Name) {
				bad = f.Name
			}
		})
		if bad != "" {
			fmt.Fprintf(env.stderr, "gitedge secret %s: --%s does not apply to it\n", pos[0], bad)
			fs.Usage()
		}
		return bad == ""
	}
	switch pos[0] {
	case "encrypt":
		if !only("recipient", "recipients-file", "armor") {
			return 2
		}
		return secretEncrypt(env, fs, recipients, recipientFiles, *armorOnly)
	case "keygen":
		if !only("out") {
			return 2
		}
		return secretKeygen(env, fs, *out)
	case "recipient":
		if !only("identity", "config") {
			return 2
		}
		return secretRecipient(env, fs, *identity, *config)
	}
	fmt.Fprintf(env.stderr, "gitedge secret: unknown action %q: expected encrypt, keygen or recipient\n", pos[0])
	fs.Usage()
	return 2
}

// secretEncrypt reads the value on standard input (one trailing newline
// dropped, as echo and a terminal add it) and prints it encrypted.
func secretEncrypt(env *cliEnv, fs *cmdFlags, recipients, files []string, armorOnly bool) int {
	rs, err := secrets.ParseRecipients(recipients, files)
	if err != nil {
		return fs.fail(err)
	}
	in := env.stdin
	if in == nil {
		in = os.Stdin
	}
	b, err := io.ReadAll(io.LimitReader(in, secrets.MaxFileBytes+1))
	if err != nil {
		return fs.fail(fmt.Errorf("reading the value on standard input: %w", err))
	}
	v := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if v == "" {
		return fs.fail(errors.New("nothing to encrypt: give the value on standard input (printf %s VALUE | gitedge secret encrypt …)"))
	}
	armored, err := secrets.Encrypt([]byte(v), rs)
	if err != nil {
		return fs.fail(err)
	}
	if armorOnly {
		fmt.Fprint(env.stdout, armored)
		return 0
	}
	fmt.Fprint(env.stdout, secrets.YAML(armored, 0))
	fmt.Fprintf(env.stderr, "encrypted to %d recipient(s); paste it under the field (password:), indented, and check it with gitedge validate --node-config\n", len(rs))
	return 0
}

// secretKeygen makes a node's age identity.
func secretKeygen(env *cliEnv, fs *cmdFlags, out string) int {
	ident, rcpt, err := secrets.Keygen()
	if err != nil {
		return fs.fail(err)
	}
	if out == "" {
		fmt.Fprint(env.stdout, ident)
		fmt.Fprintf(env.stderr, "public key: %s\n", rcpt)
		return 0
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return fs.fail(fmt.Errorf("%s exists: an identity is never overwritten (move it away first, and re-encrypt the values to the new recipient)", out))
	}
	if err != nil {
		return fs.fail(err)
	}
	if _, err := f.WriteString(ident); err != nil {
		f.Close()
		return fs.fail(err)
	}
	if err := f.Close(); err != nil {
		return fs.fail(err)
	}
	fmt.Fprintln(env.stdout, rcpt)
	fmt.Fprintf(env.stderr, "wrote %s (mode 0600: chown it to the user gitedge runs as); its recipient, for gitedge secret encrypt --recipient, is above\n", out)
	return 0
}

// secretRecipient prints the recipients of an identity: the one named, or
// the node's as its config says.
func secretRecipient(env *cliEnv, fs *cmdFlags, identity, config string) int {
	var rs []string
	var err error
	switch {
	case identity != "" && config != "":
		fmt.Fprintln(env.stderr, "gitedge secret recipient: give --identity or --config, not both")
		fs.Usage()
		return 2
	case identity != "":
		rs, err = secrets.RecipientsOfFile(identity)
	default:
		store := secrets.Store{}.FromEnv()
		if config == "" {
			if _, serr := os.Stat(nodeconfig.DefaultPath); serr == nil {
				config = nodeconfig.DefaultPath
			}
		}
		if config != "" {
			nc, lerr := nodeconfig.Load(config)
			if lerr != nil {
				return fs.fail(lerr)
			}
			store = nc.Secrets
		}
		rs, err = store.Recipients()
	}
	if err != nil {
		return fs.fail(err)
	}
	for _, r := range rs {
		fmt.Fprintln(env.stdout, r)
	}
	return 0
}
