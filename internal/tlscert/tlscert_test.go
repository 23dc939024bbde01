package tlscert

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestSelfSigned(t *testing.T) {
	cert, der, err := SelfSigned("pvesim", []string{"localhost", "127.0.0.1", "::1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(c)
	for _, host := range []string{"localhost", "127.0.0.1", "::1"} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if _, err := c.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other"}); err == nil {
		t.Error("valid for a host not named")
	}
	if len(cert.Certificate) != 1 || cert.PrivateKey == nil || c.Subject.CommonName != "pvesim" {
		t.Errorf("certificate %+v", c.Subject)
	}
}
