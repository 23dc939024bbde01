package gitsource

import (
	"cmp"
	"fmt"

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
