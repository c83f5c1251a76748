// Package testpki gives tests an in-memory alliance CA, so no test depends
// on committed keys that expire.
package testpki

import (
	"crypto/tls"
	"crypto/x509"
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
