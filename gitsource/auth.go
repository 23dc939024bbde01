package gitsource

import (
	"cmp"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/gitedge/gitedge/internal/secretmode"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// sshPublicKeys loads the private key and the known_hosts database for an
// ssh remote. Host keys are always checked: an unknown or changed host key
// fails the connection. knownHosts "" means the default files.
func sshPublicKeys(user, keyFile, knownHosts, hostPort string) (*gitssh.PublicKeys, error) {
	keys, err := gitssh.NewPublicKeysFromFile(user, keyFile, "")
	if err != nil {
		return nil, fmt.Errorf("ssh key %s: %v", keyFile, err)
	}
	var files []string
	if knownHosts != "" {
		files = append(files, knownHosts)
	}
	db, err := gitssh.NewKnownHostsDb(files...)
	if err != nil {
		return nil, fmt.Errorf("known_hosts %s: %v (the server's host key must be listed; unknown hosts are refused)", cmp.Or(knownHosts, "(default files)"), err)
	}
	keys.HostKeyCallback = db.HostKeyCallback()
	// Offer only the algorithms known_hosts has a key for, so a server
	// with several host keys presents the one that can be checked.
	keys.HostKeyAlgorithms = db.HostKeyAlgorithms(hostPort)
	return keys, nil
}

// basicAuth is https basic auth; String never shows the password.
func basicAuth(user, password string) *githttp.BasicAuth {
	return &githttp.BasicAuth{Username: user, Password: password}
}

// auth builds the credentials for the remote from the files in Config.Auth.
// The files are read on every use so rotation needs no restart.
func (g *Git) auth() (transport.AuthMethod, error) {
	ep, err := transport.NewEndpoint(g.url)
	if err != nil {
		return nil, &Error{Step: StepFetch, Reason: ReasonNotFound, Source: g.disp, Err: fmt.Errorf("url: %v", redactErr(err, g.url))}
	}
	a := g.cfg.Auth
	authErr := func(err error) error {
		return &Error{Step: StepFetch, Reason: ReasonAuth, Source: g.disp, Err: err}
	}
	switch ep.Protocol {
	case "ssh":
		if a.SSHKeyFile == "" {
			return nil, nil // go-git falls back to the ssh agent
		}
		user := cmp.Or(ep.User, "git")
		keys, err := sshPublicKeys(user, a.SSHKeyFile, a.KnownHostsFile, net.JoinHostPort(ep.Host, fmt.Sprint(cmpPort(ep.Port, 22))))
		if err != nil {
			return nil, authErr(err)
		}
		return keys, nil
	case "http", "https":
		file := cmp.Or(a.TokenFile, a.PasswordFile)
		if file == "" {
			return nil, nil
		}
		secret, err := readSecret(file)
		if err != nil {
			return nil, authErr(err)
		}
		return basicAuth(cmp.Or(a.Username, "git"), secret), nil
	}
	return nil, nil
}

func cmpPort(p, def int) int {
	if p == 0 {
		return def
	}
	return p
}

// readSecret reads a credential file, without its trailing newline. A
// file every user may read is refused, as the node's other secret files
// are (packages secrets, notify, forge). Errors name the file, never its
// content.
func readSecret(file string) (string, error) {
	if err := secretmode.Stat(file); err != nil {
		return "", fmt.Errorf("credential file %s: %w", file, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("credential file: %w", err)
	}
	s := strings.TrimRight(string(data), "\r\n")
	if s == "" {
		return "", fmt.Errorf("credential file %s is empty", file)
	}
	return s, nil
}
