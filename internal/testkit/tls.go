package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/gitedge/gitedge/infra/pvesim"
)

// SelfSigned makes a certificate for names (DNS names or IP addresses),
// signed by its own key, valid for a day.
func SelfSigned(t testing.TB, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "gitedge test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	if len(names) > 0 {
		tmpl.Subject.CommonName = names[0]
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
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
