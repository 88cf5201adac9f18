package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttbridge/mqttbridge/internal/config"
	"github.com/mqttbridge/mqttbridge/internal/testenv"
)

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		tb.Fatal(err)
	}
}

func pool(tb testing.TB, files ...string) *x509.CertPool {
	tb.Helper()
	p := x509.NewCertPool()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil || !p.AppendCertsFromPEM(b) {
			tb.Fatalf("CA %s: %v", f, err)
		}
	}
	return p
}

// startTLS serves HTTPS from copies of certs' server certificate, so that
// the test can replace the files.
func startTLS(tb testing.TB, certs *testenv.Certs, change func(*config.Config)) (*instance, string, string) {
	tb.Helper()
	dir := tb.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server-key.pem")
	copyFile(tb, certs.ServerCertFile, certFile)
	copyFile(tb, certs.ServerKey, keyFile)
	in := startLogged(tb, func(c *config.Config) {
		c.HTTP.TLS.CertFile, c.HTTP.TLS.KeyFile = certFile, keyFile
		if change != nil {
			change(c)
		}
	}, nil)
	in.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(tb, certs.CAFile)}}}
	return in, certFile, keyFile
}

// The listener serves TLS 1.2 and up, and SIGHUP's reload gives new
// connections the new certificate while an open connection goes on.
func TestTLSServeAndReload(t *testing.T) {
	first, second := testenv.NewCerts(t), testenv.NewCerts(t)
	in, certFile, keyFile := startTLS(t, first, nil)
	if resp, body := in.do(t, "GET", "/healthz", nil); resp.StatusCode != 200 || resp.TLS == nil {
		t.Fatalf("healthz over TLS: %d %s", resp.StatusCode, body)
	}
	addr := in.HTTPAddr.String()
	// Plain HTTP and TLS 1.1 are refused.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil && resp.StatusCode == 200 {
		t.Error("plain HTTP served on the TLS listener")
	}
	if c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool(t, first.CAFile), MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("a TLS 1.1 handshake succeeded")
	}

	// An open connection, before the reload.
	both := pool(t, first.CAFile, second.CAFile)
	old, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: both, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldReader := bufio.NewReader(old)
	get := func() {
		t.Helper()
		if _, err := fmt.Fprintf(old, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
			t.Fatalf("the open connection: %v", err)
		}
		resp, err := http.ReadResponse(oldReader, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("the open connection: %v %v", resp, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	get()
	serving := func() string {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: both, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	firstSerial := readCert(t, first.ServerCertFile).SerialNumber.String()
	if got := serving(); got != firstSerial {
		t.Fatalf("serving certificate %s before the reload, want %s", got, firstSerial)
	}

	// A broken pair is refused and the old certificate stays.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := in.ReloadTLS(); err == nil {
		t.Fatal("reloading a broken key succeeded")
	}
	if got := serving(); got != firstSerial {
		t.Fatalf("serving certificate %s after a failed reload, want the first %s", got, firstSerial)
	}
	copyFile(t, second.ServerCertFile, certFile)
	copyFile(t, second.ServerKey, keyFile)
	if err := in.ReloadTLS(); err != nil {
		t.Fatal(err)
	}
	if got, want := serving(), readCert(t, second.ServerCertFile).SerialNumber.String(); got != want {
		t.Fatalf("after the reload new connections get certificate %s, want %s", got, want)
	}
	get() // the connection opened before the reload still works
}

func readCert(tb testing.TB, file string) *x509.Certificate {
	tb.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		tb.Fatal(err)
	}
	blk, _ := pemDecode(b)
	c, err := x509.ParseCertificate(blk)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Client certificates verified against http.tls.client_ca_file are
// identities named by their common name, with auth.client_cert.rules.
func TestTLSClientCertificates(t *testing.T) {
	certs := testenv.NewCerts(t)
	in, _, _ := startTLS(t, certs, func(c *config.Config) {
		c.HTTP.TLS.ClientCAFile = certs.CAFile
		c.Auth.ClientCert.Enabled = true
		c.Auth.ClientCert.Rules = config.Rules{Publish: []string{"devices/%u/#"}}
	})
	clientCert, err := tls.LoadX509KeyPair(certs.ClientCertFile, certs.ClientKey)
	if err != nil {
		t.Fatal(err)
	}
	anonymous := in.client
	in.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: pool(t, certs.CAFile), Certificates: []tls.Certificate{clientCert}}}}
	in.waitReady(t)
	name := "mbtest client" // the client certificate's common name
	if resp, body := in.do(t, "POST", "/v1/topics/devices/"+name+"/x", []byte("v")); resp.StatusCode != 200 {
		t.Errorf("publish to its own topic: %d %s", resp.StatusCode, body)
	}
	if resp, body := in.do(t, "POST", "/v1/topics/devices/other/x", []byte("v")); resp.StatusCode != 403 {
		t.Errorf("publish to another device: %d %s", resp.StatusCode, body)
	}
	in.client = anonymous
	if resp, body := in.do(t, "POST", "/v1/topics/devices/"+name+"/x", []byte("v")); resp.StatusCode != 401 {
		t.Errorf("without a certificate: %d %s", resp.StatusCode, body)
	}
	// A certificate of another CA fails the handshake.
	other := testenv.NewCerts(t)
	otherCert, _ := tls.LoadX509KeyPair(other.ClientCertFile, other.ClientKey)
	c, err := tls.Dial("tcp", in.HTTPAddr.String(), &tls.Config{RootCAs: pool(t, certs.CAFile), Certificates: []tls.Certificate{otherCert}})
	if err == nil {
		// TLS 1.3 reports the refusal on the first read.
		_, _ = fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
		_, err = http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a certificate of another CA: %v, want a certificate error", err)
	}

	// client_auth: require refuses connections without a certificate.
	strict, _, _ := startTLS(t, certs, func(c *config.Config) {
		c.HTTP.TLS.ClientCAFile, c.HTTP.TLS.ClientAuth = certs.CAFile, "require"
		c.Auth.ClientCert.Enabled = true
	})
	if resp, err := strict.client.Get(strict.base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Error("client_auth require served a client without a certificate")
	}
}

