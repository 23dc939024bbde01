package main

import (
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"time"
)

// The TLS servers log one line per request, "r" when its connection
// resumed a session and "." when it made a full handshake; in tls-close
// (one request per connection) the share of "r" is the share of
// handshakes resumed, which sets most of the load core's work per
// connection.
const (
	resumedLog    = "tls-resumed.log"
	resumedFlush  = 100 * time.Millisecond // nginx's flush= of that log
	ticketKeyFile = "ticket.key"
)

// writeTicketKey writes the servers' shared session-ticket key: 80
// random bytes, nginx's format for AES-256 keys.
func writeTicketKey(dir string) error {
	k := make([]byte, 80)
	if _, err := rand.Read(k); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ticketKeyFile), k, 0o600)
}

// resumedMark is where the resumption log ends, once nginx has written
// what it buffered.
func (r *runner) resumedMark() int64 {
	time.Sleep(3 * resumedFlush)
	fi, err := os.Stat(filepath.Join(r.out, "backends", resumedLog))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// resumedSince is the percentage of requests logged after mark that
// came on a resumed session, and how many were logged; 0, 0 when none.
func (r *runner) resumedSince(mark int64) (float64, int) {
	end := r.resumedMark()
	f, err := os.Open(filepath.Join(r.out, "backends", resumedLog))
	if err != nil || end <= mark {
		return 0, 0
	}
	defer f.Close()
	b := make([]byte, end-mark)
	if _, err := f.ReadAt(b, mark); err != nil {
		return 0, 0
	}
	n := bytes.Count(b, []byte{'\n'})
	if n == 0 {
		return 0, 0
	}
	return 100 * float64(bytes.Count(b, []byte("r\n"))) / float64(n), n
}
