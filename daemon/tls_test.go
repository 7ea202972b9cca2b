package daemon_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/deact/deact/daemon"
	"github.com/deact/deact/internal/wait"
	"github.com/deact/deact/state/etcdserver"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// pki is a CA made for one test, with helpers to issue server and client certificates into files.
type pki struct {
	dir    string
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caFile string
	serial int64
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "deact test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.caFile = p.write(t, "ca.crt", "CERTIFICATE", der)
	p.serial = 1
	return p
}

func (p *pki) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue returns certificate and key files for 127.0.0.1, usable as server and client certificate.
func (p *pki) issue(t *testing.T, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".crt", "CERTIFICATE", der), p.write(t, name+".key", "EC PRIVATE KEY", kb)
}

func (p *pki) clientTLS(t *testing.T, withCert bool) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	c := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if withCert {
		cf, kf := p.issue(t, "client")
		cert, err := tls.LoadX509KeyPair(cf, kf)
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

// TestTLSEverywhere: etcd requires client certificates and deactd presents one; deactd's own listeners serve
// TLS and require client certificates too. A client without a certificate gets nothing.
func TestTLSEverywhere(t *testing.T) {
	t.Parallel()
	p := newPKI(t)
	etcdCert, etcdKey := p.issue(t, "etcd")
	etcdURL, err := etcdserver.FreeURL("http://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := etcdserver.Start(etcdserver.Config{
		Dir: t.TempDir(), ClientURL: "https" + etcdURL[len("http"):], LogLevel: "fatal",
		CertFile: etcdCert, KeyFile: etcdKey, ClientCA: p.caFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	deactCert, deactKey := p.issue(t, "deactd")
	d := start(t, func(c *daemon.Config) {
		c.EtcdEndpoints = srv.Endpoints()
		c.EtcdCACert, c.EtcdCert, c.EtcdKey = p.caFile, deactCert, deactKey
		c.TLSCert, c.TLSKey, c.TLSClientCA = deactCert, deactKey, p.caFile
	})

	// The admin listener speaks TLS and wants a client certificate.
	https := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, true)}}
	wait.Eventually(t, "ready over TLS", func() bool {
		r, err := https.Get("https://" + d.AdminAddr + "/readyz")
		if err != nil {
			return false
		}
		r.Body.Close()
		return r.StatusCode == 200
	})
	// The gateway's report stream to the admin node (issue 17) runs over mTLS too.
	wait.Eventually(t, "the report stream up over mTLS", func() bool {
		r, err := https.Get("https://" + d.AdminAddr + "/metrics")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return strings.Contains(string(b), "\ndeact_report_server_streams 1\n") && strings.Contains(string(b), "\ndeact_node_reporter_streams 1\n")
	})
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: p.clientTLS(t, false)}}
	if r, err := noCert.Get("https://" + d.AdminAddr + "/readyz"); err == nil {
		r.Body.Close()
		t.Fatal("admin listener answered a client without a certificate")
	}
	if r, err := http.Get("http://" + d.AdminAddr + "/readyz"); err == nil && r.StatusCode == 200 {
		r.Body.Close()
		t.Fatal("admin listener answered plain HTTP")
	}

	conn, err := grpc.NewClient(d.AuthzAddr, grpc.WithTransportCredentials(credentials.NewTLS(p.clientTLS(t, true))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), tokenRequest("1"))
	if err != nil || resp.Status.Code != int32(code.Code_OK) {
		t.Fatalf("Check over mTLS: %v %v", resp, err)
	}
	bare, err := grpc.NewClient(d.AuthzAddr, grpc.WithTransportCredentials(credentials.NewTLS(p.clientTLS(t, false))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bare.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := authv3.NewAuthorizationClient(bare).Check(ctx, tokenRequest("1")); err == nil {
		t.Fatal("ext_authz answered a client without a certificate")
	}
}
