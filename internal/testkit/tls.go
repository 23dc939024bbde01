package testkit

import (
	"crypto/tls"
	"encoding/pem"
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra/pvesim"
	"github.com/gitedge/gitedge/internal/tlscert"
)

// SelfSigned makes a certificate for names (DNS names or IP addresses),
// signed by its own key, valid for a day.
func SelfSigned(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	cn := "gitedge test"
	if len(names) > 0 {
		cn = names[0]
	}
	cert, _, err := tlscert.SelfSigned(cn, names, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Pvesim is the Proxmox simulator behind a real HTTPS listener, as
// pveproxy serves it, for the real go-proxmox client.
type Pvesim struct {
	Sim    *pvesim.Sim
	Server *httptest.Server
	URL    string // the API base, https://127.0.0.1:PORT/api2/json
	CAPEM  []byte // the server's certificate, PEM
	CAFile string // the same in a file, for a node config's proxmox.caFile
}

// StartPvesim starts the simulator with opts; both stop when the test
// ends.
func StartPvesim(t testing.TB, opts pvesim.Options) *Pvesim {
	t.Helper()
	sim, err := pvesim.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(sim)
	// pveproxy speaks HTTP/1.1 over TLS; keep HTTP/2 off (no reason
	// phrases there).
	srv.TLS = &tls.Config{NextProtos: []string{"http/1.1"}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		_ = sim.Close()
	})
	p := &Pvesim{Sim: sim, Server: srv, URL: srv.URL + "/api2/json",
		CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}
	p.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	writeFile(t, p.CAFile, string(p.CAPEM), 0o644)
	return p
}
