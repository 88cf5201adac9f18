package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Certs are PEM files of a throw-away CA, a server certificate for
// 127.0.0.1 and localhost, and a client certificate, all in tb.TempDir().
type Certs struct {
	CAFile                    string
	ServerCertFile, ServerKey string
	ClientCertFile, ClientKey string
	OtherCAFile               string // a CA that signed none of the above
	ServerName                string // "localhost"
}

// NewCerts generates the certificates (ECDSA P-256, valid for one day).
func NewCerts(tb testing.TB) *Certs {
	tb.Helper()
	dir := tb.TempDir()
	c := &Certs{ServerName: "localhost"}
	caCert, caKey := newCA(tb, "mbtest CA")
	c.CAFile = writePEM(tb, dir, "ca.pem", "CERTIFICATE", caCert.Raw)
	other, _ := newCA(tb, "mbtest other CA")
	c.OtherCAFile = writePEM(tb, dir, "other-ca.pem", "CERTIFICATE", other.Raw)

	srvDER, srvKey := newLeaf(tb, caCert, caKey, "localhost", x509.ExtKeyUsageServerAuth)
	c.ServerCertFile = writePEM(tb, dir, "server.pem", "CERTIFICATE", srvDER)
	c.ServerKey = writePEM(tb, dir, "server-key.pem", "PRIVATE KEY", srvKey)
	cliDER, cliKey := newLeaf(tb, caCert, caKey, "mbtest client", x509.ExtKeyUsageClientAuth)
	c.ClientCertFile = writePEM(tb, dir, "client.pem", "CERTIFICATE", cliDER)
	c.ClientKey = writePEM(tb, dir, "client-key.pem", "PRIVATE KEY", cliKey)
	return c
}

func newCA(tb testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return cert, key
}

func newLeaf(tb testing.TB, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, usage x509.ExtKeyUsage) (certDER, keyDER []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	keyDER, err = x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return certDER, keyDER
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return n
}

func writePEM(tb testing.TB, dir, name, typ string, der []byte) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return p
}
