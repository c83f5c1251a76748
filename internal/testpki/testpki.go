// Package testpki gives tests an in-memory alliance CA, so no test depends
// on committed keys that expire.
package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/isa-alliance/fedreport/internal/identity"
	"github.com/isa-alliance/fedreport/internal/mtls"
	"github.com/isa-alliance/fedreport/internal/pki"
)

// CA is a throw-away certificate authority.
type CA struct {
	*pki.CA
	pool *x509.CertPool
}

// New creates a CA for trustDomain.
func New(t testing.TB, trustDomain string) *CA {
	t.Helper()
	ca, err := pki.NewCA(trustDomain, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &CA{CA: ca, pool: pool}
}

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool { return ca.pool }

// Cert issues a certificate for id valid from now for an hour.
func (ca *CA) Cert(t testing.TB, id identity.ID) tls.Certificate {
	t.Helper()
	now := time.Now()
	return ca.CertValid(t, id, now.Add(-time.Minute), now.Add(time.Hour))
}

// CertValid issues a certificate for id with the given validity.
func (ca *CA) CertValid(t testing.TB, id identity.ID, notBefore, notAfter time.Time) tls.Certificate {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(id, nil, notBefore, notAfter)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// Source returns a static mtls.Source for id.
func (ca *CA) Source(t testing.TB, id identity.ID) mtls.Source {
	t.Helper()
	return &mtls.Static{Cert: ca.Cert(t, id), Pool: ca.pool}
}

// ServerTLS returns a server configuration presenting id.
func (ca *CA) ServerTLS(t testing.TB, id identity.ID) *tls.Config {
	t.Helper()
	return mtls.ServerConfig(ca.Source(t, id))
}

// ClientTLS returns a client configuration presenting id that accepts only
// a server whose identity is expectServer.
func (ca *CA) ClientTLS(t testing.TB, id, expectServer identity.ID) *tls.Config {
	t.Helper()
	return mtls.ClientConfig(ca.Source(t, id), mtls.ExpectID(expectServer))
}

// WriteFiles writes the CA certificate (ca.crt) and a new certificate and
// key for id (<role>[-<member>][-<name>].crt and .key, as `fedreport pki`
// names them) into dir, replacing files already there, and returns their
// paths: the inputs of mtls.NewFiles, for tests of reloading.
func (ca *CA) WriteFiles(t testing.TB, dir string, id identity.ID) (caPath, certPath, keyPath string) {
	t.Helper()
	now := time.Now()
	certPEM, keyPEM, err := ca.Issue(id, nil, now.Add(-time.Minute), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	caPath = filepath.Join(dir, pki.CACertFile)
	base := filepath.Join(dir, pki.FileBase(id))
	certPath, keyPath = base+".crt", base+".key"
	for path, b := range map[string][]byte{caPath: ca.CertPEM, keyPath: keyPEM, certPath: certPEM} {
		replaceFile(t, path, b)
	}
	return caPath, certPath, keyPath
}

// WriteCRL writes a revocation list numbered number that revokes certs
// into path, replacing any file there.
func (ca *CA) WriteCRL(t testing.TB, path string, number int64, certs ...*x509.Certificate) {
	t.Helper()
	var entries []x509.RevocationListEntry
	for _, c := range certs {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: c.SerialNumber, RevocationTime: time.Now()})
	}
	b, err := ca.CreateCRL(big.NewInt(number), entries, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, path, b)
}

// replaceFile writes b to a new file and renames it over path, as a careful
// operator rotates a file; the new modification time is a second later than
// the old one, so a reload is seen even on file systems with coarse times.
func replaceFile(t testing.TB, path string, b []byte) {
	t.Helper()
	mod := time.Now()
	if st, err := os.Stat(path); err == nil && !st.ModTime().Before(mod.Add(-time.Second)) {
		mod = st.ModTime().Add(time.Second)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, mod, mod); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
