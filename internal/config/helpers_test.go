package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// env returns a getenv reading m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeFile writes content to name in dir and returns its path.
func writeFile(tb testing.TB, dir, name, content string) string {
	tb.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		tb.Fatal(err)
	}
	return p
}

// loadYAML loads a config file holding content, plus args and environment.
func loadYAML(tb testing.TB, content string, args []string, environ map[string]string) (Config, error) {
	tb.Helper()
	p := writeFile(tb, tb.TempDir(), "mqttbridge.yaml", content)
	return Load(append([]string{"--config", p}, args...), env(environ))
}

// validationErrors returns every *ValidationError in err's tree.
func validationErrors(err error) []*ValidationError {
	var out []*ValidationError
	var walk func(error)
	walk = func(e error) {
		if ve, ok := e.(*ValidationError); ok {
			out = append(out, ve)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// requireProblem fails unless err holds a ValidationError for key whose
// text contains every one of want.
func requireProblem(tb testing.TB, err error, key string, want ...string) *ValidationError {
	tb.Helper()
	if err == nil {
		tb.Fatalf("no error; want a problem with %s", key)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		tb.Fatalf("error %q holds no *ValidationError", err)
	}
	for _, ve := range validationErrors(err) {
		if ve.Key != key {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(ve.Error(), w)
		}
		if ok {
			return ve
		}
	}
	tb.Fatalf("no problem for key %s containing %q in:\n%v", key, want, err)
	return nil
}

// writeCerts writes a CA certificate and a client certificate with its key
// (PEM) into dir under the given names.
func writeCerts(tb testing.TB, dir, caName, certName, keyName string) {
	tb.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	writeFile(tb, dir, caName, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "client"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatal(err)
	}
	writeFile(tb, dir, certName, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(tb, dir, keyName, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
}
