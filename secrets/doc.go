// Package secrets resolves the secrets a routes repository names instead
// of holding: a field such as the VRRP auth.password is either the value
// itself, {secret: NAME} (a file on the node: the node config's
// secrets.files, systemd's $CREDENTIALS_DIRECTORY, or secrets.dir), or
// {age: ARMOR} (the value encrypted to the nodes' age keys, decrypted with
// the node's identity file). It also encrypts values for the repository
// and makes age identities (gitedge secret).
//
// Errors name the secret by its reference and the files tried, never its
// value; Value.Source describes a value the same way for plans and logs.
package secrets