// CORS: preflights from allowed origins are answered without credentials
// and never with "*" when credentials are allowed; others are refused.
// SSE streams check Origin like the WebSocket.
func TestCORSAndOrigins(t *testing.T) {
	in := startLogged(t, func(c *config.Config) {
		withAuth(c)
		c.HTTP.CORS.AllowedOrigins = []string{"https://app.example"}
		c.HTTP.CORS.AllowCredentials = true
		c.WS.AllowedOrigins = []string{"https://app.example"}
	}, nil)
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, in.base+"/v1/publish", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, err := in.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := preflight("https://app.example")
	h := resp.Header
	if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || !strings.Contains(h.Get("Access-Control-Allow-Headers"), "Authorization") ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") || h.Get("Access-Control-Max-Age") != "600" {
		t.Errorf("preflight: %d %v", resp.StatusCode, h)
	}
	if resp := preflight("https://evil.example"); resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from another origin: %d %v", resp.StatusCode, resp.Header)
	}
	// A real request from the allowed origin gets the headers (and still
	// needs credentials).
	r, body := in.do(t, "GET", "/v1/messages?filter=users/alice/%23", nil, append(bearer(token(t, "alice", nil)), "Origin", "https://app.example")...)
	if r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Errorf("GET from the allowed origin: %d %v %s", r.StatusCode, r.Header, body)
	}
	r, _ = in.do(t, "GET", "/v1/messages?filter=users/alice/%23", nil, "Origin", "https://app.example")
	if r.StatusCode != 401 {
		t.Errorf("GET from the allowed origin without credentials: %d", r.StatusCode)
	}
	// SSE and WebSocket admit the listed origin only.
	alice := bearer(token(t, "alice", nil))
	if status, _ := in.openStream(t, "filter=users/alice/%23", append(alice, "Origin", "https://evil.example")...); status != 403 {
		t.Errorf("SSE from another origin: %d", status)
	}
	if status, _ := in.openStream(t, "filter=users/alice/%23", append(alice, "Origin", "https://app.example")...); status != 200 {
		t.Errorf("SSE from the allowed origin: %d", status)
	}
	if _, status := in.dialAuth(t, "", append(alice, "Origin", "https://evil.example")...); status != 403 {
		t.Errorf("WebSocket from another origin: %d", status)
	}
}

func pemDecode(b []byte) ([]byte, []byte) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, rest
	}
	return blk.Bytes, rest
}
